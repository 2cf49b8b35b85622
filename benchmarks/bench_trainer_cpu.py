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
"""R3 step time vs single-turn GRPO step time, both through verl's real trainer on CPU, same prompts.

Two ``main_ppo`` runs on the same synthetic countdown data, model, batch and seeds:
``+recipe=r3_countdown +r3_scale=cpu`` and the same command as plain single-turn GRPO (verl's
``single_turn_agent``, verl's own replay buffer, no ``r3`` block). Steps after the first (which
includes warm-up) are compared: seconds per step, tokens per trajectory (prompt + response, as the
trainer processes them; for R3 the response holds the attempt, the inserted prompts, the
reflection and the retry), and seconds per processed token. The token-normalised ratio R3 /
single-turn is the claim to check (goal <= 1.1: R3's extra cost is only its extra tokens). vLLM's
prefix-cache hit rate comes from the rollout server's own Prometheus counters
(``vllm:prefix_cache_hits`` / ``vllm:prefix_cache_queries``), read while the run is going.

    python benchmarks/bench_trainer_cpu.py [--model DIR] [--steps 6] [--out bench_trainer_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

SINGLE_TURN = [
    "trainer.v1.sampler.sampler_kwargs.min_group_size=2",  # literals before ~r3: they interpolate r3.*
    "trainer.v1.sampler.sampler_kwargs.max_refill_prompts=null",
    "~r3",
    "actor_rollout_ref.rollout.agent.default_agent_loop=single_turn_agent",
    "actor_rollout_ref.rollout.agent.agent_loop_manager_class=null",
    "trainer.v1.sampler.custom_sampler.path=null",
    "trainer.v1.sampler.custom_sampler.name=null",
]
_SERVER = re.compile(r"LLMServerManager: \['([^']+)'")
_COUNTER = re.compile(r"^(vllm:prefix_cache_(?:hits|queries))(?:_total)?(?:\{[^}]*\})? ([0-9.e+]+)$", re.M)


def _prefix_cache_counters(log_path: Path) -> dict[str, float] | None:
    """The rollout server's prefix-cache counters, from its /metrics endpoint (None if not reachable)."""
    import urllib.request

    match = _SERVER.search(log_path.read_text(errors="replace"))
    if not match:
        return None
    try:
        with urllib.request.urlopen(f"http://{match.group(1)}/metrics", timeout=2) as response:
            text = response.read().decode()
    except OSError:
        return None
    counters: dict[str, float] = {}
    for name, value in _COUNTER.findall(text):
        counters[name] = counters.get(name, 0.0) + float(value)
    return counters or None


def _run_and_watch(run: Any, timeout: float) -> tuple[int, dict[str, float] | None]:
    """Run to the end, reading the server's counters every few seconds (the server goes with the run)."""
    import time

    run.start()
    last = None
    deadline = time.monotonic() + timeout
    while run.process.poll() is None:
        if time.monotonic() > deadline:
            run.kill()
            return 124, last
        last = _prefix_cache_counters(run.log_path) or last
        time.sleep(3)
    return run.process.returncode, last


def _summary(metrics: dict[int, dict[str, Any]], first: int) -> dict[str, float]:
    steps = [s for s in sorted(metrics) if s >= first and "timing_s/step" in metrics[s]]
    if not steps:
        raise SystemExit("no timed steps in the run's metrics")
    seconds = [metrics[s]["timing_s/step"] for s in steps]
    tokens = [metrics[s]["perf/total_num_tokens"] for s in steps]
    return {
        "steps": len(steps),
        "step_s": statistics.fmean(seconds),
        "gen_s": statistics.fmean(metrics[s]["timing_s/gen"] for s in steps),
        "tokens_per_step": statistics.fmean(tokens),
        "response_tokens_per_trajectory": statistics.fmean(metrics[s]["response_length/mean"] for s in steps),
        "tokens_per_trajectory": statistics.fmean(
            metrics[s]["prompt_length/mean"] + metrics[s]["response_length/mean"] for s in steps
        ),
        "ms_per_token": 1000 * statistics.fmean(s / t for s, t in zip(seconds, tokens, strict=True)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="HF model dir (default: r3 demo's embedded model)")
    parser.add_argument("--steps", type=int, default=6, help="GRPO steps per run; the first is left out (default: 6)")
    parser.add_argument("--out", default="bench_trainer_cpu.json", help="JSON result file")
    parser.add_argument("--work-dir", default=None, help="keep both runs here (default: a temporary folder)")
    args = parser.parse_args(argv)

    import pandas as pd

    from r3_plugin.local.trainer_run import TrainerRun, main_ppo_command, run_env
    from r3_plugin.tools.data.countdown import build_countdown
    from r3_plugin.tools.demo_trainer import embedded_model

    work = Path(args.work_dir or tempfile.mkdtemp(prefix="bench-trainer-"))
    model = args.model or str(embedded_model())
    data = build_countdown(work / "data", train_size=512, test_size=8, seed=0, progress=False)
    single = work / "data" / "train_single_turn.parquet"
    pd.read_parquet(data["train"]).drop(columns=["agent_name"]).to_parquet(single)
    common = [
        f"trainer.total_training_steps={args.steps}",
        "trainer.val_before_train=False",
        "trainer.test_freq=-1",
        "actor_rollout_ref.rollout.disable_log_stats=False",
        "data.seed=0",
    ]
    result: dict[str, Any] = {"model": model, "steps": args.steps}
    for name, train, extra in (("r3", data["train"], []), ("single_turn", single, SINGLE_TURN)):
        out = work / name
        command = main_ppo_command(
            "r3_countdown",
            model=model,
            train_files=train,
            val_files=data["test"],
            out_dir=out,
            overrides=common + extra,
        )
        run = TrainerRun(command, out, run_env(out))
        print(f"[bench] {name}: running main_ppo ({args.steps} steps) -> {run.log_path}", flush=True)
        rc, counters = _run_and_watch(run, timeout=1800)
        if rc != 0:
            print(f"[bench] {name}: main_ppo exited {rc}\n{run.log_tail()}", file=sys.stderr)
            return rc
        result[name] = _summary(run.metrics(), first=2)
        result[name]["wall_s"] = run.seconds
        queries = (counters or {}).get("vllm:prefix_cache_queries", 0.0)
        hits = (counters or {}).get("vllm:prefix_cache_hits", 0.0)
        result[name]["prefix_cache_hit_rate_pct"] = round(100 * hits / queries, 1) if queries else None
    r3, st = result["r3"], result["single_turn"]
    result["step_time_ratio"] = r3["step_s"] / st["step_s"]
    result["token_normalised_ratio"] = r3["ms_per_token"] / st["ms_per_token"]
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    print(
        f"\nR3 {r3['step_s']:.2f} s/step, {r3['tokens_per_trajectory']:.0f} tokens/trajectory vs single-turn "
        f"{st['step_s']:.2f} s/step, {st['tokens_per_trajectory']:.0f} tokens/trajectory: step time x"
        f"{result['step_time_ratio']:.2f}, per token x{result['token_normalised_ratio']:.2f} (goal <= 1.1); "
        f"vLLM prefix-cache hit rate: R3 {r3['prefix_cache_hit_rate_pct']}%, single-turn "
        f"{st['prefix_cache_hit_rate_pct']}% (share of prompt tokens served from the cache)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
