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
"""Task registry: one entry per ``data_source``, holding its verifier and its R3 prompts.

Everything that needs to judge an answer or phrase a reflection request (the agent loop, the
reward function, the failure miner, the evaluator) looks the task up here, so registering a task
once makes it available everywhere, including inside verl's Ray workers (the plugin entry point
imports the built-in tasks in every process).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

logger = logging.getLogger(__name__)

# Reason categories shared by all verifiers. Task-specific verifiers may add their own.
CORRECT = "correct"
NO_ANSWER = "no_answer"
VERIFIER_ERROR = "verifier_error"

GENERIC_REFLECTION_PROMPT = (
    "You tried performing the task, but failed. Reflect on what went wrong and write a short "
    "explanation that will help you do better next time."
)
GENERIC_RETRY_PROMPT = "Now try the task again, using your reflection."
PLAIN_RETRY_PROMPT = "Your answer was wrong. Try again."


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of checking one response: pass/fail plus why, for error-category reports."""

    passed: bool
    category: str
    answer: str | None = None
    detail: str = ""

    @property
    def score(self) -> float:
        return 1.0 if self.passed else 0.0


def to_plain(value: Any) -> Any:
    """numpy arrays/scalars (what parquet round trips give) to plain Python, recursively.

    Chat templates, JSON and verifiers want lists, dicts and Python scalars.
    """
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, str | bytes):
        return to_plain(value.tolist())  # np.ndarray -> list, np.generic -> Python scalar
    return value


Verifier = Callable[[str, Any, Mapping[str, Any] | None], VerifyResult]


@dataclass(frozen=True)
class Task:
    """A verifiable task family keyed by ``data_source``.

    ``reflection_prompt`` is the user message that asks for a self-reflection after a failed
    attempt; ``retry_prompt`` follows the reflection (empty: the model retries in a new assistant
    turn straight after its reflection); ``plain_retry_prompt`` is the evaluation control that
    retries without any reflection.
    """

    data_source: str
    verifier: Verifier
    reflection_prompt: str = GENERIC_REFLECTION_PROMPT
    retry_prompt: str = GENERIC_RETRY_PROMPT
    plain_retry_prompt: str = PLAIN_RETRY_PROMPT
    description: str = ""
    metadata: Mapping[str, Any] = field(default_factory=dict)

    def verify(self, response: Any, ground_truth: Any, extra_info: Mapping[str, Any] | None = None) -> VerifyResult:
        """Run the verifier; never raises, whatever the model wrote or the verifier did."""
        if isinstance(response, bytes):
            response = response.decode("utf-8", errors="replace")
        if not isinstance(response, str):
            return VerifyResult(False, NO_ANSWER, None, f"response is {type(response).__name__}, not text")
        try:
            result = self.verifier(response, ground_truth, extra_info)
        except Exception as exc:  # a verifier bug must not kill a training step
            logger.warning("verifier for %r raised %s: %s", self.data_source, type(exc).__name__, exc)
            return VerifyResult(False, VERIFIER_ERROR, None, f"{type(exc).__name__}: {exc}")
        if not isinstance(result, VerifyResult):
            if isinstance(result, bool | int | float):
                passed = bool(result)
                return VerifyResult(passed, CORRECT if passed else "incorrect")
            return VerifyResult(False, VERIFIER_ERROR, None, f"verifier returned {type(result).__name__}")
        return result

    def with_prompts(self, **prompts: str) -> Task:
        """A copy with some prompts replaced (used by per-run config overrides)."""
        return replace(self, **{k: v for k, v in prompts.items() if v is not None})


class UnknownTaskError(KeyError):
    """Raised when no task is registered for a ``data_source``."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0])


_registry: dict[str, Task] = {}
_lock = threading.Lock()


def register_task(
    data_source: str | list[str] | tuple[str, ...],
    verifier: Verifier | None = None,
    *,
    reflection_prompt: str = GENERIC_REFLECTION_PROMPT,
    retry_prompt: str = GENERIC_RETRY_PROMPT,
    plain_retry_prompt: str = PLAIN_RETRY_PROMPT,
    description: str = "",
    replace_existing: bool = False,
    **metadata: Any,
):
    """Register a task's verifier and prompts under one or more ``data_source`` names.

    Works as a call, ``register_task("my_task", my_verifier)``, or as a decorator,
    ``@register_task("my_task")``. The verifier takes ``(response_text, ground_truth, extra_info)``
    and returns a :class:`VerifyResult` (a bool is accepted too).
    """
    names = [data_source] if isinstance(data_source, str) else list(data_source)
    if not names or not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"data_source must be a non-empty string or list of strings, got {data_source!r}")

    def _register(fn: Verifier) -> Verifier:
        if not callable(fn):
            raise TypeError(f"verifier for {names} must be callable, got {fn!r}")
        with _lock:
            for name in names:
                existing = _registry.get(name)
                if existing is not None and existing.verifier is not fn and not replace_existing:
                    raise ValueError(
                        f"a task is already registered for data_source {name!r} "
                        f"({existing.verifier.__module__}.{getattr(existing.verifier, '__qualname__', '?')}); "
                        "pass replace_existing=True to override it"
                    )
                _registry[name] = Task(
                    data_source=name,
                    verifier=fn,
                    reflection_prompt=reflection_prompt,
                    retry_prompt=retry_prompt,
                    plain_retry_prompt=plain_retry_prompt,
                    description=description,
                    metadata=dict(metadata),
                )
        return fn

    if verifier is None:
        return _register
    _register(verifier)
    return verifier


#: Alias that reads naturally as a decorator on a verifier function.
register_verifier = register_task


def get_task(data_source: str) -> Task:
    """Look up a registered task, with an error that says what is registered and how to add one."""
    task = _registry.get(str(data_source))
    if task is None:
        _ensure_builtin_tasks()
        task = _registry.get(str(data_source))
    if task is None:
        known = ", ".join(sorted(_registry)) or "<none>"
        raise UnknownTaskError(
            f"no R3 task/verifier is registered for data_source {data_source!r}; registered: {known}. "
            "Register one with r3_plugin.register_task(data_source, verifier) in a module that every "
            "verl process imports (for example your own `verl.plugins` entry point)."
        )
    return task


def registered_tasks() -> list[str]:
    _ensure_builtin_tasks()
    return sorted(_registry)


def unregister_task(data_source: str) -> None:
    """Remove a task (tests and notebooks re-registering a task use this)."""
    with _lock:
        _registry.pop(data_source, None)


def verify(
    data_source: str, response: Any, ground_truth: Any, extra_info: Mapping[str, Any] | None = None
) -> VerifyResult:
    """Verify ``response`` with the verifier registered for ``data_source``."""
    return get_task(data_source).verify(response, ground_truth, extra_info)


def _ensure_builtin_tasks() -> None:
    # Importing the package registers countdown and function calling.
    import r3_plugin.policy.verifiers  # noqa: F401
