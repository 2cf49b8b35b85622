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
"""How much does the evaluation harness add on top of the backend's own generate time?

Two measurements, printed side by side:

1. harness only: a scripted backend that answers instantly, so the wall time per episode is pure
   harness cost (episode policy, verifier, conversation bookkeeping, fsync'd journal, accounting).
2. tiny model (transformers, CPU): ``r3 evaluate``'s runner on synthetic countdown rows, with every
   batched generate call recorded; then the very same batches are replayed straight into the
   backend's batched generate. harness wall time vs raw generate time on the same prompts.

Usage: python benchmarks/bench_evaluate_overhead.py [--rows 32] [--max-tokens 16]
(On a GPU with vLLM, run the same comparison with --backend vllm and a real model path.)
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path


def _echo_rows(n: int) -> list[dict]:
    return [
        {
            "data_source": "bench_echo",
            "prompt": [{"role": "user", "content": f"say {i}"}],
            "reward_model": {"style": "rule", "ground_truth": str(i)},
            "extra_info": {"index": i, "split": "test"},
        }
        for i in range(n)
    ]


def bench_harness_only(n_rows: int, workdir: Path) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from r3_plugin.policy.tasks import VerifyResult, register_task
    from r3_plugin.tools.backends.scripted import ScriptedBackend, infer_turn
    from r3_plugin.tools.dataset_rows import read_task_rows
    from r3_plugin.tools.evaluation.accounting import summarize_records
    from r3_plugin.tools.evaluation.runner import EvalConfig, evaluate_rows
    from r3_plugin.tools.journal import Journal

    register_task(
        "bench_echo",
        lambda resp, gt, extra=None: VerifyResult(
            str(gt) == resp.strip(), "correct" if str(gt) == resp.strip() else "wrong"
        ),
        replace_existing=True,
    )
    path = workdir / "echo.parquet"
    pq.write_table(pa.Table.from_pylist(_echo_rows(n_rows)), path)
    rows = read_task_rows(path)

    def script(messages: list[dict]) -> str:
        gt = messages[0]["content"].split()[-1]
        turn = infer_turn(messages)
        if turn == "attempt":
            return gt if int(gt) % 2 else "wrong"  # half the rows fail their first try
        return "thinking about it " * 10 if turn == "reflection" else gt

    backend = ScriptedBackend(script)
    start = time.perf_counter()
    with Journal.open(workdir / "echo.jsonl", {"bench": 1}, restart=True) as journal:
        asyncio.run(evaluate_rows(rows, backend, EvalConfig(concurrency=64), journal, progress=False))
        summarize_records(journal.records.values())
    wall = time.perf_counter() - start
    episodes = n_rows + n_rows // 2  # reflect episodes + controls for the failed half
    # raw: the same number of backend calls, no harness
    calls = [c["messages"] for c in backend.calls]
    raw_backend = ScriptedBackend(script)

    async def raw() -> None:
        await asyncio.gather(*(raw_backend.generate(m, max_tokens=None) for m in calls))

    start = time.perf_counter()
    asyncio.run(raw())
    raw_wall = time.perf_counter() - start
    return {"episodes": episodes, "calls": len(calls), "wall": wall, "raw": raw_wall}


def bench_tiny_model(n_rows: int, max_tokens: int, workdir: Path) -> dict:
    from r3_plugin.local.tiny_model import ensure_tiny_model
    from r3_plugin.tools.backends.base import SamplingConfig
    from r3_plugin.tools.backends.hf import HFBackend
    from r3_plugin.tools.data.countdown import build_countdown
    from r3_plugin.tools.dataset_rows import read_task_rows
    from r3_plugin.tools.evaluation.runner import EvalConfig, evaluate_rows
    from r3_plugin.tools.journal import Journal

    model = ensure_tiny_model()
    paths = build_countdown(workdir / "cd", max_rows=n_rows + 1, test_size=n_rows, seed=0, progress=False)
    rows = read_task_rows(paths["test"])
    backend = HFBackend(
        str(model), SamplingConfig(temperature=0, max_tokens=max_tokens), device="cpu", max_batch_size=64
    )
    batches: list[list] = []
    inner = backend._run_batch

    def recording(requests):
        batches.append(list(requests))
        return inner(requests)

    backend._run_batch = recording  # type: ignore[method-assign]
    backend._batcher._run_batch = recording
    backend.generate_ids_batch(batches_warmup := [(backend.encode(rows[0].prompt), 4)])  # warm up kernels
    batches.clear()
    del batches_warmup
    start = time.perf_counter()
    with Journal.open(workdir / "cd.jsonl", {"bench": 2}, restart=True) as journal:

        async def run() -> None:
            await evaluate_rows(rows, backend, EvalConfig(concurrency=64), journal, progress=False)
            await backend.aclose()

        asyncio.run(run())
        episodes = sum(1 + (r["control"] is not None) for r in journal.records.values())
    wall = time.perf_counter() - start
    start = time.perf_counter()
    for requests in batches:
        inner(requests)
    raw = time.perf_counter() - start
    return {"episodes": episodes, "batches": len(batches), "requests": sum(map(len, batches)), "wall": wall, "raw": raw}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=32)
    parser.add_argument("--harness-rows", type=int, default=2000)
    parser.add_argument("--max-tokens", type=int, default=16)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        h = bench_harness_only(args.harness_rows, Path(tmp))
        print(f"harness only (scripted backend, {h['episodes']} episodes, {h['calls']} calls):")
        print(f"  harness wall {h['wall']:.3f} s = {1e3 * h['wall'] / h['episodes']:.3f} ms/episode")
        print(
            f"  raw backend calls {h['raw']:.3f} s; "
            f"harness overhead {1e3 * (h['wall'] - h['raw']) / h['episodes']:.3f} ms/episode"
        )
        t = bench_tiny_model(args.rows, args.max_tokens, Path(tmp))
        print(
            f"tiny model, transformers on CPU ({t['episodes']} episodes, "
            f"{t['requests']} requests in {t['batches']} batches,"
            f" max {args.max_tokens} tokens/turn):"
        )
        print(f"  harness wall {t['wall']:.3f} s vs raw batched generate on the same prompts {t['raw']:.3f} s")
        print(
            f"  overhead {1e3 * (t['wall'] - t['raw']) / t['episodes']:.2f} ms/episode; raw/harness throughput ratio "
            f"{t['raw'] / t['wall']:.3f}"
        )


if __name__ == "__main__":
    main()
