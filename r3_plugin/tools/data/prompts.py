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
"""First-attempt task prompts, rendered into the ``prompt`` column at build time.

The reflection and retry prompts live with the tasks (:mod:`r3_plugin.policy.tasks`); these are only the
messages that pose the task. Countdown follows TinyZero's instruct-model wording, which the paper
reuses; function calling lists the tools in a system message when the model's chat template cannot
take them.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

COUNTDOWN_USER_TEMPLATE = (
    "Using the numbers {numbers}, create an equation that equals {target}. You can use basic arithmetic "
    "operations (+, -, *, /) and each number can only be used once. Show your work in <think> </think> tags. "
    "And return the final answer in <answer> </answer> tags, for example <answer> (1 + 2) / 3 </answer>."
)

FUNCTION_CALLING_SYSTEM_TEMPLATE = (
    "You are an expert in composing function calls. You are given a question and a set of possible "
    "functions. Based on the question, make one or more function calls to achieve the purpose, with "
    "every argument the question requires.\n\n"
    "Here is a list of functions in JSON format that you can invoke:\n{tools}\n\n"
    "Answer with the function calls as a JSON list of objects of the form "
    '{{"name": "<function name>", "arguments": {{"<argument>": <value>, ...}}}}, '
    "inside <tool_call> </tool_call> tags, for example:\n"
    '<tool_call>[{{"name": "get_weather", "arguments": {{"city": "Paris"}}}}]</tool_call>'
)


def countdown_messages(target: int, numbers: Sequence[int], system_prompt: str | None = None) -> list[dict[str, str]]:
    """The chat messages that pose one countdown task."""
    user = COUNTDOWN_USER_TEMPLATE.format(numbers=list(numbers), target=target)
    return _with_system(system_prompt, user)


def function_calling_messages(
    query: str,
    tools: Sequence[dict[str, Any]],
    *,
    tools_in_chat_template: bool,
    system_prompt: str | None = None,
) -> list[dict[str, str]]:
    """The chat messages that pose one function-calling task.

    With ``tools_in_chat_template`` the tools are NOT written into the messages: whoever applies the
    chat template passes ``tools=json.loads(extra_info["tools"])``. Otherwise they are rendered into
    a system message here (after ``system_prompt``, when one is given).
    """
    if tools_in_chat_template:
        return _with_system(system_prompt, query)
    rendered = FUNCTION_CALLING_SYSTEM_TEMPLATE.format(tools=json.dumps(list(tools), indent=2, ensure_ascii=False))
    system = f"{system_prompt}\n\n{rendered}" if system_prompt else rendered
    return [{"role": "system", "content": system}, {"role": "user", "content": query}]


def _with_system(system_prompt: str | None, user: str) -> list[dict[str, str]]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": user})
    return messages
