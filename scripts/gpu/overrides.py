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
"""The Hydra override lists of the GPU end-to-end runs, in one place.

``e2e.sh`` prints them with ``python3 scripts/gpu/overrides.py STAGE --model ... --data-dir ...``
(one override per line) and passes them to ``python -m verl.trainer.main_ppo +recipe=r3_countdown``;
``tests/test_gpu_e2e_config.py`` composes the very same lists on CPU and runs verl's
``validate_config`` and r3-plugin's guard on them, so a typo fails here, not on the GPU.

Stages:
  r3    the recipe on countdown; overrides only for the model, data paths, sizes and GPU count
        (plus the kit's no-flash-attn settings and vLLM's stats log, which prints the prefix-cache
        hit rate)
  toy   the same on the toy task r3_toy_parity (rewards vary), with the token-level dump trainer
  base  single-turn GRPO on the same countdown prompts and sizes (verl's single_turn_agent), the
        cost baseline for r3
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

RECIPE = "r3_countdown"
STAGES = ("r3", "toy", "base")

#: Sizes shared by every stage: 32 prompts x 4 = 128 trajectories a step, one optimiser step each,
#: an R3 episode of at most 256 + 128 + 256 generated tokens plus ~210 inserted prompt tokens.
PROMPTS_PER_STEP = 32
GROUP_SIZE = 4
MAX_PROMPT_LENGTH = 320  # the tiny tokenizer makes ~225-token countdown prompts
MAX_RESPONSE_LENGTH = 1024
ATTEMPT_TOKENS, REFLECTION_TOKENS, RETRY_TOKENS = 256, 128, 256


def model_overrides(model: str) -> list[str]:
    """The model path, plus the kit's settings for a machine without flash-attn."""
    return [
        f"actor_rollout_ref.model.path={model}",
        "actor_rollout_ref.model.use_remove_padding=False",
        "+actor_rollout_ref.model.override_config.attn_implementation=sdpa",
        "actor_rollout_ref.actor.use_torch_compile=False",
    ]


def size_overrides(steps: int, prompts: int = PROMPTS_PER_STEP, n: int = GROUP_SIZE) -> list[str]:
    """Batch, lengths, step count and GPU count (one GPU)."""
    return [
        f"data.train_batch_size={prompts}",
        f"data.max_prompt_length={MAX_PROMPT_LENGTH}",
        f"data.max_response_length={MAX_RESPONSE_LENGTH}",
        "data.val_max_samples=16",
        "data.dataloader_num_workers=0",
        f"actor_rollout_ref.rollout.n={n}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={prompts}",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=16",
        "actor_rollout_ref.rollout.log_prob_micro_batch_size_per_gpu=32",
        "actor_rollout_ref.ref.log_prob_micro_batch_size_per_gpu=32",
        "actor_rollout_ref.rollout.gpu_memory_utilization=0.4",
        "actor_rollout_ref.rollout.enforce_eager=True",
        "actor_rollout_ref.rollout.agent.num_workers=2",
        f"r3.attempt_max_tokens={ATTEMPT_TOKENS}",
        f"r3.reflection_max_tokens={REFLECTION_TOKENS}",
        f"r3.retry_max_tokens={RETRY_TOKENS}",
        "trainer.n_gpus_per_node=1",
        "trainer.nnodes=1",
        f"trainer.total_training_steps={steps}",
        "trainer.save_freq=-1",
    ]


def data_overrides(data_dir: str) -> list[str]:
    return [f"data.train_files={data_dir}/train.parquet", f"data.val_files={data_dir}/test.parquet"]


#: Validation runs outside the step timer; only the r3 stage keeps it (first/second-try accuracy at
#: step 0 and at the last step), the others skip it to save device minutes.
NO_VALIDATION = ["trainer.val_before_train=False", "trainer.test_freq=-1"]

#: vLLM's periodic stats log line carries "Prefix cache hit rate: X%" (verl turns it off by default).
LOG_OVERRIDES = ["actor_rollout_ref.rollout.disable_log_stats=False"]


def stage_overrides(
    stage: str, *, model: str, data_root: str, steps: int = 3, dump_dir: str = "/tmp/e2e-dump"
) -> list[str]:
    """Every override after ``+recipe=r3_countdown`` for ``stage``; ``data_root`` holds the data folders.

    ``data_root/countdown`` (from ``r3 data countdown``), ``data_root/toy`` (``r3_toy_task``) and
    ``data_root/single_turn`` (countdown rows without ``agent_name``, so verl's
    ``rollout.agent.default_agent_loop`` decides the loop) are written by ``prepare_data.py``.
    """
    common = model_overrides(model) + LOG_OVERRIDES
    if stage == "r3":
        return (
            common
            + data_overrides(f"{data_root}/countdown")
            + size_overrides(steps)
            + ["trainer.experiment_name=e2e-r3"]
        )
    if stage == "toy":
        # n=8 so that groups keep several episodes after first-try successes are dropped (~50% here)
        return (
            common
            + data_overrides(f"{data_root}/toy")
            + size_overrides(steps, prompts=PROMPTS_PER_STEP // 2, n=2 * GROUP_SIZE)
            + NO_VALIDATION
            + [
                f"trainer.rollout_data_dir={dump_dir}",
                "trainer.experiment_name=e2e-toy",
            ]
        )
    if stage == "base":
        return (
            common
            + data_overrides(f"{data_root}/single_turn")
            + size_overrides(steps)
            + NO_VALIDATION
            + [
                "actor_rollout_ref.rollout.agent.default_agent_loop=single_turn_agent",
                "trainer.experiment_name=e2e-base",
            ]
        )
    raise ValueError(f"unknown stage {stage!r}; choose from {', '.join(STAGES)}")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Print the main_ppo overrides of one GPU e2e stage, one per line.")
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--model", default="/tmp/tiny-qwen", help="model folder (default: %(default)s)")
    parser.add_argument(
        "--data-root", default="/tmp/e2e-data", help="folder of the data folders (default: %(default)s)"
    )
    parser.add_argument("--steps", type=int, default=3, help="training steps (default: %(default)s)")
    parser.add_argument("--dump-dir", default="/tmp/e2e-dump", help="toy stage: dump folder (default: %(default)s)")
    args = parser.parse_args(argv)
    items = stage_overrides(
        args.stage, model=args.model, data_root=args.data_root, steps=args.steps, dump_dir=args.dump_dir
    )
    print("\n".join([f"+recipe={RECIPE}", *items]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
