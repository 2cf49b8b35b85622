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
"""Every recipe composes through verl's real ``main_ppo`` config, passes verl's validation and divides.

The subprocess tests run ``python -m verl.trainer.main_ppo --cfg job`` from an empty directory, as a
user would after ``pip install``; the bulk of the combinations use Hydra's compose API in-process on
the same config directory and search path (``r3_plugin.tools.show_config.compose``), which is 10x faster.
"""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from r3_plugin.tools import show_config
from r3_plugin.tools.sizing import SizingError, batch_plan, memory_estimate

REPO = Path(__file__).resolve().parents[1]
TASK_RECIPES = ("r3_countdown", "r3_function_calling", "r3_countdown_offline")
MODELS = (
    "qwen2-1.5b",
    "qwen2-7b",
    "qwen2.5-1.5b",
    "qwen2.5-3b",
    "qwen2.5-7b",
    "llama3.1-8b",
    "llama3.2-3b",
    "phi3.5-mini",
)
HF_IDS = {
    "qwen2-1.5b": "Qwen/Qwen2-1.5B-Instruct",
    "qwen2-7b": "Qwen/Qwen2-7B-Instruct",
    "qwen2.5-1.5b": "Qwen/Qwen2.5-1.5B-Instruct",
    "qwen2.5-3b": "Qwen/Qwen2.5-3B-Instruct",
    "qwen2.5-7b": "Qwen/Qwen2.5-7B-Instruct",
    "llama3.1-8b": "meta-llama/Llama-3.1-8B-Instruct",
    "llama3.2-3b": "meta-llama/Llama-3.2-3B-Instruct",
    "phi3.5-mini": "microsoft/Phi-3.5-mini-instruct",
}
R3_BLOCK_DEFAULTS = {
    "mode": "online",
    "credit": "reflection",
    "max_reflections": 1,
    "attempt_max_tokens": 512,
    "reflection_max_tokens": 256,
    "retry_max_tokens": 512,
    "reflection_prompt": None,
    "retry_prompt": None,
    "min_group_size": 2,
    "max_refill_prompts": None,
}


@functools.cache
def _compose_cached(recipe: str, overrides: tuple[str, ...]):
    return show_config.compose(recipe, overrides)


def compose(recipe: str, overrides=()):
    """Composed config (a private copy: tests may modify it)."""
    return copy.deepcopy(_compose_cached(recipe, tuple(overrides)))


