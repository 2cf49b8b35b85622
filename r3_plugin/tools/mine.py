# Copyright 2026 The r3-plugin Authors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.
"""Build the "dataset of failures" (R3 paper): sample each training query up to N times (64 in the
paper) and keep the queries the model fails, each with one failed first attempt.

Each sample is a first attempt run through the same episode policy and verifiers as training
(``run_episode`` with ``max_reflections=0``). Samples are drawn in rounds of
``--samples-per-round`` until one fails or ``--samples`` are spent; many queries run at once
(``--concurrency`` episodes) and the backend batches their requests.

Output: a parquet with the input's columns and rows (only the failed queries), where
extra_info gains r3_failed_attempt (the text the agent loop's offline mode replays),
r3_failed_category, r3_samples_spent and r3_samples_passed; plus a summary JSON. The run is
resumable: finished queries go to a journal (<output>.journal.jsonl) as they finish; run the same
command again after a crash and it skips them. A row whose verifier raises is bad data, not a model
failure: it is named once on stderr (file, row, extra_info.index), counted in the summary's
broken_rows and never kept as a failure.

Example:
  r3 mine --model Qwen/Qwen2.5-1.5B-Instruct --backend vllm \\
      --data ~/data/r3/countdown/train.parquet --samples 64
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any

from r3_plugin.policy.episode import EndReason, EpisodeConfig, run_episode
from r3_plugin.tools.arg_types import positive_int
from r3_plugin.tools.backends.factory import (
    add_backend_arguments,
    check_backend_args,
    import_user_modules,
    make_backend,
    sampling_from_args,
)
from r3_plugin.tools.dataset_rows import DatasetError, TaskRow, read_task_rows
from r3_plugin.tools.journal import Journal, JournalMismatch, atomic_write_text
from r3_plugin.tools.run_common import (
    BROKEN_KEY,
    broken_detail,
    data_fingerprint,
    drain_pending,
    episode_seed,
    resolve_tasks,
    run_on_backend,
)

FAILED_ATTEMPT_KEY = "r3_failed_attempt"


@dataclass(frozen=True)
class MineConfig:
    samples: int = 64
    samples_per_round: int = 8
    concurrency: int = 64
    attempt_max_tokens: int | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        if self.samples < 1 or self.samples_per_round < 1 or self.concurrency < 1:
            raise ValueError("samples, samples_per_round and concurrency must all be >= 1")


async def mine_query(row: TaskRow, task: Any, backend: Any, config: MineConfig, sem: asyncio.Semaphore) -> dict:
    """Sample first attempts for one query until one fails; return its journal record."""
    from r3_plugin.tools.backends.base import ChatConversation

    episode_config = EpisodeConfig(max_reflections=0, attempt_max_tokens=config.attempt_max_tokens)

    async def one(sample: int):
        async with sem:
            conv = ChatConversation(
                backend, row.prompt, tools=row.tools, seed=episode_seed(config.seed, row.row_index, sample)
            )
            return await run_episode(task, row.ground_truth, conv, episode_config, extra_info=row.extra_info)

    spent = passed = aborted = 0
    failure = None
    broken = None
    while failure is None and spent < config.samples:
        k = min(config.samples_per_round, config.samples - spent)
        episodes = await asyncio.gather(*(one(spent + j) for j in range(k)))
        spent += k
        broken = broken_detail(ep.first_result for ep in episodes)
        if broken is not None:  # the verifier raised: bad data, not a failure of the model
            break
        for ep in episodes:
            if ep.first_try_passed:
                passed += 1
            elif ep.end_reason == EndReason.ABORTED:
                aborted += 1
            elif failure is None:
                failure = ep
    record: dict[str, Any] = {
        "key": row.row_index,
        "index": row.index,
        "data_source": row.data_source,
        "failed": failure is not None,
        "samples_spent": spent,
        "samples_passed": passed,
        "samples_aborted": aborted,
    }
    if broken is not None:
        record[BROKEN_KEY] = broken
    if failure is not None:
        record.update(
            attempt=failure.first_attempt.text,
            category=failure.first_result.category,
            detail=failure.first_result.detail,
            attempt_tokens=failure.first_attempt.num_tokens,
            truncated=failure.truncated,
        )
    return record


async def mine_rows(
    rows: list[TaskRow],
    backend: Any,
    config: MineConfig,
    journal: Journal,
    *,
    progress: bool = True,
    tasks: dict[str, Any] | None = None,
    source: str = "<rows>",
) -> None:
    """Mine every row the journal has not finished; each result is journaled as soon as it is known.

    A row whose verifier raises is journaled as ``broken`` (named once, on stderr), never as a failure.
    """
    sem = asyncio.Semaphore(config.concurrency)
    counts = {"seen": 0, "failed": 0, "samples": 0}

    def on_record(record: dict[str, Any], elapsed: float) -> dict[str, str]:
        counts["seen"] += 1
        counts["failed"] += int(record["failed"])
        counts["samples"] += record["samples_spent"]
        return {
            "fail_rate": f"{counts['failed'] / counts['seen']:.2f}",
            "samples_s": f"{counts['samples'] / elapsed:.1f}",
        }

    async def handle_row(row: TaskRow, task: Any) -> dict[str, Any]:
        return await mine_query(row, task, backend, config, sem)

    # one query keeps up to samples_per_round episodes in flight, so this many fill `concurrency`
    n_workers = max(1, -(-config.concurrency // config.samples_per_round))
    await drain_pending(
        rows,
        journal,
        handle_row,
        concurrency=n_workers,
        desc="mining",
        unit="query",
        progress=progress,
        tasks=tasks,
        on_record=on_record,
        source=source,
    )


def write_failures_parquet(data_path: str, records: dict[int, dict], output: str) -> int:
    """Write the failed queries (input columns, extra_info extended) atomically; returns the row count."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from r3_plugin.policy.tasks import to_plain

    table = pq.read_table(data_path)
    keep = sorted(k for k, r in records.items() if r["failed"] and k < table.num_rows)
    subset = table.take(pa.array(keep, type=pa.int64()))
    old_extra = (
        [to_plain(x) or {} for x in subset.column("extra_info").to_pylist()]
        if "extra_info" in subset.column_names
        else [{} for _ in keep]
    )
    new_extra = []
    for key, extra in zip(keep, old_extra, strict=True):
        rec = records[key]
        extra = dict(extra)
        extra[FAILED_ATTEMPT_KEY] = rec["attempt"]
        extra["r3_failed_category"] = rec["category"]
        extra["r3_samples_spent"] = int(rec["samples_spent"])
        extra["r3_samples_passed"] = int(rec["samples_passed"])
        new_extra.append(extra)
    column = pa.array(new_extra) if new_extra else pa.array([], type=pa.struct([(FAILED_ATTEMPT_KEY, pa.string())]))
    if "extra_info" in subset.column_names:
        subset = subset.set_column(subset.column_names.index("extra_info"), "extra_info", column)
    else:
        subset = subset.append_column("extra_info", column)
    os.makedirs(os.path.dirname(os.path.abspath(output)) or ".", exist_ok=True)
    tmp = f"{output}.tmp-{os.getpid()}"
    pq.write_table(subset, tmp)
    os.replace(tmp, output)
    return len(keep)


