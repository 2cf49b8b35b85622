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
"""Old module paths, kept importable: each name below is the very module at its new place.

Users' configs and scripts name r3_plugin.reward, r3_plugin.plugin (the verl.plugins
entry point), r3_plugin.tasks, r3_plugin.verl_worker.R3AgentLoopManager,
pkg://r3_plugin.sampler and others from before the layered layout. A meta-path finder maps
each old name (and every submodule under an old package name) to the new module object itself,
so there is one module per file: no double task registration, and monkeypatch through an old
name patches the real module.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

#: Old module (or package) path -> where it lives now.
MOVED: dict[str, str] = {
    # policy
    "r3_plugin.tasks": "r3_plugin.policy.tasks",
    "r3_plugin.episode": "r3_plugin.policy.episode",
    "r3_plugin.episode_info": "r3_plugin.policy.episode_info",
    "r3_plugin.verifiers": "r3_plugin.policy.verifiers",
    # verl integration
    "r3_plugin.plugin": "r3_plugin.integration.plugin",
    "r3_plugin.agent_loop": "r3_plugin.integration.agent_loop",
    "r3_plugin.session": "r3_plugin.integration.session",
    "r3_plugin.verl_worker": "r3_plugin.integration.verl_worker",
    "r3_plugin.sampler": "r3_plugin.integration.sampler",
    "r3_plugin.reward": "r3_plugin.integration.reward",
    "r3_plugin.guard": "r3_plugin.integration.guard",
    "r3_plugin.offline_check": "r3_plugin.integration.offline_check",
    "r3_plugin.token_dump": "r3_plugin.integration.token_dump",
    "r3_plugin.quiet_warnings": "r3_plugin.integration.quiet_warnings",
    # CPU platform and local stand-ins
    "r3_plugin.import_hooks": "r3_plugin.cpu.import_hooks",
    "r3_plugin.cpu.trainer_run": "r3_plugin.local.trainer_run",
    "r3_plugin.local_server": "r3_plugin.local.local_server",
    "r3_plugin.local_rollout": "r3_plugin.local.local_rollout",
    "r3_plugin.tiny_model": "r3_plugin.local.tiny_model",
    # user tools
    "r3_plugin.cli": "r3_plugin.tools.cli",
    "r3_plugin.data": "r3_plugin.tools.data",
    "r3_plugin.mine": "r3_plugin.tools.mine",
    "r3_plugin.evaluate": "r3_plugin.tools.evaluate",
    "r3_plugin.evaluation": "r3_plugin.tools.evaluation",
    "r3_plugin.backends": "r3_plugin.tools.backends",
    "r3_plugin.journal": "r3_plugin.tools.journal",
    "r3_plugin.run_common": "r3_plugin.tools.run_common",
    "r3_plugin.dataset_rows": "r3_plugin.tools.dataset_rows",
    "r3_plugin.show_config": "r3_plugin.tools.show_config",
    "r3_plugin.sizing": "r3_plugin.tools.sizing",
    "r3_plugin.demo": "r3_plugin.tools.demo",
    "r3_plugin.demo_trainer": "r3_plugin.tools.demo_trainer",
    "r3_plugin.arg_types": "r3_plugin.tools.arg_types",
    # patch generator
    "r3_plugin.patches": "r3_plugin.upstream.patches",
}


def new_name(old: str) -> str | None:
    """Where the module once called ``old`` lives now (None if it did not move)."""
    for prefix in sorted(MOVED, key=len, reverse=True):
        if old == prefix or old.startswith(prefix + "."):
            return MOVED[prefix] + old[len(prefix) :]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self._real_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system stamped the alias spec on the module; give it back its own.
        module.__spec__ = self._real_spec


class _MovedFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):  # noqa: ANN001
        if not fullname.startswith("r3_plugin."):
            return None
        target_name = new_name(fullname)
        if target_name is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Alias(target_name))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (idempotent)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _MovedFinder())
