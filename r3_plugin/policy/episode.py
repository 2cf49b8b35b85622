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
"""The R3 episode policy: attempt, verify, reflect, retry, verify. Written once, used everywhere.

The agent loop (training), the failure miner and the evaluator all call :func:`run_episode`; they
differ only in the :class:`Conversation` they pass: verl's token-level conversation in training,
a chat-message conversation over vLLM / an OpenAI endpoint / transformers elsewhere. So training
and evaluation cannot disagree about what an episode is.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Protocol, runtime_checkable

from r3_plugin.policy.tasks import Task, VerifyResult


class TurnKind(str, Enum):
    """What an assistant turn is for; the agent loop credits turns by kind."""

    ATTEMPT = "attempt"
    REFLECTION = "reflection"
    RETRY = "retry"


class Finish(str, Enum):
    STOP = "stop"  # the model ended its turn
    LENGTH = "length"  # hit the turn's own token cap (r3.*_max_tokens): the model's doing
    BUDGET = "budget"  # cut by the episode's token budget (less was left than the turn's cap)
    ABORTED = "aborted"  # the server aborted the request


class EndReason(str, Enum):
    FIRST_TRY_SUCCESS = "first_try_success"
    RETRY_SUCCESS = "retry_success"
    RETRIES_EXHAUSTED = "retries_exhausted"
    # The episode's token budget ran out before the retry was verified, or cut a failed retry short.
    OUT_OF_BUDGET = "out_of_budget"
    ABORTED = "aborted"
    ATTEMPT_ONLY = "attempt_only"  # max_reflections == 0 (failure mining): first attempt failed


def cut_by(max_tokens: int | None, limit: int | None) -> Finish:
    """How a turn that ran into its token limit ended: the turn's own cap, or the episode's budget.

    ``limit`` is what the conversation allowed (``min(max_tokens, budget_left)``); when the budget
    set it, the cut is not the model's doing and the episode says nothing about the reflection.
    """
    if limit is not None and (max_tokens is None or limit < max_tokens):
        return Finish.BUDGET
    return Finish.LENGTH


@dataclass
class Generation:
    """One assistant turn as the conversation recorded it."""

    text: str
    num_tokens: int
    finish: Finish = Finish.STOP


@dataclass
class Round:
    """One reflect-and-retry round."""

    reflection: Generation | None = None
    retry: Generation | None = None
    result: VerifyResult | None = None


@dataclass
class Episode:
    """Everything the policy observed; rewards and metrics are derived from it."""

    first_attempt: Generation
    first_result: VerifyResult
    rounds: list[Round] = field(default_factory=list)
    end_reason: EndReason = EndReason.RETRIES_EXHAUSTED
    offline_attempt: bool = False

    @property
    def first_try_passed(self) -> bool:
        return self.first_result.passed

    @property
    def retry_passed(self) -> bool:
        return self.end_reason == EndReason.RETRY_SUCCESS

    @property
    def passed(self) -> bool:
        """Solved within the episode (first try or a retry): the paper's second-try accuracy."""
        return self.first_try_passed or self.retry_passed

    @property
    def final_result(self) -> VerifyResult:
        for rnd in reversed(self.rounds):
            if rnd.result is not None:
                return rnd.result
        return self.first_result

    @property
    def second_result(self) -> VerifyResult | None:
        """The verdict on the first retry (None when there was no verified retry)."""
        return self.rounds[0].result if self.rounds else None

    @property
    def reflection_tokens(self) -> int:
        return sum(r.reflection.num_tokens for r in self.rounds if r.reflection is not None)

    @property
    def num_reflections(self) -> int:
        return sum(1 for r in self.rounds if r.reflection is not None)

    @property
    def truncated(self) -> bool:
        gens = [self.first_attempt] + [g for r in self.rounds for g in (r.reflection, r.retry) if g is not None]
        return any(g.finish in (Finish.LENGTH, Finish.BUDGET) for g in gens)


@runtime_checkable
class Conversation(Protocol):
    """What the policy needs from a backend: a growing chat it can extend and sample from.

    ``generate`` samples one assistant turn (and records it in the conversation); it must cap the
    turn at ``min(max_tokens, budget_left())``. ``budget_left`` is the number of tokens the
    episode may still add, or ``None`` for no limit.
    """

    async def generate(self, kind: TurnKind, max_tokens: int | None) -> Generation: ...

    async def add_user(self, text: str) -> None: ...

    async def add_assistant(self, text: str) -> None: ...

    def budget_left(self) -> int | None: ...