def main_ppo_cfg_job(args: list[str], cwd: Path) -> subprocess.Popen:
    """Start ``python -m verl.trainer.main_ppo --cfg job ARGS`` (compose only, nothing starts)."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen(
        [sys.executable, "-m", "verl.trainer.main_ppo", "--cfg", "job", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture(scope="module")
def main_ppo_outputs(tmp_path_factory) -> dict[str, dict]:
    """YAML printed by main_ppo --cfg job for each task recipe, plus one preset + overrides run (in parallel)."""
    cwd = tmp_path_factory.mktemp("empty_cwd")  # not the repo: the installed package must be what is found
    runs = {name: [f"+recipe={name}"] for name in TASK_RECIPES}
    runs["override"] = [
        "+recipe=r3_function_calling",
        "+r3_model=llama3.1-8b",
        "actor_rollout_ref.rollout.n=4",
        "r3.mode=offline",
        "r3.credit=reflection_and_retry",
        "actor_rollout_ref.actor.optim.lr=1e-6",
    ]
    procs = {name: main_ppo_cfg_job(args, cwd) for name, args in runs.items()}
    outputs = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"main_ppo --cfg job {runs[name]} failed:\n{err[-3000:]}"
        outputs[name] = yaml.safe_load(out)
    return outputs


@pytest.mark.parametrize("recipe", TASK_RECIPES)
def test_main_ppo_resolves_recipe_from_install(main_ppo_outputs, recipe):
    cfg = main_ppo_outputs[recipe]
    assert "recipe" not in cfg, "the recipe was not found: Hydra stored +recipe as a plain string"
    arr = cfg["actor_rollout_ref"]
    assert cfg["algorithm"]["adv_estimator"] == "grpo"
    assert cfg["algorithm"]["use_kl_in_reward"] is False
    assert arr["rollout"]["name"] == "vllm"
    assert arr["rollout"]["n"] == 8
    assert arr["rollout"]["agent"]["default_agent_loop"] == "r3_agent"
    optim = arr["actor"]["optim"]
    assert (optim["lr"], optim["lr_scheduler_type"], optim["lr_warmup_steps_ratio"]) == (5e-7, "cosine", 0.03)
    assert (arr["actor"]["use_kl_loss"], arr["actor"]["kl_loss_coef"], arr["actor"]["kl_loss_type"]) == (
        True,
        0.001,
        "low_var_kl",
    )
    assert cfg["data"]["train_batch_size"] * arr["rollout"]["n"] == 256  # the paper's effective batch
    assert arr["actor"]["ppo_mini_batch_size"] == 32
    assert cfg["trainer"]["total_training_steps"] == 1750
    val = arr["rollout"]["val_kwargs"]
    assert (val["temperature"], val["do_sample"], val["n"]) == (0, False, 1)
    assert arr["rollout"]["temperature"] == 1.0
    assert cfg["data"]["return_raw_chat"] is True
    assert cfg["reward"]["custom_reward_function"] == {"path": "pkg://r3_plugin.reward", "name": "compute_score"}
    assert cfg["trainer"]["v1"]["trainer_mode"] == "sync"  # verl's own sync trainer
    sampler = cfg["trainer"]["v1"]["sampler"]
    assert sampler["custom_sampler"] == {"path": "pkg://r3_plugin.integration.sampler", "name": "R3ReplayBuffer"}
    assert arr["rollout"]["agent"]["agent_loop_manager_class"] == "r3_plugin.integration.verl_worker.R3AgentLoopManager"
    assert cfg["data"]["gen_batch_size"] == 1
    assert cfg["trainer"]["project_name"] == "r3"
    assert cfg["trainer"]["save_freq"] > 0
    assert set(cfg["r3"]) == set(R3_BLOCK_DEFAULTS)


def test_recipe_specifics(main_ppo_outputs):
    cd, fc, off = (main_ppo_outputs[name] for name in TASK_RECIPES)
    assert cd["r3"] == R3_BLOCK_DEFAULTS
    assert fc["r3"] == R3_BLOCK_DEFAULTS
    assert off["r3"]["mode"] == "offline"
    assert cd["data"]["train_files"].endswith("/data/r3/countdown/train.parquet")
    assert cd["data"]["val_files"].endswith("/data/r3/countdown/test.parquet")
    assert fc["data"]["train_files"].endswith("/data/r3/function_calling/train.parquet")
    assert off["data"]["train_files"].endswith("/data/r3/countdown/failures.parquet")
    assert cd["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-1.5B-Instruct"
    assert fc["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2-1.5B-Instruct"
    assert off["actor_rollout_ref"]["model"]["path"] == "Qwen/Qwen2.5-1.5B-Instruct"


def test_command_line_beats_preset_beats_recipe(main_ppo_outputs):
    cfg = main_ppo_outputs["override"]
    arr = cfg["actor_rollout_ref"]
    assert arr["model"]["path"] == HF_IDS["llama3.1-8b"]  # preset over the recipe's default model
    assert arr["rollout"]["tensor_model_parallel_size"] == 2
    assert arr["rollout"]["n"] == 4  # command line over the recipe
    assert arr["actor"]["optim"]["lr"] == 1e-6
    assert cfg["r3"]["mode"] == "offline" and cfg["r3"]["credit"] == "reflection_and_retry"
    assert cfg["trainer"]["experiment_name"] == "function_calling-${r3_model_info.name}"


@pytest.mark.parametrize("recipe", ["r3_countdown", "r3_function_calling"])
def test_recipe_default_model_equals_its_preset(recipe):
    default_model = "qwen2.5-1.5b" if recipe == "r3_countdown" else "qwen2-1.5b"
    assert compose(recipe) == compose(recipe, [f"+r3_model={default_model}"])


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("recipe", ["r3_countdown", "r3_function_calling"])
@pytest.mark.parametrize("nnodes", [1, 2])
def test_every_recipe_and_preset_validates_and_divides(recipe, model, nnodes):
    cfg = compose(recipe, [f"+r3_model={model}", f"trainer.nnodes={nnodes}"])
    assert cfg.actor_rollout_ref.model.path == HF_IDS[model]
    assert cfg.r3_model_info.name == model
    assert cfg.trainer.experiment_name == f"{recipe[3:]}-{model}"
    warnings = show_config.validate(cfg)  # r3 guard + verl validate_config + batch arithmetic
    assert not warnings, warnings
    plan = batch_plan(cfg)
    assert plan.n_gpus == 8 * nnodes
    assert plan.trajectories_per_step == 256
    assert plan.trajectories_per_gpu_per_mini_batch * plan.dp_size == plan.trajectories_per_mini_batch
    assert plan.grad_accumulation_steps * plan.micro_batch_per_gpu == plan.trajectories_per_gpu_per_mini_batch
    assert memory_estimate(cfg).peak < 80


@pytest.mark.parametrize("model", show_config.ONE_GPU_MODELS)
@pytest.mark.parametrize("recipe", ["r3_countdown", "r3_function_calling"])
def test_one_gpu_variant(recipe, model):
    cfg = compose(recipe, [f"+r3_model={model}", "+r3_scale=1gpu"])
    assert cfg.actor_rollout_ref.model.path == HF_IDS[model]  # the scale preset keeps the model
    assert cfg.trainer.n_gpus_per_node == 1 and cfg.actor_rollout_ref.rollout.tensor_model_parallel_size == 1
    assert cfg.actor_rollout_ref.actor.fsdp_config.optimizer_offload is True
    assert not show_config.validate(cfg)
    assert batch_plan(cfg).grad_accumulation_steps == 128
    assert memory_estimate(cfg).peak < 80


def test_batch_arithmetic_rejects_what_verl_would_crash_on():
    cfg = compose("r3_countdown", ["trainer.n_gpus_per_node=6"])  # 32 x 8 = 256 does not split over 6
    with pytest.raises(SizingError, match="divisible by the GPU count 6"):
        batch_plan(cfg)
    cfg = compose("r3_countdown", ["actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=48"])
    with pytest.raises(SizingError, match="ppo_micro_batch_size_per_gpu"):
        batch_plan(cfg)
    cfg = compose("r3_countdown", ["+r3_model=qwen2.5-7b", "actor_rollout_ref.rollout.tensor_model_parallel_size=8"])
    with pytest.raises(SizingError, match="28 attention heads"):
        batch_plan(cfg)


def test_docs_table_matches_the_recipes():
    """docs/recipes.md shows ``r3 config --table``; regenerate it when a preset changes."""
    table = show_config.markdown_table(composer=compose)
    docs = (REPO / "docs" / "recipes.md").read_text()
    assert table in docs, "docs/recipes.md is stale: paste the output of `r3 config --table`"


def test_r3_config_cli_list_and_check(capsys, tmp_path):
    from r3_plugin.tools.cli import main

    assert main(["config", "--list"]) == 0
    listed = capsys.readouterr().out
    assert "r3_countdown_offline" in listed and "phi3.5-mini" in listed and "1gpu" in listed
    data = [tmp_path / "train.parquet", tmp_path / "test.parquet"]
    for path in data:
        path.touch()
    files = [f"data.train_files={data[0]}", f"data.val_files={data[1]}"]
    assert main(["config", "r3_function_calling", "+r3_model=qwen2-7b", "trainer.nnodes=2", *files, "--check"]) == 0
    out = capsys.readouterr().out
    assert "on 16 GPU(s)" in out and "OK:" in out
    assert main(["config", "r3_countdown", "actor_rollout_ref.rollout.n=1", "--check"]) == 1
    assert "actor_rollout_ref.rollout.n=1" in capsys.readouterr().err
    assert main(["config", "no_such_recipe"]) == 2


def test_r3_config_check_names_missing_data_files(capsys, tmp_path):
    from r3_plugin.tools.cli import main

    train, val = tmp_path / "train.parquet", tmp_path / "no_such" / "test.parquet"
    train.touch()
    assert main(["config", "r3_countdown", f"data.train_files={train}", f"data.val_files={val}", "--check"]) == 1
    captured = capsys.readouterr()
    assert f"data.val_files: {val} does not exist" in captured.err and "r3 data" in captured.err
    assert "data.train_files" not in captured.err and "OK:" not in captured.out
    missing = tmp_path / "nothing.parquet"
    assert main(["config", "r3_countdown", f"data.train_files=[{missing}]", f"data.val_files={train}", "--check"]) == 1
    assert f"data.train_files: {missing} does not exist" in capsys.readouterr().err
