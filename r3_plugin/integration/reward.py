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
"""verl reward entry point: ``reward.custom_reward_function.path=pkg://r3_plugin.reward``, ``name=compute_score``.

Dispatches on ``data_source`` through the task registry (:mod:`r3_plugin.policy.tasks`), so a plain verl
run (no R3 agent loop) scores countdown and function calling with exactly the verifiers that R3
uses to decide when to reflect. To score one data source with another registered verifier (for
example the BFCL-style check), pass ``task_map`` through verl's reward kwargs::

    +reward.custom_reward_function.reward_kwargs.task_map.function_calling=function_calling_ast
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from r3_plugin.policy.tasks import get_task

__all__ = ["compute_score"]


def compute_score(
    data_source: Any,
    solution_str: str | bytes,
    ground_truth: Any,
    extra_info: Mapping[str, Any] | None = None,
    task_map: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Score one response: ``{"score": 1.0 or 0.0, "acc": same, "category": reason}``.

    Every call returns the same keys (verl stacks them into per-sample arrays, and its validation
    metrics skip the string ``category``). Raises :class:`r3_plugin.policy.tasks.UnknownTaskError`, naming
    the data source and the registered ones, when no verifier is registered for ``data_source``.
    Extra keyword arguments that verl passes (``reward_router_address``, ...) are ignored.
    """
    name = data_source if isinstance(data_source, str) else str(data_source)  # numpy str_ from parquet
    if task_map:
        name = task_map.get(name, name)
    result = get_task(name).verify(solution_str, ground_truth, extra_info)
    score = 1.0 if result.passed else 0.0
    return {"score": score, "acc": score, "category": result.category}
