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
"""Run evaluation episodes: the same ``run_episode`` as training, plus the paired control.

For every row the reflect episode runs (attempt, verify, reflect, retry, verify). When its first
attempt failed, the control episode "retry without reflection" runs on the *same* failed attempt:
``run_episode(..., EpisodeConfig(reflect=False), failed_attempt=first_text)``. Sharing the attempt
makes the comparison paired: any difference between the two second tries comes from the reflection,
not from a luckier first attempt. The control starts as soon as the first attempt exists, so its
retry is generated alongside the reflection (one fewer round of dependent generate calls per row).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from r3_plugin.policy.episode import EndReason, EpisodeConfig, Finish, Generation, TurnKind, run_episode
from r3_plugin.tools.backends.base import ChatConversation
from r3_plugin.tools.dataset_rows import TaskRow
from r3_plugin.tools.evaluation.accounting import episode_dict
from r3_plugin.tools.journal import Journal
from r3_plugin.tools.run_common import BROKEN_KEY, broken_detail, drain_pending, episode_seed


@dataclass(frozen=True)
class EvalConfig:
    episode: EpisodeConfig = EpisodeConfig()
    #: run the "retry without reflection" control on first-try failures
    control: bool = True
    #: rows evaluated at once (each runs its reflect episode, then its control)
    concurrency: int = 64
    max_episode_tokens: int | None = None
    seed: int | None = 0
    #: keep full message transcripts in the records
    transcripts: bool = True
    #: reflection text per row index, written instead of generated (see given_reflection.py)
    given_reflections: dict[int, str] | None = None


@dataclass
class _AnnouncingConversation(ChatConversation):
    """A chat conversation that calls ``on_first_attempt`` the moment its first attempt exists.

    The call happens before the episode goes on, so a task started there submits its first request
    in the same event-loop round as the reflection and lands in the same micro-batch. With
    ``given_reflection`` set, a reflection turn writes that text instead of generating one; the
    policy (``run_episode``) is unchanged and cannot tell.
    """

    on_first_attempt: Callable[[Generation], None] | None = None
    #: written as the reflection instead of generating one (0 generated tokens)
    given_reflection: str | None = None

    async def generate(self, kind: TurnKind, max_tokens: int | None) -> Generation:
        if kind == TurnKind.REFLECTION and self.given_reflection is not None:
            await self.add_assistant(self.given_reflection)
            gen = Generation(text=self.given_reflection, num_tokens=0)
            self.turns.append((kind, gen))
            return gen
        gen = await super().generate(kind, max_tokens)
        if kind == TurnKind.ATTEMPT and self.on_first_attempt is not None:
            callback, self.on_first_attempt = self.on_first_attempt, None
            callback(gen)
        return gen


def _conversation(
    row: TaskRow,
    backend: Any,
    config: EvalConfig,
    stream: int,
    on_first_attempt: Callable[[Generation], None] | None = None,
) -> _AnnouncingConversation:
    """The chat conversation of one of a row's episodes (stream 0: reflect, 1: control), seeded per row."""
    return _AnnouncingConversation(
        backend,
        row.prompt,
        tools=row.tools,
        max_episode_tokens=config.max_episode_tokens,
        seed=episode_seed(config.seed, row.row_index, 0, stream=stream),
        on_first_attempt=on_first_attempt,
        given_reflection=(config.given_reflections or {}).get(row.row_index),
    )


async def evaluate_row(row: TaskRow, task: Any, backend: Any, config: EvalConfig) -> dict[str, Any]:
    """Evaluate one row; returns its JSON-ready record."""
    control_run: asyncio.Future | None = None

    def start_control(first: Generation) -> None:
        # A passing attempt ends the control at once (run_episode verifies it, generating nothing), so
        # only an aborted attempt is filtered here; the record keeps the control only for failures.
        nonlocal control_run
        if first.finish != Finish.ABORTED:
            control_run = asyncio.ensure_future(_control_episode(row, task, backend, config, first.text))

    conv = _conversation(row, backend, config, 0, on_first_attempt=start_control if config.control else None)
    try:
        episode = await run_episode(task, row.ground_truth, conv, config.episode, extra_info=row.extra_info)
        control = await control_run if control_run is not None else None
    finally:
        if control_run is not None and not control_run.done():  # the reflect episode raised
            control_run.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await control_run
    record: dict[str, Any] = {
        "key": row.row_index,
        "index": row.index,
        "data_source": row.data_source,
        "ground_truth": row.ground_truth,
        "control_enabled": config.control,
        "reflect": episode_dict(episode, conv.messages if config.transcripts else None),
        "control": None,
    }
    broken = broken_detail([episode.first_result, *(r.result for r in episode.rounds)])
    if broken is not None:  # the row's verifier raised: bad data, kept out of every accuracy
        record[BROKEN_KEY] = broken
        return record
    if control is not None and not episode.first_try_passed and episode.end_reason != EndReason.ABORTED:
        record["control"] = control
    return record


async def _control_episode(
    row: TaskRow, task: Any, backend: Any, config: EvalConfig, failed_attempt: str
) -> dict[str, Any]:
    """The "retry without reflection" episode on the reflect episode's own first attempt, as a record."""
    conv = _conversation(row, backend, config, 1)
    episode = await run_episode(
        task,
        row.ground_truth,
        conv,
        dataclasses.replace(config.episode, reflect=False),
        extra_info=row.extra_info,
        failed_attempt=failed_attempt,
    )
    return episode_dict(episode, conv.messages if config.transcripts else None)


async def evaluate_rows(
    rows: list[TaskRow],
    backend: Any,
    config: EvalConfig,
    journal: Journal,
    *,
    progress: bool = True,
    tasks: dict[str, Any] | None = None,
    source: str = "<rows>",
) -> float:
    """Evaluate every row the journal has not finished; returns the wall time spent.

    A row whose verifier raises is journaled as ``broken`` (named once, on stderr) and left out of
    the accuracies.
    """
    counts = {"rows": 0, "episodes": 0, "tokens": 0, "first": 0, "second": 0}

    def on_record(record: dict[str, Any], elapsed: float) -> dict[str, str]:
        counts["episodes"] += 1 + (record["control"] is not None)
        counts["tokens"] += record["reflect"]["generated_tokens"]
        counts["tokens"] += record["control"]["generated_tokens"] if record["control"] else 0
        if record.get(BROKEN_KEY):
            return {}
        counts["rows"] += 1
        counts["first"] += record["reflect"]["first_try_passed"]
        counts["second"] += record["reflect"]["second_try_passed"]
        return {
            "ep_s": f"{counts['episodes'] / elapsed:.1f}",
            "tok_s": f"{counts['tokens'] / elapsed:.0f}",
            "acc1": f"{counts['first'] / counts['rows']:.3f}",
            "acc2": f"{counts['second'] / counts['rows']:.3f}",
        }

    async def handle_row(row: TaskRow, task: Any) -> dict[str, Any]:
        return await evaluate_row(row, task, backend, config)

    return await drain_pending(
        rows,
        journal,
        handle_row,
        concurrency=config.concurrency,
        desc="evaluating",
        unit="row",
        progress=progress,
        tasks=tasks,
        on_record=on_record,
        source=source,
    )
