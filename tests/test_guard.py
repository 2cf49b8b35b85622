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
"""The config guard: direct checks on real composed configs, and end to end through ``main_ppo``."""

from __future__ import annotations

import copy
import functools
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf, open_dict

from r3_plugin.integration import guard
from r3_plugin.integration.guard import R3ConfigError, check_config
from r3_plugin.tools import show_config


@functools.cache
def _base(recipe: str | None = "r3_countdown"):
    return show_config.compose(recipe)


def cfg(recipe_name: str | None = "r3_countdown", **updates):
    """A composed config with dotted-key updates applied (keys may be new)."""
    config = copy.deepcopy(_base(recipe_name))
    with open_dict(config):
        for dotted, value in updates.items():
            OmegaConf.update(config, dotted.replace("__", "."), value, merge=False)
    return config


def refused(config, *, check_registries=False) -> str:
    with pytest.raises(R3ConfigError) as info:
        check_config(config, check_registries=check_registries)
    return str(info.value)


def test_recipe_passes():
    assert check_config(cfg()) == []
    assert check_config(cfg(r3__retry_prompt="")) == []  # no retry instruction: allowed


def test_plain_verl_config_is_left_alone():
    assert not guard.uses_r3(cfg(None))
    assert check_config(cfg(None)) == []


@pytest.mark.parametrize("group", ["recipe", "r3_model", "r3_scale"])
def test_stray_recipe_string_is_refused_with_a_fix(group):
    msg = refused(cfg(None, **{group: "r3_countdown"}))
    assert f"`{group}: r3_countdown`" in msg
    assert "hydra_plugins.r3_plugin" in msg and "search" in msg and "install" in msg


@pytest.mark.parametrize(
    ("key", "value", "expected"),
    [
        ("r3.mode", "onlin", "r3.mode: 'onlin' is not one of online, offline"),
        ("r3.credit", "retry", "r3.credit: 'retry' is not one of reflection, reflection_and_retry"),
        ("r3.max_reflections", -1, "r3.max_reflections: must be >= 0"),
        ("r3.max_reflections", True, "r3.max_reflections: must be int"),
        ("r3.reflection_max_tokens", 0, "r3.reflection_max_tokens: must be >= 1"),
        ("r3.reflection_prompt", "  ", "r3.reflection_prompt: empty prompt"),
        ("r3.min_group_size", 1, "r3.min_group_size: must be >= 2"),
        ("r3.max_refill_prompts", -1, "r3.max_refill_prompts: must be >= 0 or null"),
        ("r3.max_reflection", 2, "r3.max_reflection: unknown key"),
        ("actor_rollout_ref.rollout.n", 1, "actor_rollout_ref.rollout.n=1: GRPO"),
        ("trainer.use_v1", False, "trainer.use_v1=false"),
        ("data.max_response_length", 1024, "data.max_response_length=1024 cannot hold an R3 episode"),
    ],
)
def test_bad_values_are_named(key, value, expected):
    assert expected in refused(cfg(**{key: value}))


def test_every_problem_is_listed_at_once():
    msg = refused(cfg(**{"r3.mode": "x", "r3.credit": "y", "actor_rollout_ref.rollout.n": 1}))
    assert "r3.mode" in msg and "r3.credit" in msg and "rollout.n=1" in msg
    # rollout.n=1 is also smaller than r3.min_group_size: four problems, all listed
    assert "4 problems" in msg and "r3.min_group_size=2 is larger than actor_rollout_ref.rollout.n=1" in msg


def test_missing_r3_block_with_r3_agent():
    config = cfg(None, **{"actor_rollout_ref.rollout.agent.default_agent_loop": "r3_agent"})
    assert "has no `r3:` block" in refused(config)


def test_missing_r3_key():
    config = cfg()
    with open_dict(config):
        del config.r3["retry_prompt"]
    assert "r3.retry_prompt: missing" in refused(config)


def test_validation_sampling_must_differ_from_training():
    config = cfg(**{"actor_rollout_ref.rollout.val_kwargs.temperature": 1.0})
    msg = refused(config)
    assert "actor_rollout_ref.rollout.val_kwargs.temperature/top_p/top_k equal the training sampling" in msg
    # sampled validation stays possible: one differing knob is enough
    ok = cfg(
        **{"actor_rollout_ref.rollout.val_kwargs.temperature": 1.0, "actor_rollout_ref.rollout.val_kwargs.top_p": 0.999}
    )
    assert check_config(ok) == []