@dataclass(frozen=True)
class EpisodeConfig:
    """Knobs of the policy. Defaults follow the paper: one reflection, one retry."""

    max_reflections: int = 1
    #: False turns the episode into the evaluation control "retry without reflection".
    reflect: bool = True
    attempt_max_tokens: int | None = None
    reflection_max_tokens: int | None = None
    retry_max_tokens: int | None = None
    #: Prompt overrides (None: the task's registered prompt).
    reflection_prompt: str | None = None
    retry_prompt: str | None = None
    plain_retry_prompt: str | None = None

    def __post_init__(self) -> None:
        if self.max_reflections < 0:
            raise ValueError(f"max_reflections must be >= 0, got {self.max_reflections}")
        for name in ("attempt_max_tokens", "reflection_max_tokens", "retry_max_tokens"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be >= 1 or None, got {value}")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> EpisodeConfig:
        """Build from a config block (e.g. the recipe's ``r3:`` section), ignoring unrelated keys."""
        if not cfg:
            return cls()
        known = cls.__dataclass_fields__.keys()
        return cls(**{k: cfg[k] for k in known if k in cfg and cfg[k] is not None})


def _out_of_budget(conv: Conversation) -> bool:
    left = conv.budget_left()
    return left is not None and left <= 0


async def run_episode(
    task: Task,
    ground_truth: Any,
    conv: Conversation,
    config: EpisodeConfig = EpisodeConfig(),
    *,
    extra_info: Mapping[str, Any] | None = None,
    failed_attempt: str | None = None,
) -> Episode:
    """Run one R3 episode on ``conv``, which already holds the task prompt.

    ``failed_attempt`` (offline mode) is a stored first attempt, e.g. from the failure miner: it is
    added to the conversation instead of sampling one, so every sample of a GRPO group reflects on
    the same failure. It is verified like a sampled attempt (a stored attempt that passes ends the
    episode as a first-try success rather than training on a false failure).
    """
    reflection_prompt = config.reflection_prompt if config.reflection_prompt is not None else task.reflection_prompt
    retry_prompt = config.retry_prompt if config.retry_prompt is not None else task.retry_prompt
    plain_retry_prompt = config.plain_retry_prompt if config.plain_retry_prompt is not None else task.plain_retry_prompt

    if failed_attempt is not None:
        await conv.add_assistant(failed_attempt)
        first = Generation(text=failed_attempt, num_tokens=0, finish=Finish.STOP)
    else:
        first = await conv.generate(TurnKind.ATTEMPT, config.attempt_max_tokens)
    first_result = task.verify(first.text, ground_truth, extra_info)
    episode = Episode(first_attempt=first, first_result=first_result, offline_attempt=failed_attempt is not None)

    if first_result.passed:
        episode.end_reason = EndReason.FIRST_TRY_SUCCESS
        return episode
    if first.finish == Finish.ABORTED:
        episode.end_reason = EndReason.ABORTED
        return episode
    if config.max_reflections == 0:
        episode.end_reason = EndReason.ATTEMPT_ONLY
        return episode

    for _ in range(config.max_reflections):
        rnd = Round()
        episode.rounds.append(rnd)
        if config.reflect:
            await conv.add_user(reflection_prompt)
            if _out_of_budget(conv):
                episode.end_reason = EndReason.OUT_OF_BUDGET
                return episode
            rnd.reflection = await conv.generate(TurnKind.REFLECTION, config.reflection_max_tokens)
            if rnd.reflection.finish == Finish.ABORTED:
                episode.end_reason = EndReason.ABORTED
                return episode
            follow_up = retry_prompt
        else:
            follow_up = plain_retry_prompt
        if follow_up:
            await conv.add_user(follow_up)
        if _out_of_budget(conv):
            episode.end_reason = EndReason.OUT_OF_BUDGET
            return episode
        rnd.retry = await conv.generate(TurnKind.RETRY, config.retry_max_tokens)
        if rnd.retry.finish == Finish.ABORTED:
            episode.end_reason = EndReason.ABORTED
            return episode
        rnd.result = task.verify(rnd.retry.text, ground_truth, extra_info)
        if rnd.result.passed:
            episode.end_reason = EndReason.RETRY_SUCCESS
            return episode
        if rnd.retry.finish == Finish.BUDGET:  # the budget, not the model, ended this retry
            episode.end_reason = EndReason.OUT_OF_BUDGET
            return episode
    episode.end_reason = EndReason.RETRIES_EXHAUSTED
    return episode
