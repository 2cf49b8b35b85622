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
"""r3-plugin: Reflect, Retry, Reward (R3) for verl.

Public API for bringing your own task::

    from r3_plugin import register_task, VerifyResult

    @register_task("my_task", reflection_prompt="You failed. Reflect ...")
    def verify_my_task(response, ground_truth, extra_info=None) -> VerifyResult: ...
"""

from r3_plugin import _moved

_moved.install()

from r3_plugin.policy.tasks import (  # noqa: E402
    Task,
    UnknownTaskError,
    VerifyResult,
    get_task,
    register_task,
    register_verifier,
    registered_tasks,
    verify,
)

__version__ = "0.1.0"

__all__ = [
    "Task",
    "UnknownTaskError",
    "VerifyResult",
    "get_task",
    "register_task",
    "register_verifier",
    "registered_tasks",
    "verify",
    "__version__",
]


def __getattr__(name: str):
    """``r3_plugin.tasks`` and the other modules that moved stay reachable as attributes."""
    if f"r3_plugin.{name}" in _moved.MOVED:
        import importlib

        return importlib.import_module(f"r3_plugin.{name}")
    raise AttributeError(f"module 'r3_plugin' has no attribute {name!r}")