def test_tight_response_budget_warns():
    warnings = check_config(cfg(**{"data.max_response_length": 1300}))
    assert any("data.max_response_length=1300" in w for w in warnings)


def test_preset_model_mismatch_warns():
    warnings = check_config(cfg(**{"actor_rollout_ref.model.path": "/models/Llama-3.1-8B-Instruct"}))
    assert any("not the preset's model" in w for w in warnings)


def test_agent_loop_must_be_registered_in_this_process(monkeypatch):
    from verl.experimental.agent_loop import agent_loop

    registry = dict(agent_loop._agent_loop_registry)
    registry.pop("r3_agent", None)
    monkeypatch.setattr(agent_loop, "_agent_loop_registry", registry)
    msg = refused(cfg(), check_registries=True)
    assert "default_agent_loop=r3_agent: 'r3_agent' is not in verl's agent loop registry" in msg


def test_removed_and_replaced_settings_say_what_replaced_them():
    msg = refused(cfg(**{"r3.drop_first_try_success": True}))
    assert "r3.drop_first_try_success: removed: first-try successes never join a GRPO group" in msg
    assert "trainer.v1.trainer_mode=r3_sync: removed" in refused(cfg(**{"trainer.v1.trainer_mode": "r3_sync"}))
    assert "async trainers are not supported" in refused(cfg(**{"trainer.v1.trainer_mode": "colocate_async"}))


def test_r3_needs_its_sampler_worker_and_a_sequence_reward_estimator():
    msg = refused(cfg(**{"trainer.v1.sampler.custom_sampler.path": None}))
    assert "trainer.v1.sampler.custom_sampler" in msg and "pkg://r3_plugin.integration.sampler" in msg
    msg = refused(cfg(**{"actor_rollout_ref.rollout.agent.agent_loop_manager_class": None}))
    assert "r3_plugin.integration.verl_worker.R3AgentLoopManager" in msg
    assert "data.gen_batch_size=32" in refused(cfg(**{"data.gen_batch_size": 32}))
    for estimator in ("gae", "reinforce_plus_plus", "remax"):
        msg = refused(cfg(**{"algorithm.adv_estimator": estimator}))
        assert f"algorithm.adv_estimator={estimator}" in msg and "reads rewards only where the mask is 1" in msg
    for estimator in ("rloo", "grpo_passk"):
        assert estimator in guard.SEQUENCE_REWARD_ESTIMATORS
        guard.check_config(cfg(**{"algorithm.adv_estimator": estimator}), check_registries=False)


def test_override_order():
    errors: list[str] = []
    guard.check_override_order(["+recipe=r3_countdown", "+r3_model=qwen2-7b", "+r3_scale=1gpu", "a.b=1"], errors)
    assert errors == []
    guard.check_override_order(["+r3_model=qwen2-7b", "+recipe=r3_countdown"], errors)
    assert len(errors) == 1 and "'+recipe=r3_countdown' comes after '+r3_model=qwen2-7b'" in errors[0]


def test_expand_user_paths():
    config = cfg(**{"data.train_files": "~/x/train.parquet", "data.val_files": ["~/a.parquet", "/b.parquet"]})
    changed = guard.expand_user_paths(config)
    assert set(changed) == {"data.train_files", "data.val_files"}
    assert config.data.train_files == os.path.expanduser("~/x/train.parquet")
    assert list(config.data.val_files) == [os.path.expanduser("~/a.parquet"), "/b.parquet"]


def test_install_wraps_validate_config_once():
    import verl.utils.config as vc

    guard.install()
    guard.install()
    assert vc.validate_config._r3_guarded
    assert not getattr(vc.validate_config._r3_original, "_r3_guarded", False)


# --- end to end: the real ``python -m verl.trainer.main_ppo`` must fail fast, before Ray -------------

# Hides R3's search path from Hydra (as when hydra_plugins/r3_plugin is missing from an install),
# then runs main_ppo exactly as `python -m` does.
NO_SEARCH_PATH = """
import runpy, sys
import verl
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
for plugin in Plugins.instance().discover(SearchPathPlugin):
    if plugin.__name__ == "R3SearchPathPlugin":
        plugin.manipulate_search_path = lambda self, search_path: None
sys.argv = ["main_ppo", *sys.argv[1:]]
runpy.run_module("verl.trainer.main_ppo", run_name="__main__", alter_sys=True)
"""


