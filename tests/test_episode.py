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
"""The shared episode policy, driven through a plain chat conversation with scripted turns."""

from __future__ import annotations

import pytest

from r3_plugin.integration.agent_loop import R3Config
from r3_plugin.policy.episode import EndReason, EpisodeConfig, Finish, Generation, TurnKind, run_episode
from r3_plugin.policy.episode_info import aggregate_step_metrics
from r3_plugin.policy.tasks import Task, VerifyResult, get_task, register_task, unregister_task


class ScriptedChat:
    """A minimal Conversation: replies come from a list; every call is recorded."""

    def __init__(self, replies, budget=None, finishes=None):
        self.replies = list(replies)
        self.finishes = list(finishes or [])
        self.messages: list[tuple[str, str]] = []
        self.kinds: list[TurnKind] = []
        self.budget = budget

    def budget_left(self):
        return None if self.budget is None else self.budget - sum(len(t) for _, t in self.messages)

    async def generate(self, kind, max_tokens):
        text = self.replies.pop(0)
        finish = self.finishes.pop(0) if self.finishes else Finish.STOP
        self.kinds.append(kind)
        self.messages.append(("assistant", text))
        return Generation(text=text, num_tokens=len(text.split()), finish=finish)

    async def add_user(self, text):
        self.messages.append(("user", text))

    async def add_assistant(self, text):
        self.messages.append(("assistant", text))


TASK = Task(
    data_source="t",
    verifier=lambda r, gt, e=None: VerifyResult(r == gt, "correct" if r == gt else "wrong"),
    reflection_prompt="REFLECT",
    retry_prompt="RETRY",
    plain_retry_prompt="AGAIN",
)


async def test_retry_success_sequence():
    chat = ScriptedChat(["bad", "my reflection words", "good"])
    ep = await run_episode(TASK, "good", chat)
    assert ep.end_reason == EndReason.RETRY_SUCCESS and ep.passed and not ep.first_try_passed
    assert chat.kinds == [TurnKind.ATTEMPT, TurnKind.REFLECTION, TurnKind.RETRY]
    assert [m for m in chat.messages if m[0] == "user"] == [("user", "REFLECT"), ("user", "RETRY")]
    assert ep.reflection_tokens == 3 and ep.second_result.passed


async def test_first_try_success_stops_immediately():
    chat = ScriptedChat(["good"])
    ep = await run_episode(TASK, "good", chat)
    assert ep.end_reason == EndReason.FIRST_TRY_SUCCESS and ep.rounds == [] and len(chat.messages) == 1


async def test_control_retry_without_reflection():
    chat = ScriptedChat(["good"])
    ep = await run_episode(TASK, "good", chat, EpisodeConfig(reflect=False), failed_attempt="bad")
    assert chat.messages == [("assistant", "bad"), ("user", "AGAIN"), ("assistant", "good")]
    assert ep.retry_passed and ep.offline_attempt and ep.rounds[0].reflection is None


async def test_attempt_only_for_mining_and_multiple_rounds():
    ep = await run_episode(TASK, "good", ScriptedChat(["bad"]), EpisodeConfig(max_reflections=0))
    assert ep.end_reason == EndReason.ATTEMPT_ONLY and not ep.passed
    chat = ScriptedChat(["bad", "r1", "bad", "r2", "bad"])
    ep = await run_episode(TASK, "good", chat, EpisodeConfig(max_reflections=2))
    assert ep.end_reason == EndReason.RETRIES_EXHAUSTED and ep.num_reflections == 2


async def test_empty_retry_prompt_and_prompt_overrides():
    chat = ScriptedChat(["bad", "thought", "good"])
    ep = await run_episode(TASK, "good", chat, EpisodeConfig(retry_prompt="", reflection_prompt="WHY?"))
    assert [m for m in chat.messages if m[0] == "user"] == [("user", "WHY?")]
    assert ep.retry_passed


async def test_abort_and_budget_end_cleanly():
    chat = ScriptedChat(["bad", "x"], finishes=[Finish.STOP, Finish.ABORTED])
    ep = await run_episode(TASK, "good", chat)
    assert ep.end_reason == EndReason.ABORTED
    chat = ScriptedChat(["bad"], budget=5)  # "bad" + "REFLECT" exceeds 5 characters of budget
    ep = await run_episode(TASK, "good", chat)
    assert ep.end_reason == EndReason.OUT_OF_BUDGET and chat.kinds == [TurnKind.ATTEMPT]


async def test_verifier_errors_never_escape():
    def broken(response, gt, extra=None):
        raise RecursionError("deep")

    register_task("r3_broken", broken, replace_existing=True)
    try:
        res = get_task("r3_broken").verify("x", None)
        assert not res.passed and res.category == "verifier_error" and "RecursionError" in res.detail
        assert not get_task("r3_broken").verify(b"\xff\xfe", None).passed
    finally:
        unregister_task("r3_broken")


def test_registry_errors_name_the_data_source():
    with pytest.raises(KeyError, match="no_such_task"):
        get_task("no_such_task")
    register_task("r3_dup", lambda r, g, e=None: True)
    try:
        with pytest.raises(ValueError, match="already registered"):
            register_task("r3_dup", lambda r, g, e=None: False)
        assert get_task("r3_dup").verify("x", None).passed  # bool results are accepted
    finally:
        unregister_task("r3_dup")


def test_config_validation():
    with pytest.raises(ValueError, match="r3.mode"):
        R3Config.from_mapping({"mode": "sometimes"})
    with pytest.raises(ValueError, match="r3.credit"):
        R3Config.from_mapping({"credit": "everything"})
    with pytest.raises(ValueError, match="max_reflections"):
        EpisodeConfig(max_reflections=-1)
    cfg = R3Config.from_mapping({"credit": "reflection_and_retry", "max_reflections": 2, "unrelated": 1})
    assert TurnKind.RETRY in cfg.credited_kinds and cfg.episode.max_reflections == 2


def test_step_metrics_include_dropped_sessions():
    kept = [
        {"first_try_acc": 0.0, "retry_success": 1.0, "reflection_tokens": 10.0, "episode_tokens": 50.0},
        {"first_try_acc": 0.0, "retry_success": 0.0, "reflection_tokens": 20.0, "episode_tokens": 70.0},
    ]
    evicted = [{"first_try_acc": 0.0, "retry_success": 1.0, "reflection_tokens": 5.0, "episode_tokens": 9.0}]
    m = aggregate_step_metrics(kept, {"first_try_success": 2, "out_of_budget": 1}, untrained=evicted)
    assert m["r3/episodes"] == 6 and m["r3/trained_episodes"] == 2 and m["r3/trained_share"] == 2 / 6
    assert m["r3/dropped/first_try_success"] == 2 and m["r3/dropped/out_of_budget"] == 1
    assert m["r3/first_try_success_rate"] == 2 / 6 and m["r3/retry_success_rate"] == 2 / 3
    # lengths describe what was trained
    assert m["r3/reflection_length/mean"] == 15.0 and m["r3/episode_length/mean"] == 60.0
    assert aggregate_step_metrics([])["r3/episodes"] == 0
