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

It registers the built-in tasks, the ``r3_agent`` agent loop, the ``r3_sync`` trainer (verl's
sync trainer plus R3's step metrics), and installs the config guard. verl swallows plugin import
errors at DEBUG level, so failures here are re-logged as warnings that users actually see.
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
        ("tasks", "r3_plugin.verifiers"),
        ("agent loop", "r3_plugin.agent_loop"),
        ("trainer", "r3_plugin.trainer"),
        ("config guard", "r3_plugin.guard"),
    )
    import importlib

    for what, module in steps:
        try:
            mod = importlib.import_module(module)
            if hasattr(mod, "install"):
                mod.install()
        except Exception as exc:  # pragma: no cover - exercised through the warning in tests
            logger.warning("r3-plugin: could not register its %s (%s): %s: %s", what, module, type(exc).__name__, exc)


if os.getenv("R3_PLUGIN_DISABLE", "0") != "1":
    load()
