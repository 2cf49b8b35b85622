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
"""A backend that answers from a script instead of a model: exact, instant, deterministic.

Tests use it to drive every branch of an episode and check the accounting to the unit; demos and
the overhead benchmark use it to time the harness without any model. A script is a function
``script(messages) -> str | Generation``; :func:`infer_turn` tells it which turn is being asked
for (attempt, reflection, retry, or the control's plain retry). On the command line:
``--backend scripted --model package.module:function``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping
from typing import Any

from r3_plugin.policy.episode import Finish, Generation
from r3_plugin.policy.tasks import PLAIN_RETRY_PROMPT
from r3_plugin.tools.backends.base import BackendStats

Script = Callable[[list[dict]], "str | Generation"]


def infer_turn(messages: list[dict], plain_retry_prompt: str = PLAIN_RETRY_PROMPT) -> str:
    """Which turn a chat is asking for: "attempt", "reflection", "retry" or "plain_retry".

    Assumes the task's prompts are the defaults' shape: a non-empty retry prompt after the
    reflection, and ``plain_retry_prompt`` as the control's follow-up.
    """
    n_assistant = sum(1 for m in messages if m.get("role") == "assistant")
    if n_assistant == 0:
        return "attempt"
    if messages[-1].get("role") == "user" and messages[-1].get("content") == plain_retry_prompt:
        return "plain_retry"
    return "reflection" if n_assistant % 2 == 1 else "retry"


def first_user_text(messages: list[dict]) -> str:
    for m in messages:
        if m.get("role") == "user":
            return str(m.get("content", ""))
    return ""


def table_script(table: Mapping[str, Mapping[str, str]], default: str = "") -> Script:
    """A script from ``{first user message: {turn: text}}`` (turn as :func:`infer_turn` names it)."""

    def script(messages: list[dict]) -> str:
        turns = table.get(first_user_text(messages), {})
        return turns.get(infer_turn(messages), default)

    return script


def load_script(spec: str) -> Script:
    """Import ``package.module:function`` (the CLI's ``--model`` for ``--backend scripted``)."""
    from r3_plugin.tools.backends.factory import import_user_module

    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"scripted backend: --model must be 'package.module:function', got {spec!r}")
    module = import_user_module(module_name, f"--model {spec}")
    try:
        fn = getattr(module, attr)
    except AttributeError as exc:
        raise ValueError(f"scripted backend: {module_name} has no attribute {attr!r}") from exc
    if not callable(fn):
        raise ValueError(f"scripted backend: {spec} is not callable")
    return fn


class ScriptedBackend:
    """:class:`ChatBackend` that returns ``script(messages)``; tokens are whitespace-separated words.

    A text longer than ``max_tokens`` words is cut to ``max_tokens`` words and finishes with
    ``Finish.LENGTH``, like a real backend. Every call is recorded in ``calls``.
    """

    name = "scripted"

    def __init__(self, script: Script, *, default_max_tokens: int = 1024) -> None:
        self.script = script
        self.default_max_tokens = default_max_tokens
        self.calls: list[dict[str, Any]] = []
        self.stats = BackendStats()

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    async def generate(
        self, messages: list[dict], *, max_tokens: int | None, tools: list | None = None, seed: int | None = None
    ) -> Generation:
        start = time.perf_counter()
        out = self.script([dict(m) for m in messages])
        cap = max_tokens if max_tokens is not None else self.default_max_tokens
        if isinstance(out, Generation):
            gen = out
        else:
            words = str(out).split()
            if len(words) > cap:
                gen = Generation(text=" ".join(words[:cap]), num_tokens=cap, finish=Finish.LENGTH)
            else:
                gen = Generation(text=str(out), num_tokens=len(words), finish=Finish.STOP)
        self.calls.append({"messages": messages, "max_tokens": max_tokens, "tools": tools, "seed": seed})
        self.stats.record_batch(1, gen.num_tokens, time.perf_counter() - start)
        await asyncio.sleep(0)  # yield like a real backend so episodes interleave
        return gen
