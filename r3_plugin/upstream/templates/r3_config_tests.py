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
"""The R3 example config composes with verl's ppo_trainer config, and its r3 block is a valid R3Config."""
# ruff: noqa: I001

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
from verl.experimental.agent_loop.r3 import R3Config, get_task

CONFIG_DIR = Path(__file__).resolve().parents[3] / "examples" / "r3_trainer" / "config"


@pytest.fixture(scope="module")
def config():
    if not CONFIG_DIR.is_dir():
        pytest.skip(f"{CONFIG_DIR} is not part of this checkout")
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base=None):
        return compose("r3_countdown", overrides=["actor_rollout_ref.model.path=/models/any"])


def test_example_config_selects_the_r3_agent_loop(config):
    assert config.actor_rollout_ref.rollout.agent.default_agent_loop == "r3_agent"
    assert "r3_agent" in _agent_loop_registry
    assert config.algorithm.adv_estimator == "grpo"
    r3 = R3Config.from_mapping(config.r3)
    assert r3.credit == "reflection" and r3.episode.max_reflections >= 1


def test_validation_sampling_differs_from_training(config):
    # the loop tells validation from training by its sampling parameters
    rollout = config.actor_rollout_ref.rollout
    val = rollout.val_kwargs
    assert (val.temperature, val.top_p, val.top_k) != (rollout.temperature, rollout.top_p, rollout.top_k)


def test_countdown_task_is_built_in():
    task = get_task("countdown")
    ground_truth = {"target": 46, "numbers": [3, 7, 25]}
    assert task.verify("<answer>25 + 3 * 7</answer>", ground_truth).passed
    assert task.reflection_prompt and task.retry_prompt
