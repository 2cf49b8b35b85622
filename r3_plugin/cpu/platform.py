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
"""``PlatformCPU``: verl's platform interface answered by the host CPU.

verl asks its platform for the device module (``torch.cuda``-like), the device id it passes to
``.to()``, the collective backend and the Ray resource its workers request. On CPU the device is
``"cpu"`` (an integer id would mean ``cuda:N`` to torch), collectives use gloo, and the Ray resource
is a declared "GPU" count (``+r3_scale=cpu`` sets ``ray_kwargs.ray_init.num_gpus``), because
verl's resource pools count only accelerator resources.
"""

from __future__ import annotations

import types
from contextlib import contextmanager, nullcontext
from typing import Any

import torch
from verl.plugin.platform.platform_base import PlatformBase
from verl.plugin.platform.platform_manager import PlatformRegistry


class _NoOpStream:
    """Streams and events: CPU work is synchronous, so waiting and timing are no-ops."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __enter__(self) -> _NoOpStream:
        return self

    def __exit__(self, *exc: Any) -> bool:
        return False

    def record(self, *args: Any, **kwargs: Any) -> None:
        pass

    def synchronize(self) -> None:
        pass

    def wait_stream(self, *args: Any, **kwargs: Any) -> None:
        pass

    def wait_event(self, *args: Any, **kwargs: Any) -> None:
        pass

    def query(self) -> bool:
        return True

    def elapsed_time(self, *args: Any, **kwargs: Any) -> float:
        return 0.0


def _mem_get_info(*args: Any, **kwargs: Any) -> tuple[int, int]:
    import psutil

    memory = psutil.virtual_memory()
    return memory.available, memory.total


def _zero(*args: Any, **kwargs: Any) -> int:
    return 0


def _none(*args: Any, **kwargs: Any) -> None:
    return None


#: The subset of ``torch.cuda``'s API that verl calls through ``get_torch_device()``.
CPU_DEVICE_MODULE = types.SimpleNamespace(
    is_available=lambda: True,
    is_initialized=lambda: True,
    device_count=lambda: 1,
    current_device=lambda: "cpu",
    set_device=_none,
    synchronize=_none,
    empty_cache=_none,
    ipc_collect=_none,
    manual_seed=lambda seed: torch.manual_seed(seed),
    manual_seed_all=lambda seed: torch.manual_seed(seed),
    get_rng_state=lambda *args, **kwargs: torch.get_rng_state(),
    set_rng_state=lambda state, *args, **kwargs: torch.set_rng_state(state),
    mem_get_info=_mem_get_info,
    memory_allocated=_zero,
    max_memory_allocated=_zero,
    memory_reserved=_zero,
    max_memory_reserved=_zero,
    reset_peak_memory_stats=_none,
    set_per_process_memory_fraction=_none,
    get_device_name=lambda *args, **kwargs: "cpu",
    current_stream=lambda *args, **kwargs: _NoOpStream(),
    stream=lambda *args, **kwargs: nullcontext(),
    Stream=_NoOpStream,
    Event=_NoOpStream,
)


class PlatformCPU(PlatformBase):
    """The host CPU as verl's accelerator (one "device" per Ray worker)."""

    device_name = "cpu"
    vendor_name = "cpu"
    device_module = CPU_DEVICE_MODULE

    def is_available(self) -> bool:
        return True

    def is_platform_available(self, use_smi_check: bool = False) -> bool:
        from r3_plugin.cpu import wanted

        return wanted()

    def current_device(self) -> str:  # type: ignore[override]
        return "cpu"

    def device_count(self) -> int:
        return 1

    def set_device(self, device_index: int) -> None:
        pass

    def synchronize(self, device_index: int | None = None) -> None:
        pass

    def manual_seed(self, seed: int) -> None:
        torch.manual_seed(seed)

    def manual_seed_all(self, seed: int) -> None:
        torch.manual_seed(seed)

    def set_allocator_settings(self, settings: str) -> None:
        pass

    def empty_cache(self) -> None:
        pass

    def get_device_capability(self, device_index: int = 0) -> tuple[int | None, int | None]:
        return (None, None)

    def communication_backend_name(self) -> str:
        return "gloo"

    def visible_devices_envvar(self) -> str:
        return "CUDA_VISIBLE_DEVICES"

    @contextmanager
    def nvtx_range(self, msg: str):
        yield

    def profiler_start(self) -> None:
        pass

    def profiler_stop(self) -> None:
        pass

    def ray_resource_name(self) -> str:
        return "GPU"

    def ray_noset_envvars(self) -> list[str]:
        return ["RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES"]

    def is_ipc_supported(self) -> bool:
        return False  # weight sync then goes through verl's shared-memory path

    def cudart(self) -> Any:
        return None


def register_platform() -> None:
    """Add ``cpu`` to verl's ``PlatformRegistry`` (verl's documented extension point)."""
    if PlatformRegistry.get(PlatformCPU.device_name) is None:
        PlatformRegistry.register(platform=PlatformCPU.device_name)(PlatformCPU)
