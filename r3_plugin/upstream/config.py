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
"""The example trainer config and run script, derived from the plugin's ``r3_countdown`` recipe.

The recipe is a ``# @package _global_`` override of verl's ``ppo_trainer``; upstream it becomes a
primary config with ``defaults: [ppo_trainer, _self_]``, minus what only the plugin provides (its
model-preset block, its replay buffer and agent-loop manager (R3's GRPO group rule, not in the series
yet) and its ``pkg://r3_plugin`` reward function:
verl's own ``default_compute_score`` now handles countdown, and the agent loop scores episodes).
"""

from __future__ import annotations

import copy
import re
from typing import Any

import yaml

from r3_plugin.upstream import layout
from r3_plugin.upstream.transform import TransformError

RECIPE_SRC = "recipes/recipe/r3_countdown.yaml"
PLUGIN_ONLY_KEYS = ("r3_model_info",)
#: r3 keys read by the plugin's replay buffer (R3's GRPO group rule), which the series does not carry yet.
SAMPLER_ONLY_R3_KEYS = ("min_group_size", "max_refill_prompts")

CONFIG_HEADER = """\
# R3 (Reflect, Retry, Reward) on Countdown with GRPO: docs/algo/r3.md
#
# Data:  python3 examples/data_preprocess/countdown.py --local_save_dir ~/data/countdown
# Train: bash examples/r3_trainer/run_qwen2_5_1.5b_countdown.sh
#
# Optimiser, KL and batch settings follow the paper (arXiv:2505.24726). The r3 block configures the
# r3_agent loop (verl/experimental/agent_loop/r3/r3_agent_loop.py: R3Config, EpisodeConfig).
hydra:
  searchpath:
    - pkg://verl.trainer.config

defaults:
  - ppo_trainer
  - _self_

"""


def load_recipe(sources) -> dict[str, Any]:
    try:
        recipe = yaml.safe_load(sources.read(RECIPE_SRC))
    except yaml.YAMLError as exc:
        raise TransformError(f"{RECIPE_SRC}: not valid YAML: {exc}") from exc
    if not isinstance(recipe, dict) or "r3" not in recipe:
        raise TransformError(f"{RECIPE_SRC}: expected a mapping with an r3 block")
    return recipe


def upstream_config(recipe: dict[str, Any]) -> dict[str, Any]:
    """The recipe without plugin-only keys, its ``${r3_model_info.*}`` references resolved."""
    cfg = copy.deepcopy(recipe)
    info = cfg.get("r3_model_info") or {}
    for key in PLUGIN_ONLY_KEYS:
        cfg.pop(key, None)
    for key in SAMPLER_ONLY_R3_KEYS:
        cfg.get("r3", {}).pop(key, None)
    cfg.get("data", {}).pop("gen_batch_size", None)
    cfg.get("actor_rollout_ref", {}).get("rollout", {}).get("agent", {}).pop("agent_loop_manager_class", None)
    trainer = cfg.get("trainer", {})
    if isinstance(trainer.get("v1"), dict):
        trainer["v1"].pop("trainer_mode", None)  # verl's default is sync
        trainer["v1"].pop("sampler", None)  # the plugin's replay buffer (pkg://r3_plugin.integration.sampler)
        if not trainer["v1"]:
            trainer.pop("v1")
    reward = cfg.get("reward", {})
    if isinstance(reward, dict):
        reward.pop("custom_reward_function", None)
        if not reward:
            cfg.pop("reward")

    def resolve(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        if isinstance(value, str):
            for name in re.findall(r"\$\{r3_model_info\.(\w+)\}", value):
                if name not in info:
                    raise TransformError(f"{RECIPE_SRC}: ${{r3_model_info.{name}}} has no value in r3_model_info")
                value = value.replace(f"${{r3_model_info.{name}}}", str(info[name]))
            return value.replace("/data/r3/", "/data/")
        return value

    return resolve(cfg)


def example_config(sources) -> str:
    cfg = upstream_config(load_recipe(sources))
    body = yaml.safe_dump(cfg, sort_keys=False, default_flow_style=False, width=100, allow_unicode=True)
    # a blank line between top-level blocks, as in verl's own configs
    body = re.sub(r"\n(?=[A-Za-z_])", "\n\n", body)
    return CONFIG_HEADER + body


def run_script(sources) -> str:
    cfg = upstream_config(load_recipe(sources))
    try:
        model = cfg["actor_rollout_ref"]["model"]["path"]
        gpus = cfg["trainer"]["n_gpus_per_node"]
        nnodes = cfg["trainer"]["nnodes"]
    except KeyError as exc:
        raise TransformError(f"{RECIPE_SRC}: missing {exc} (model path / trainer sizes)") from exc
    config_dir, _, config_file = layout.EXAMPLE_CONFIG_PATH.rpartition("/")
    config_name = config_file.removesuffix(".yaml")
    return f"""\
#!/usr/bin/env bash
# R3 (Reflect, Retry, Reward) on Countdown: GRPO where only the self-reflection written after a
# failed attempt is trained, rewarded when the retry succeeds. See docs/algo/r3.md.
#
# Hyperparameters live in {layout.EXAMPLE_CONFIG_PATH}; any key can be overridden here.
# Prepare the data first:
#   python3 examples/data_preprocess/countdown.py --local_save_dir $HOME/data/countdown
set -x

PROJECT_DIR="$(cd "$(dirname "${{BASH_SOURCE[0]}}")/../.." && pwd)"
CONFIG_PATH="$PROJECT_DIR/{config_dir}"

python3 -m verl.trainer.main_ppo \\
    --config-path="$CONFIG_PATH" \\
    --config-name='{config_name}' \\
    data.train_files=$HOME/data/countdown/train.parquet \\
    data.val_files=$HOME/data/countdown/test.parquet \\
    actor_rollout_ref.model.path={model} \\
    actor_rollout_ref.rollout.agent.default_agent_loop=r3_agent \\
    trainer.n_gpus_per_node={gpus} \\
    trainer.nnodes={nnodes} "$@"
"""
