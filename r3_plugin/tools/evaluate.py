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
"""Evaluate a model the way R3 trains it: first try, reflect, second try; and compare runs.

  r3 evaluate run --model PATH --data test.parquet --output-dir runs/vanilla [--backend vllm]
  r3 evaluate run --model ckpt/actor/huggingface --data test.parquet --output-dir runs/trained
  r3 evaluate compare runs/vanilla runs/trained --labels vanilla,trained --output-dir runs/compare

'run' plays every test row through the same episode policy as training (attempt, verify, reflect,
retry, verify; greedy by default) and reports first-try and second-try accuracy with 95% Wilson
intervals, the gain, verifier error categories for both tries and the mean reflection length. It
also runs a control the paper lacks: on each first-try failure, a plain "try again" without any
reflection, on the same failed attempt, so you see how much the reflection itself adds
(--no-control skips it). Output directory: summary.json (all numbers), episodes.jsonl (every
episode with its transcript; also the resume journal: rerun the same command after a crash),
report.md. A row whose verifier raises is bad data: it is named once on stderr, counted in
metrics.broken_rows (listed under 'broken' in summary.json) and left out of every accuracy.

'compare' puts several runs side by side in the paper's layout and draws a bar chart
(compare.md, compare.json, compare.png; the chart needs matplotlib).

For the forgetting check on general benchmarks (MMLU-Pro, GSM8K, HellaSwag, MATH), use
lm-evaluation-harness; see docs/evaluation.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from typing import Any

from r3_plugin.policy.episode import EpisodeConfig
from r3_plugin.policy.tasks import get_task
from r3_plugin.tools.arg_types import non_negative_int, positive_int
from r3_plugin.tools.backends.factory import (
    add_backend_arguments,
    check_backend_args,
    import_user_modules,
    make_backend,
    sampling_from_args,
)
from r3_plugin.tools.dataset_rows import DatasetError, read_task_rows
from r3_plugin.tools.journal import Journal, JournalMismatch, atomic_write_text
from r3_plugin.tools.run_common import BROKEN_KEY, data_fingerprint, resolve_tasks, run_on_backend

EPISODES_FILE = "episodes.jsonl"
SUMMARY_FILE = "summary.json"
REPORT_FILE = "report.md"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="evaluate_command", metavar="{run,compare}")
    run_p = sub.add_parser(
        "run",
        help="evaluate one model on a test parquet",
        description="Play every row through attempt/verify/reflect/retry/verify and report the accuracies.",
    )
    run_p.add_argument("--data", required=True, help="test parquet from 'r3 data' (verl format)")
    run_p.add_argument("--output-dir", required=True, help="where summary.json, episodes.jsonl, report.md go")
    run_p.add_argument("--label", help="name of this run in reports (default: the output directory's name)")
    run_p.add_argument("--limit", type=positive_int, help="only the first N rows")
    run_p.add_argument("--no-control", action="store_true", help="skip the 'retry without reflection' control episodes")
    run_p.add_argument("--max-reflections", type=non_negative_int, default=1, help="reflect-retry rounds (paper: 1)")
    run_p.add_argument(
        "--attempt-max-tokens", type=positive_int, help="token cap of the first attempt (default: --max-tokens)"
    )
    run_p.add_argument(
        "--reflection-max-tokens", type=positive_int, help="token cap of a reflection (default: --max-tokens)"
    )
    run_p.add_argument("--retry-max-tokens", type=positive_int, help="token cap of a retry (default: --max-tokens)")
    run_p.add_argument(
        "--reflection-prompt",
        help="user message that asks for the reflection (default: the task's; training's r3.reflection_prompt)",
    )
    run_p.add_argument(
        "--retry-prompt",
        help="user message between the reflection and the retry (default: the task's; '' for none, so the "
        "retry follows the reflection at once; training's r3.retry_prompt)",
    )
    run_p.add_argument(
        "--plain-retry-prompt",
        help="user message of the 'retry without reflection' control (default: the task's; evaluation only: "
        "training has no control episodes)",
    )
    run_p.add_argument(
        "--given-reflection",
        metavar="TEMPLATE",
        help="write this reflection instead of generating one, filled from each row's ground truth, e.g. "
        "'I must use each of {numbers} exactly once to make {target}.': what the retry does after a "
        "reflection of your choosing (a bound on what training the reflection can reach)",
    )
    run_p.add_argument(
        "--max-episode-tokens",
        type=positive_int,
        help="token budget of a whole episode, like training's response length",
    )
    run_p.add_argument(
        "--concurrency", type=positive_int, default=64, help="rows in flight at once (default: %(default)s)"
    )
    run_p.add_argument("--no-transcripts", action="store_true", help="do not store message transcripts")
    run_p.add_argument("--restart", action="store_true", help="discard earlier results in --output-dir")
    run_p.add_argument("--force", action="store_true", help="resume even if earlier results used other parameters")
    run_p.add_argument("--no-progress", action="store_true", help="no progress bar")
    run_p.add_argument(
        "--verifier",
        metavar="TASK",
        help="judge answers with another registered task's verifier, keeping the rows' prompts "
        "(e.g. function_calling_ast: the BFCL-style schema-aware check instead of exact match)",
    )
    add_backend_arguments(run_p, default_temperature=0.0)
    run_p.set_defaults(_evaluate=_run)

    cmp_p = sub.add_parser(
        "compare",
        help="put several runs side by side (paper layout) and draw a bar chart",
        description="Compare 'r3 evaluate run' results: compare.md, compare.json and compare.png.",
    )
    cmp_p.add_argument("runs", nargs="+", help="run directories or their summary.json files")
    cmp_p.add_argument("--labels", help="comma-separated names, one per run (default: the run labels)")
    cmp_p.add_argument("--output-dir", default=".", help="where compare.md/json/png go (default: current directory)")
    cmp_p.add_argument("--no-plot", action="store_true", help="skip the PNG (no matplotlib needed)")
    cmp_p.set_defaults(_evaluate=_compare)
    parser.set_defaults(_evaluate_parser=parser)


def run(args: argparse.Namespace) -> int:
    handler = getattr(args, "_evaluate", None)
    if handler is None:
        args._evaluate_parser.print_help()
        return 2
    return handler(args)


def episode_config_from_args(args: argparse.Namespace) -> EpisodeConfig:
    return EpisodeConfig(
        max_reflections=args.max_reflections,
        attempt_max_tokens=args.attempt_max_tokens,
        reflection_max_tokens=args.reflection_max_tokens,
        retry_max_tokens=args.retry_max_tokens,
        reflection_prompt=getattr(args, "reflection_prompt", None),
        retry_prompt=getattr(args, "retry_prompt", None),
        plain_retry_prompt=getattr(args, "plain_retry_prompt", None),
    )


def _run(args: argparse.Namespace) -> int:
    from r3_plugin.tools.evaluation.accounting import summarize_by_data_source, summarize_records
    from r3_plugin.tools.evaluation.given_reflection import given_reflections
    from r3_plugin.tools.evaluation.report import render_report
    from r3_plugin.tools.evaluation.runner import EvalConfig, evaluate_rows

    import_user_modules(args.imports)
    data = os.path.expanduser(args.data)
    out_dir = os.path.expanduser(args.output_dir)
    try:
        rows = read_task_rows(data, limit=args.limit)
        tasks = resolve_tasks(rows, data)
        if args.verifier:
            judge = get_task(args.verifier).verifier
            tasks = {name: dataclasses.replace(task, verifier=judge) for name, task in tasks.items()}
        sampling = sampling_from_args(args)
        episode = episode_config_from_args(args)
        config = EvalConfig(
            episode=episode,
            control=not args.no_control,
            concurrency=args.concurrency,
            max_episode_tokens=args.max_episode_tokens,
            seed=args.seed,
            transcripts=not args.no_transcripts,
            given_reflections=given_reflections(args.given_reflection, rows) if args.given_reflection else None,
        )
        check_backend_args(args)
    except (DatasetError, ValueError, KeyError) as exc:
        print(f"r3 evaluate: {exc}", file=sys.stderr)
        return 2
    os.makedirs(out_dir, exist_ok=True)
    fingerprint = {
        **data_fingerprint(data),
        "model": args.model,
        "backend": args.backend,
        "sampling": sampling.to_dict(),
        "episode": dataclasses.asdict(episode),
        "control": config.control,
        "verifier": args.verifier,
        "max_episode_tokens": config.max_episode_tokens,
        # only when set, so that runs journaled before the option existed still resume
        **({"given_reflection": args.given_reflection} if args.given_reflection else {}),
    }
    journal_path = os.path.join(out_dir, EPISODES_FILE)
    try:
        journal = Journal.open(journal_path, fingerprint, restart=args.restart, force=args.force)
    except JournalMismatch as exc:
        print(f"r3 evaluate: {exc}", file=sys.stderr)
        return 2
    done_before = {r.row_index for r in rows if journal.done(r.row_index)}
    if done_before:
        print(f"r3 evaluate: resuming, {len(done_before)}/{len(rows)} rows already done", file=sys.stderr)
    elapsed = 0.0
    backend_stats: dict[str, Any] | None = None
    with journal:
        if len(done_before) < len(rows):

            async def work(backend: Any) -> tuple[float, dict[str, Any] | None]:
                spent = await evaluate_rows(
                    rows, backend, config, journal, progress=not args.no_progress, tasks=tasks, source=data
                )
                stats = getattr(backend, "stats", None)
                return spent, stats.to_dict() if stats is not None else None

            elapsed, backend_stats = run_on_backend(lambda: make_backend(args, sampling), journal, work)
        records = [journal.records[r.row_index] for r in rows]
    new = [r for r in records if r["key"] not in done_before]
    new_episodes = sum(1 + (r["control"] is not None) for r in new)
    new_tokens = sum(
        r["reflect"]["generated_tokens"] + (r["control"]["generated_tokens"] if r["control"] else 0) for r in new
    )
    summary = {
        "run": {
            "label": args.label or os.path.basename(os.path.abspath(out_dir)),
            "model": args.model,
            "backend": args.backend,
            "data": os.path.abspath(data),
            "data_sha256": fingerprint["data_sha256"],
            "rows": len(rows),
            "sampling": sampling.to_dict(),
            "episode": dataclasses.asdict(episode),
            "control": config.control,
            "max_episode_tokens": config.max_episode_tokens,
            "given_reflection": args.given_reflection,
            "resumed_rows": len(done_before),
            "elapsed_s": round(elapsed, 3),
            "episodes_per_s": new_episodes / elapsed if elapsed > 0 else 0.0,
            "generated_tokens_per_s": new_tokens / elapsed if elapsed > 0 else 0.0,
            "backend_stats": backend_stats,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        },
        "metrics": summarize_records(records),
        "by_data_source": summarize_by_data_source(records),
        "broken": [
            {"row": r["key"], "index": r["index"], "data_source": r["data_source"], "error": r[BROKEN_KEY]}
            for r in records
            if r.get(BROKEN_KEY)
        ][:100],
        "files": {"episodes": EPISODES_FILE, "report": REPORT_FILE},
    }
    atomic_write_text(os.path.join(out_dir, SUMMARY_FILE), json.dumps(summary, indent=2) + "\n")
    atomic_write_text(os.path.join(out_dir, REPORT_FILE), render_report(summary, records))
    m = summary["metrics"]
    line = (
        f"r3 evaluate: n={m['n']} first try {100 * m['first_try']['rate']:.1f}%, "
        f"second try {100 * m['second_try']['rate']:.1f}% ({100 * m['gain']:+.1f} pts)"
    )
    if m.get("control"):
        line += f", without reflection {100 * m['control']['second_try']['rate']:.1f}%"
    if m["broken_rows"]:
        line += f"; {m['broken_rows']} broken rows left out (summary.json: broken)"
    print(line + f" -> {out_dir}", file=sys.stderr)
    return 0


def _compare(args: argparse.Namespace) -> int:
    from r3_plugin.tools.evaluation.compare import (
        PlotUnavailable,
        compare_rows,
        load_summary,
        plot_compare,
        render_compare,
    )

    try:
        summaries = [load_summary(os.path.expanduser(p)) for p in args.runs]
    except ValueError as exc:
        print(f"r3 evaluate compare: {exc}", file=sys.stderr)
        return 2
    if args.labels:
        labels = [x.strip() for x in args.labels.split(",")]
        if len(labels) != len(summaries):
            print(
                f"r3 evaluate compare: {len(labels)} labels for {len(summaries)} runs (--labels needs one per run)",
                file=sys.stderr,
            )
            return 2
    else:
        labels = [s["run"].get("label") or f"run{i + 1}" for i, s in enumerate(summaries)]
    out_dir = os.path.expanduser(args.output_dir)
    os.makedirs(out_dir, exist_ok=True)
    table = render_compare(summaries, labels)
    atomic_write_text(os.path.join(out_dir, "compare.md"), table)
    atomic_write_text(
        os.path.join(out_dir, "compare.json"), json.dumps({"runs": compare_rows(summaries, labels)}, indent=2) + "\n"
    )
    print(table)
    if not args.no_plot:
        try:
            png = plot_compare(summaries, labels, os.path.join(out_dir, "compare.png"))
        except PlotUnavailable as exc:
            print(f"r3 evaluate compare: {exc}", file=sys.stderr)
            return 3
        print(f"chart (95% Wilson intervals): {png}")
    print(f"table: {os.path.join(out_dir, 'compare.md')}  numbers: {os.path.join(out_dir, 'compare.json')}")
    return 0
