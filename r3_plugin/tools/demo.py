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
"""See R3 train: a few GRPO steps through verl's real trainer on CPU, then what was trained.

By default this runs ``python -m verl.trainer.main_ppo +recipe=r3_countdown +r3_scale=cpu`` on the
embedded default: synthetic countdown tasks and a small model built or shipped locally, with verl's
real vLLM-CPU rollouts, FSDP2 actor and reference, GRPO advantages and R3's group rule. Then it
prints, per step, the ``r3/*`` metrics from verl's step log, and for a few trajectories of the last
step the transcript with the trained span marked ``[[...]]`` (green on a terminal), its reward and
its GRPO advantage, as the trainer computed them. Start-up (Ray, workers, the vLLM engine) takes
about two minutes on 2 cores, then a step takes seconds. Needs the CPU stack
(``bash scripts/setup_cpu_stack.sh``).

``--quick`` instead runs one step's episodes in process through verl's agent-loop worker against a
local model server (no Ray, no vLLM, no training), in seconds:
  --policy model     the same small model through transformers;
  --policy scripted  a noisy oracle that sometimes answers right, reflects with a real diagnosis and
                     sometimes fixes its answer, so rewards vary within a group.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import random
import re
import sys
import tempfile
from pathlib import Path
from typing import Any

_PROMPT_RE = re.compile(r"Using the numbers \[([\d,\s]+)\], create an equation that equals (\d+)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default=None, help="HF model dir (default: the embedded model)")
    parser.add_argument("--steps", type=int, default=3, help="GRPO steps through verl's trainer (default: 3)")
    parser.add_argument("--tasks", type=int, default=4, help="countdown tasks (GRPO groups) per step (default: 4)")
    parser.add_argument("--group-size", type=int, default=4, help="episodes per task (rollout.n) (default: 4)")
    parser.add_argument("--max-tokens", type=int, default=64, help="token cap per turn (default: 64)")
    parser.add_argument("--credit", choices=("reflection", "reflection_and_retry"), default="reflection")
    parser.add_argument("--seed", type=int, default=0, help="data and sampling seed (default: 0)")
    parser.add_argument("--show", type=int, default=4, help="transcripts to print in full (default: 4)")
    parser.add_argument(
        "--output-dir",
        default=None,
        help="keep the run here: main_ppo.log, metrics.jsonl, token dumps, data (default: a temporary folder)",
    )
    parser.add_argument("--no-color", action="store_true", help="mark the trained span with [[ ]] only")
    parser.add_argument("--quick", action="store_true", help="one step's episodes in process, no trainer (see above)")
    parser.add_argument("--policy", choices=("model", "scripted"), default="model", help="--quick: who answers")


def run(args: argparse.Namespace) -> int:
    for flag, value, low in (
        ("--tasks", args.tasks, 1),
        ("--group-size", args.group_size, 2),
        ("--steps", args.steps, 1),
    ):
        if value < low:
            print(f"r3 demo: {flag} must be >= {low}, got {value}", file=sys.stderr)
            return 2
    if args.max_tokens < 1 or args.show < 0:
        print("r3 demo: --max-tokens must be >= 1 and --show >= 0", file=sys.stderr)
        return 2
    if args.quick:
        return asyncio.run(_quick_demo(args))
    from r3_plugin.tools.demo_trainer import run_trainer_demo

    return run_trainer_demo(args)


async def _quick_demo(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from r3_plugin.local.local_rollout import compose_config, grpo_advantages, load_batch, local_overrides, make_worker
    from r3_plugin.local.local_rollout import rollout as run_rollout
    from r3_plugin.local.trainer_run import prompt_overrides
    from r3_plugin.policy.episode_info import aggregate_step_metrics
    from r3_plugin.tools.data.countdown import model_prompts
    from r3_plugin.tools.demo_trainer import demo_tasks, embedded_model

    color = not args.no_color and sys.stdout.isatty()
    model_dir = Path(args.model) if args.model else embedded_model()
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    overrides = local_overrides(str(model_dir), n=args.group_size, prompt_length=256, response_length=512)
    overrides += [
        f"++r3.attempt_max_tokens={args.max_tokens}",
        f"++r3.reflection_max_tokens={args.max_tokens}",
        f"++r3.retry_max_tokens={args.max_tokens}",
        f"++r3.credit={args.credit}",
        *prompt_overrides(model_prompts(model_dir), prefix="++"),
    ]
    config = compose_config(overrides)
    _print_config(config)

    with tempfile.TemporaryDirectory(prefix="r3-demo-") as tmp:
        paths, tasks = demo_tasks(model_dir, tmp, train_size=args.tasks, test_size=0, seed=args.seed)
        with contextlib.redirect_stdout(io.StringIO()):  # verl's dataset prints its own progress
            batch = load_batch(str(paths["train"]), config, tokenizer)
    server = _make_server(args, model_dir, tokenizer)
    worker = make_worker(config, server)
    print(f"\nModel {model_dir}")
    print(
        f"Running {count(args.tasks, 'countdown task')} ({tasks}) x "
        f"{count(args.group_size, 'episode')} ({args.policy} policy) ..."
    )
    out = await run_rollout(worker, batch, n=args.group_size)
    total = args.tasks * args.group_size
    if out is None:
        print(f"all {count(total, 'session')} were dropped ({dict(worker.dropped)}): nothing to train this step")
        return 0
    advantages = grpo_advantages(out, config)
    print(TRAINED_SPAN_LEGEND)
    _print_trajectories(out, advantages, tokenizer, args.show, color)
    dropped = total - len(out)
    metrics = aggregate_step_metrics(list(out.non_tensor_batch["reward_extra_info"]), worker.dropped)
    print(f"\nR3 step metrics ({count(len(out), 'trajectory')}, {count(dropped, 'session')} dropped):")
    for key in sorted(metrics):
        print(f"  {key:36s} {metrics[key]:.3f}")
    if float(advantages.abs().sum()) == 0.0:
        print(
            "\nEvery advantage is 0: GRPO needs rewards that differ within a group, and this policy never "
            "fixes its answer.\nTry `r3 demo --policy scripted` to see credit flow to the reflection tokens."
        )
    return 0


def _print_config(config: Any) -> None:
    rollout = config.actor_rollout_ref.rollout
    actor = config.actor_rollout_ref.actor
    r3 = config.r3
    rows = [
        ("algorithm.adv_estimator", config.algorithm.adv_estimator),
        ("rollout.agent.default_agent_loop", rollout.agent.default_agent_loop),
        ("rollout.n", rollout.n),
        (
            "actor.optim",
            f"lr {actor.optim.lr}, {actor.optim.lr_scheduler_type}, warmup {actor.optim.lr_warmup_steps_ratio}",
        ),
        ("actor.kl_loss_coef", actor.kl_loss_coef),
        (
            "r3",
            f"mode={r3.mode} credit={r3.credit} max_reflections={r3.max_reflections} "
            f"min_group_size={r3.min_group_size}",
        ),
        ("trainer.v1.trainer_mode", config.trainer.v1.trainer_mode),
    ]
    print("Composed verl config: +recipe=r3_countdown (+ CPU-sized overrides)")
    print(format_rows(rows))
    print("  (quick view: verl's agent-loop worker in process; no GRPO group rule, no training step)")


def format_rows(rows: list[tuple[str, Any]], indent: int = 2) -> str:
    """``key   value`` lines with the values in one column, however long the keys are."""
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{' ' * indent}{key:<{width}}  {value}" for key, value in rows)


def count(n: int, noun: str) -> str:
    """``1 session``, ``2 sessions``, ``3 trajectories``: a count with its noun in the right number."""
    if n == 1:
        return f"{n} {noun}"
    return f"{n} {noun[:-1]}ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else f"{n} {noun}s"


def _make_server(args: argparse.Namespace, model_dir: Path, tokenizer: Any):
    from r3_plugin.local.local_server import HFTokenServer, ScriptedTokenServer

    if args.policy == "model":
        return HFTokenServer(str(model_dir), seed=args.seed)
    return ScriptedTokenServer(tokenizer, NoisyOracle(seed=args.seed))


class NoisyOracle:
    """A scripted countdown policy: right 30% of first attempts, fixes its answer after 60% of reflections.

    Each session draws from its own generator, seeded by ``seed``, its task and how many sessions of
    that task came before it. One shared generator would hand out draws in whatever order the
    concurrent turns arrive, so the same ``--seed`` gave a different table each run; this way each group
    gets the same outcomes every run (only which of its interchangeable sessions gets which may vary,
    and the printout sorts a group's members).
    """

    def __init__(self, seed: int = 0, p_first: float = 0.3, p_fix: float = 0.6) -> None:
        self.seed = seed
        self.p_first, self.p_fix = p_first, p_fix
        self.sessions: dict[str, dict[str, Any]] = {}

    def _seen(self, prompt_text: str) -> int:
        """How many sessions of this task (same first prompt) started before this one."""
        return sum(state["prompt"] == prompt_text for state in self.sessions.values())

    def __call__(self, prompt_text: str, request_id: str) -> str:
        from r3_plugin.tools.data.countdown import solve

        state = self.sessions.get(request_id)
        if state is None:
            match = _PROMPT_RE.search(prompt_text)
            numbers = [int(x) for x in match.group(1).split(",")] if match else [1, 2]
            target = int(match.group(2)) if match else 3
            state = {
                "numbers": numbers,
                "target": target,
                "solution": solve(numbers, target) or "1",
                "prompt": prompt_text,
                "rng": random.Random(f"{self.seed}:{prompt_text}:{self._seen(prompt_text)}"),
            }
            self.sessions[request_id] = state
        turn = prompt_text.count("<|im_start|>assistant") - 1
        numbers, solution, rng = state["numbers"], state["solution"], state["rng"]
        if turn == 0:
            if rng.random() < self.p_first:
                return f"<think> search </think> <answer> {solution} </answer>"
            wrong = " + ".join(str(n) for n in numbers[:-1])  # leaves a number out
            return f"<think> add them up </think> <answer> {wrong} </answer>"
        if turn == 1:
            if rng.random() < self.p_fix:
                state["fix"] = True
                return f"I left out {numbers[-1]}; every number must be used exactly once."
            state["fix"] = False
            return "I should be more careful."
        if state.get("fix"):
            return f"<think> use all numbers </think> <answer> {solution} </answer>"
        return f"<answer> {' * '.join(str(n) for n in numbers)} </answer>"


def _print_trajectories(out: Any, advantages: Any, tokenizer: Any, show: int, color: bool) -> None:
    responses = out.batch["responses"]
    masks = out.batch["response_mask"]
    scores = out.batch["rm_scores"].sum(-1)
    prompt_width = out.batch["prompts"].shape[1]
    uids = out.non_tensor_batch["uid"]
    group_ids = {uid: i for i, uid in enumerate(dict.fromkeys(uids))}
    ends = out.non_tensor_batch["end_reason"]
    # A group's members are interchangeable; sort them so the same outcomes always print the same way.
    order = sorted(
        range(len(out)), key=lambda i: (group_ids[uids[i]], -float(scores[i]), str(ends[i]), int(masks[i].sum()))
    )
    # Print one full transcript per group first (up to --show), then the rest as one-line summaries.
    first_of_group: dict[Any, int] = {}
    for i in order:
        first_of_group.setdefault(uids[i], i)
    full = list(first_of_group.values())[:show]
    full += [i for i in order if i not in full][: show - len(full)]
    for i in order:
        mask = masks[i].bool()
        adv = float(advantages[i][mask][0]) if mask.any() else 0.0
        header = (
            f"--- task {group_ids[uids[i]]}  reward {scores[i]:.0f}  advantage {adv:+.3f}  "
            f"trained tokens {int(mask.sum())}  end {ends[i]}"
        )
        print("\n" + header)
        if i not in full:
            continue
        prompt_mask = out.batch["attention_mask"][i][:prompt_width].bool()
        print(tokenizer.decode(out.batch["prompts"][i][prompt_mask].tolist()), end="")
        print(
            mark_trained(
                responses[i][: int(out.batch["attention_mask"][i][prompt_width:].sum())].tolist(),
                mask.tolist(),
                tokenizer,
                color,
            )
        )


TRAINED_SPAN_LEGEND = (
    "[[...]] marks the trained tokens (response_mask 1, green on a terminal); the rest of a transcript "
    "has mask 0 and gets no gradient."
)


def mark_trained(ids: list[int], mask: list[int], tokenizer: Any, color: bool) -> str:
    """Decode a response, wrapping each run of trained (mask 1) tokens."""
    pieces: list[str] = []
    start = 0
    for j in range(1, len(ids) + 1):
        if j == len(ids) or mask[j] != mask[start]:
            text = tokenizer.decode(ids[start:j])
            if mask[start]:
                text = f"\033[1;32m[[{text}]]\033[0m" if color else f"[[{text}]]"
            pieces.append(text)
            start = j
    return "".join(pieces)