def summarize(rows: list[TaskRow], records: dict[int, dict], config: MineConfig) -> dict[str, Any]:
    done = [records[r.row_index] for r in rows if r.row_index in records]
    broken = [r for r in done if r.get(BROKEN_KEY)]
    seen = [r for r in done if not r.get(BROKEN_KEY)]
    failures = [r for r in seen if r["failed"]]
    spent = sum(r["samples_spent"] for r in seen)
    passed = sum(r["samples_passed"] for r in seen)
    return {
        "queries_total": len(rows),
        "queries_seen": len(seen),
        "broken_rows": len(broken),
        "broken": [{"row": r["key"], "index": r["index"], "error": r[BROKEN_KEY]} for r in broken[:100]],
        "failures": len(failures),
        "never_failed": len(seen) - len(failures),
        "failure_rate": len(failures) / len(seen) if seen else 0.0,
        "samples_spent": spent,
        "samples_passed": passed,
        "samples_aborted": sum(r.get("samples_aborted", 0) for r in seen),
        "sample_pass_rate": passed / spent if spent else 0.0,
        "failure_categories": dict(Counter(r["category"] for r in failures).most_common()),
        "truncated_failures": sum(1 for r in failures if r.get("truncated")),
        "by_data_source": {
            ds: {
                "queries": sum(1 for r in seen if r["data_source"] == ds),
                "failures": sum(1 for r in failures if r["data_source"] == ds),
            }
            for ds in sorted({r["data_source"] for r in seen})
        },
        "config": asdict(config),
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="training parquet from 'r3 data' (verl format)")
    parser.add_argument(
        "--output",
        help="failures parquet to write (default: failures.parquet next to --data)",
    )
    parser.add_argument("--summary", help="summary JSON (default: <output without .parquet>.summary.json)")
    parser.add_argument("--journal", help="resume journal (default: <output>.journal.jsonl)")
    parser.add_argument(
        "--samples", type=positive_int, default=64, help="most samples per query (paper: 64) (default: %(default)s)"
    )
    parser.add_argument(
        "--samples-per-round",
        type=positive_int,
        default=8,
        help="samples drawn at once per query before checking for a failure (default: %(default)s)",
    )
    parser.add_argument(
        "--concurrency", type=positive_int, default=64, help="episodes in flight at once (default: %(default)s)"
    )
    parser.add_argument(
        "--attempt-max-tokens", type=positive_int, help="token cap of an attempt (default: --max-tokens)"
    )
    parser.add_argument("--limit", type=positive_int, help="only the first N rows")
    parser.add_argument("--restart", action="store_true", help="discard an existing journal and start over")
    parser.add_argument(
        "--force", action="store_true", help="resume even if the journal was written with other parameters"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_backend_arguments(parser, default_temperature=1.0)


def default_paths(args: argparse.Namespace) -> tuple[str, str, str]:
    output = args.output or os.path.join(os.path.dirname(os.path.abspath(args.data)), "failures.parquet")
    stem = output[: -len(".parquet")] if output.endswith(".parquet") else output
    return output, args.summary or stem + ".summary.json", args.journal or output + ".journal.jsonl"


def run(args: argparse.Namespace) -> int:
    import_user_modules(args.imports)
    data = os.path.expanduser(args.data)
    args.data = data
    output, summary_path, journal_path = default_paths(args)
    try:
        rows = read_task_rows(data, limit=args.limit)
        tasks = resolve_tasks(rows, data)
        config = MineConfig(
            samples=args.samples,
            samples_per_round=min(args.samples_per_round, args.samples),
            concurrency=args.concurrency,
            attempt_max_tokens=args.attempt_max_tokens,
            seed=args.seed,
        )
        sampling = sampling_from_args(args)
        check_backend_args(args)
    except (DatasetError, ValueError) as exc:
        print(f"r3 mine: {exc}", file=sys.stderr)
        return 2
    fingerprint = {
        **data_fingerprint(data),
        "model": args.model,
        "backend": args.backend,
        "sampling": sampling.to_dict(),
        "samples": config.samples,
        "samples_per_round": config.samples_per_round,
        "attempt_max_tokens": config.attempt_max_tokens,
    }
    try:
        journal = Journal.open(journal_path, fingerprint, restart=args.restart, force=args.force)
    except JournalMismatch as exc:
        print(f"r3 mine: {exc}", file=sys.stderr)
        return 2
    resumed = sum(1 for r in rows if journal.done(r.row_index))
    if resumed:
        print(f"r3 mine: resuming, {resumed}/{len(rows)} queries already done ({journal_path})", file=sys.stderr)
    start = time.perf_counter()
    with journal:
        if resumed < len(rows):
            run_on_backend(
                lambda: make_backend(args, sampling),
                journal,
                lambda backend: mine_rows(
                    rows, backend, config, journal, progress=not args.no_progress, tasks=tasks, source=data
                ),
            )
        records = dict(journal.records)
    n = write_failures_parquet(data, {k: v for k, v in records.items() if k < len(rows)}, output)
    summary = summarize(rows, records, config)
    summary.update(
        data=data,
        output=output,
        journal=journal_path,
        model=args.model,
        backend=args.backend,
        sampling=sampling.to_dict(),
        resumed_queries=resumed,
        elapsed_s=round(time.perf_counter() - start, 3),
    )
    atomic_write_text(summary_path, json.dumps(summary, indent=2) + "\n")
    print(
        f"r3 mine: {summary['queries_seen']} queries, {n} failures kept "
        f"(failure rate {summary['failure_rate']:.3f}), {summary['samples_spent']} samples"
        + (f", {summary['broken_rows']} broken rows skipped" if summary["broken_rows"] else "")
        + f" -> {output}",
        file=sys.stderr,
    )
    return 0
