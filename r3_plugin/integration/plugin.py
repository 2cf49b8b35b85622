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
"""The ``verl.plugins`` entry point: verl imports this module in every process it starts.

It first switches on the CPU platform where no accelerator is present (before anything asks verl for
its platform), then registers the built-in tasks and the ``r3_agent`` agent loop, and installs the
config guard. R3's sampler and agent-loop manager are named by FQN in the recipes, so verl imports
them only where it needs them. verl swallows plugin import errors at DEBUG level, so failures here
are re-logged as warnings that users actually see.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger("r3_plugin")

_LOADED = False


def load() -> None:
    """Register everything R3 adds to verl. Idempotent."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    steps = (
        ("CPU platform", "r3_plugin.cpu", "activate"),
        ("warning filters", "r3_plugin.integration.quiet_warnings", "install"),
        ("tasks", "r3_plugin.policy.verifiers", None),
        ("agent loop", "r3_plugin.integration.agent_loop", None),
        ("config guard", "r3_plugin.integration.guard", "install"),
        ("token dump", "r3_plugin.integration.token_dump", "install_after_import"),
    )
    import importlib

    for what, module, hook in steps:
        try:
            mod = importlib.import_module(module)
            if hook is not None:
                getattr(mod, hook)()
        except Exception as exc:  # pragma: no cover - exercised through the warning in tests
            logger.warning("r3-plugin: could not register its %s (%s): %s: %s", what, module, type(exc).__name__, exc)


if os.getenv("R3_PLUGIN_DISABLE", "0") != "1":
    load()