def _main_ppo(args: list[str], cwd, script: str | None = None) -> subprocess.Popen:
    cmd = [sys.executable, "-c", script, *args] if script else [sys.executable, "-m", "verl.trainer.main_ppo", *args]
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_main_ppo_refuses_bad_configs_before_ray(tmp_path):
    runs = {
        "n1": _main_ppo(["+recipe=r3_countdown", "actor_rollout_ref.rollout.n=1"], tmp_path),
        "mode": _main_ppo(["+recipe=r3_countdown", "r3.mode=sometimes"], tmp_path),
        "order": _main_ppo(["+r3_model=qwen2.5-7b", "+recipe=r3_countdown"], tmp_path),
        "no_search_path": _main_ppo(["+recipe=r3_countdown"], tmp_path, script=NO_SEARCH_PATH),
    }
    expected = {
        "n1": "actor_rollout_ref.rollout.n=1: GRPO",
        "mode": "r3.mode: 'sometimes' is not one of online, offline",
        "order": "'+recipe=r3_countdown' comes after '+r3_model=qwen2.5-7b'",
        "no_search_path": "`recipe: r3_countdown`: Hydra did not find R3's recipes",
    }
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode != 0, f"{name}: main_ppo accepted a bad config\n{out[-2000:]}"
        assert expected[name] in err, f"{name}:\n{err[-3000:]}"
        assert "r3-plugin refused this config" in err
        assert "ray init kwargs" not in out, f"{name}: Ray was started before the guard ran"


def test_main_ppo_shows_the_guard_message_alone_and_names_r3_typos(tmp_path):
    """An r3.* typo gets the guard's "unknown key (known: ...)", with or without "+", and no traceback."""
    runs = {
        "typo": _main_ppo(["+recipe=r3_countdown", "r3.max_reflection=2"], tmp_path),
        "plus_typo": _main_ppo(["+recipe=r3_countdown", "+r3.max_reflection=2"], tmp_path),
        "elsewhere": _main_ppo(["+recipe=r3_countdown", "data.trian_files=x"], tmp_path),
    }
    for name, proc in runs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 1, f"{name}: rc {proc.returncode}\n{err[-3000:]}"
        assert "ray init kwargs" not in out, f"{name}: Ray was started before the guard ran"
        if name == "elsewhere":  # outside the r3 block Hydra's struct check stays
            assert "data.trian_files" in err
            continue
        assert "r3-plugin refused this config (1 problem)" in err, f"{name}:\n{err[-3000:]}"
        assert "r3.max_reflection: unknown key (known: mode, credit, max_reflections," in err
        assert "Traceback" not in err and "Error executing job" not in err and "+r3.max_reflection=2" not in err


def test_guard_names_match_the_loop_and_trainer():
    """The guard, the loop, the worker and the sampler read one set of names (policy.config, integration.names)."""
    from r3_plugin.integration import agent_loop, sampler, verl_worker

    assert guard.ALLOWED_MODES == agent_loop.MODES and guard.ALLOWED_CREDIT == agent_loop.CREDITS
    assert guard.AGENT_NAME == agent_loop.AGENT_NAME
    assert guard.MANAGER_CLASS == verl_worker.MANAGER_CLASS
    assert (guard.SAMPLER_PATH, guard.SAMPLER_NAME) == (sampler.SAMPLER_PATH, sampler.SAMPLER_NAME)
    assert set(guard.R3_KEYS) == {"mode", "credit", "min_group_size", "max_refill_prompts"} | set(
        agent_loop.EpisodeConfig.__dataclass_fields__
    ) - {"reflect", "plain_retry_prompt"}


def test_offline_rows_are_checked_before_training_naming_file_and_row(tmp_path, tiny_model_dir):
    import pandas as pd

    rows = [
        {"extra_info": {"index": 7, "r3_failed_attempt": "<answer> 1 + 2 </answer>"}},
        {"extra_info": {"index": 8, "r3_failed_attempt": ""}},
        {"extra_info": {"index": 9, "r3_failed_attempt": " + ".join(["3"] * 400)}},
    ]
    path = tmp_path / "failures.parquet"
    pd.DataFrame(rows).to_parquet(path)
    config = cfg(
        "r3_countdown_offline",
        **{"data.train_files": str(path), "actor_rollout_ref.model.path": str(tiny_model_dir)},
    )
    errors: list[str] = []
    guard._check_offline_data(config, errors)
    assert len(errors) == 2
    assert f"{path}: r3.mode=offline but 1 of 3 rows have no extra_info.r3_failed_attempt (rows 1)" in errors[0]
    assert "row 2 (extra_info.index 9)" in errors[1] and "Raise data.max_response_length" in errors[1]
