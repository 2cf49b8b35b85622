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
"""Benchmark: the r3_agent loop's own CPU time per episode vs verl's ToolAgentLoop, same token counts.

Both loops run through verl's AgentLoopWorker against a zero-latency scripted server, so the
time measured is the loop's bookkeeping (continuous-token merges, chat-template deltas,
verification, postprocessing), not generation. The ToolAgentLoop episode is shaped like an R3
episode: three assistant turns and two inserted context turns (tool responses instead of the
reflection/retry prompts) with matching token counts.

    python benchmarks/bench_agent_loop.py [--episodes 64] [--repeats 3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

from r3_plugin.local.local_rollout import compose_config, load_batch, local_overrides, make_worker, rollout
from r3_plugin.local.local_server import ScriptedTokenServer
from r3_plugin.local.tiny_model import build_tiny_model
from r3_plugin.policy.tasks import VerifyResult, register_task

QUESTION = "Make 10 from 3 and 7 and answer inside <answer> </answer>."
ATTEMPT = "<think> try multiplying the numbers first </think> <answer> 3 * 7 </answer>"
REFLECTION = "I multiplied the numbers, but the target needs their sum; add them instead next time."
RETRY = "<think> add the numbers </think> <answer> 3 + 7 </answer>"
REFLECT_PROMPT = "You tried solving the problem and got the wrong answer. Reflect on what went wrong."
RETRY_PROMPT = "Now try again and return the final equation in <answer> </answer> tags."

TOOL_FILE = '''
from verl.tools.function_tool import function_tool

@function_tool
def note(text: str) -> str:
    """Return a fixed note.

    Args:
        text: ignored.
    """
    return NOTE
'''


def _tool_call(text: str) -> str:
    return "<tool_call>" + json.dumps({"name": "note", "arguments": {"text": text}}) + "</tool_call>"


def _write_rows(path: Path, agent: str, episodes: int) -> str:
    rows = [
        {
            "data_source": "bench_toy",
            "prompt": [{"role": "user", "content": QUESTION}],
            "reward_model": {"style": "rule", "ground_truth": "3 + 7"},
            "extra_info": {"index": i},
            "agent_name": agent,
        }
        for i in range(episodes)
    ]
    pd.DataFrame(rows).to_parquet(path)
    return str(path)


async def _time(worker, batch, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.process_time()
        out = await rollout(worker, batch, n=1)
        times.append(time.process_time() - start)
        from r3_plugin.integration import agent_loop

        assert out is not None and len(out) == len(batch["index"]), dict(agent_loop._dropped_since_emit)
    return times


def _tokens_per_episode(out_tokens: list[int]) -> float:
    return sum(out_tokens) / max(len(out_tokens), 1)


async def main_async(args: argparse.Namespace) -> None:
    register_task(
        "bench_toy",
        lambda r, gt, e=None: VerifyResult(gt in r, "correct" if gt in r else "wrong"),
        reflection_prompt=REFLECT_PROMPT,
        retry_prompt=RETRY_PROMPT,
        replace_existing=True,
    )
    tmp = Path(tempfile.mkdtemp(prefix="r3-bench-"))
    model_dir = build_tiny_model(tmp / "model")
    tool_file = tmp / "tools.py"
    tool_file.write_text(TOOL_FILE.replace("NOTE", repr(RETRY_PROMPT[:40])))
    overrides = local_overrides(str(model_dir), n=1, prompt_length=1024, response_length=1024) + [
        "actor_rollout_ref.rollout.multi_turn.format=hermes",
        f"actor_rollout_ref.rollout.multi_turn.function_tool_path={tool_file}",
        "actor_rollout_ref.rollout.multi_turn.max_assistant_turns=3",
        "actor_rollout_ref.rollout.calculate_log_probs=true",
    ]
    config = compose_config(overrides)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)

    def r3_script(prompt_text: str, request_id: str) -> str:
        turn = prompt_text.count("<|im_start|>assistant") - 1
        return (ATTEMPT, REFLECTION, RETRY)[min(turn, 2)]

    def tool_script(prompt_text: str, request_id: str) -> str:
        turn = prompt_text.count("<|im_start|>assistant") - 1
        return (_tool_call(ATTEMPT[:40]), _tool_call(REFLECTION[:52]), RETRY)[min(turn, 2)]

    results = {}
    for name, agent, script in (("r3_agent", "r3_agent", r3_script), ("tool_agent", "tool_agent", tool_script)):
        server = ScriptedTokenServer(tokenizer, script)
        worker = make_worker(config, server)
        with contextlib.redirect_stdout(io.StringIO()):
            batch = load_batch(_write_rows(tmp / f"{agent}.parquet", agent, args.episodes), config, tokenizer)
        await _time(worker, batch, 1)  # warm-up: chat-template compilation, first imports
        out = await rollout(worker, batch, n=1)
        resp_tokens = out.batch["attention_mask"][:, out.batch["prompts"].shape[1] :].sum(-1).tolist()
        gen_tokens = out.batch["response_mask"].sum(-1).tolist() if agent == "tool_agent" else None
        times = await _time(worker, batch, args.repeats)
        per_episode_ms = statistics.median(times) / args.episodes * 1e3
        results[name] = (per_episode_ms, _tokens_per_episode(resp_tokens), len(server.calls) / (args.repeats + 2))
        if gen_tokens is not None:
            results[name] += (_tokens_per_episode(gen_tokens),)

    r3_ms, r3_tok, r3_calls = results["r3_agent"][:3]
    tool_ms, tool_tok, tool_calls = results["tool_agent"][:3]
    print(f"episodes per run: {args.episodes}, repeats: {args.repeats} (median CPU time, zero-latency server)")
    print(f"{'loop':12s} {'CPU ms/episode':>15s} {'response tokens/episode':>24s} {'generate calls/run':>19s}")
    print(f"{'r3_agent':12s} {r3_ms:15.2f} {r3_tok:24.1f} {r3_calls:19.0f}")
    print(f"{'tool_agent':12s} {tool_ms:15.2f} {tool_tok:24.1f} {tool_calls:19.0f}")
    print(
        f"ratio r3_agent / tool_agent: {r3_ms / tool_ms:.2f}x per episode, "
        f"{(r3_ms / r3_tok) / (tool_ms / tool_tok):.2f}x per response token"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    asyncio.run(main_async(parser.parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
