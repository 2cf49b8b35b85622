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
"""`r3 evaluate` starts the control ("retry without reflection") as soon as the first attempt exists, so
the control's retry shares a round of generate calls with the reflection; the records stay the same."""

from __future__ import annotations

import asyncio

from r3_plugin.policy.episode import Finish, Generation
from r3_plugin.policy.tasks import get_task
from r3_plugin.tools.backends.base import MicroBatcher
from r3_plugin.tools.backends.scripted import ScriptedBackend, infer_turn
from r3_plugin.tools.dataset_rows import TaskRow
from r3_plugin.tools.evaluation.runner import EvalConfig, evaluate_row

GOOD = "<answer> 3 + 4 </answer>"
BAD = "<answer> 3 * 4 </answer>"


def _row(index: int = 0) -> TaskRow:
    prompt = [{"role": "user", "content": "Using the numbers [3, 4], create an equation that equals 7."}]
    return TaskRow(
        row_index=index, data_source="countdown", prompt=prompt, ground_truth={"target": 7, "numbers": [3, 4]}
    )


def _backend(first: str) -> tuple[ScriptedBackend, list[str]]:
    turns: list[str] = []
    replies = {"attempt": first, "reflection": "I multiplied; I should add.", "retry": GOOD, "plain_retry": BAD}

    def script(messages: list[dict]) -> str:
        turn = infer_turn(messages)
        turns.append(turn)
        return replies[turn]

    return ScriptedBackend(script), turns


def test_control_retry_is_generated_alongside_the_reflection():
    backend, turns = _backend(BAD)
    record = asyncio.run(evaluate_row(_row(), get_task("countdown"), backend, EvalConfig()))
    assert turns[0] == "attempt" and sorted(turns[1:3]) == ["plain_retry", "reflection"] and turns[3] == "retry"
    # the record is what the sequential order gave: paired on the same failed attempt
    assert record["reflect"]["first_try_passed"] is False and record["reflect"]["second_try_passed"] is True
    control = record["control"]
    assert control is not None and control["second_try_passed"] is False
    assert control["first_attempt"]["text"] == record["reflect"]["first_attempt"]["text"] == BAD


def test_no_control_when_the_first_attempt_passes():
    backend, turns = _backend(GOOD)
    record = asyncio.run(evaluate_row(_row(), get_task("countdown"), backend, EvalConfig()))
    assert turns == ["attempt"]  # the control verified the passing attempt and generated nothing
    assert record["reflect"]["first_try_passed"] is True and record["control"] is None


def test_control_off_runs_only_the_reflect_episode():
    backend, turns = _backend(BAD)
    record = asyncio.run(evaluate_row(_row(), get_task("countdown"), backend, EvalConfig(control=False)))
    assert turns == ["attempt", "reflection", "retry"] and record["control"] is None


class _BatchingBackend(ScriptedBackend):
    """The scripted replies, but through the MicroBatcher the vLLM and HF backends use; records batches."""

    def __init__(self, script) -> None:
        super().__init__(script)
        self.batches: list[list[str]] = []
        self._batcher = MicroBatcher(self._run_batch, max_batch_size=64)

    def _run_batch(self, requests: list[list[dict]]) -> list[str]:
        self.batches.append(sorted(infer_turn(m) for m in requests))
        return [self.script(m) for m in requests]

    async def generate(self, messages, *, max_tokens, tools=None, seed=None) -> Generation:
        text = await self._batcher.submit([dict(m) for m in messages])
        return Generation(text=text, num_tokens=len(text.split()), finish=Finish.STOP)


def test_batched_backend_runs_three_rounds_not_four():
    backend = _BatchingBackend(_backend(BAD)[0].script)

    async def run_rows() -> list[dict]:
        return await asyncio.gather(
            *(evaluate_row(_row(i), get_task("countdown"), backend, EvalConfig()) for i in range(3))
        )

    records = asyncio.run(run_rows())
    assert backend.batches == [
        ["attempt"] * 3,
        ["plain_retry"] * 3 + ["reflection"] * 3,
        ["retry"] * 3,
    ]
    assert all(r["control"] is not None and r["reflect"]["second_try_passed"] for r in records)
