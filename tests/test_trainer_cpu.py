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

from r3_plugin.local.trainer_run import read_metrics
from r3_plugin.policy.tasks import get_task

pytestmark = pytest.mark.slow

CHECKPOINT_STEP, STEPS = 2, 4


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return build_toy_data(tmp_path_factory.mktemp("toy-data"), train=256, test=8)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_model_dir, toy_data):
    """Online R3 for 4 steps as a crash and a resume: checkpoint at step 2, SIGKILL, resume to step 4.

    The first half trains with ``r3.credit=reflection`` and validates at step 0; the resumed half
    trains with ``reflection_and_retry`` (verl does not store the config in checkpoints) and
    validates after its last step.
    """
    out = tmp_path_factory.mktemp("online")
    common = [f"trainer.total_training_steps={STEPS}", f"trainer.save_freq={CHECKPOINT_STEP}"]
    first = trainer_run(out, "r3_countdown", tiny_model_dir, toy_data, [*common, "trainer.val_before_train=True"])
    first.start()
    deadline = time.monotonic() + 900
    # verl saves a step's checkpoint before it dumps that step's rollouts and logs its metrics: wait for
    # all three, so the crash comes after step 2 completed (a kill in between loses step 2's log lines,
    # which is verl's behaviour, not what this test is about).
    while first.checkpointed_step() != CHECKPOINT_STEP or CHECKPOINT_STEP not in first.metrics():
        assert first.process.poll() is None, f"run ended before its step-2 checkpoint:\n{first.log_tail()}"
        assert time.monotonic() < deadline, "no step-2 checkpoint and metrics within 15 minutes"
        time.sleep(1)
    first.kill()  # SIGKILL to every process of the run, as a crash would
    (out / "metrics.jsonl").rename(out / "metrics-first.jsonl")
    resume = [*common, "trainer.val_before_train=False", f"trainer.test_freq={STEPS}", "r3.credit=reflection_and_retry"]
    second = finish(trainer_run(out, "r3_countdown", tiny_model_dir, toy_data, resume))
    first_metrics = read_metrics(out / "metrics-first.jsonl")
    return {"first": first, "second": second, "first_metrics": first_metrics, "second_metrics": second.metrics()}


def _dump(runs, step):
    return runs["first" if step <= CHECKPOINT_STEP else "second"].token_dump(step)


def _step_metrics(runs, step):
    return runs["first_metrics" if step <= CHECKPOINT_STEP else "second_metrics"][step]


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


def test_every_step_logs_r3_metrics_and_counts_every_session(runs):
    for step in range(1, STEPS + 1):
        m = _step_metrics(runs, step)
        assert m["training/global_step"] == step
        dropped = sum(v for k, v in m.items() if k.startswith("r3/dropped/"))
        # Every session sampled for the step is counted once: trained, dropped, or in an evicted group.
        assert m["r3/episodes"] >= m["r3/trained_episodes"] + dropped
        assert m["r3/groups/trained"] >= 1
        assert 0.0 <= m["r3/first_try_success_rate"] <= 1.0
        # 4 prompts a step, plus one per evicted group's replacement; 4 sessions each (rollout.n).
        assert m["r3/episodes"] == 4 * (4 + m["r3/groups/refilled_prompts"])


def test_dropped_sessions_do_not_flood_the_log(runs):
    """verl's worker logs one "Empty output" warning per dropped session; R3's worker records them instead."""
    dropped = sum(_step_metrics(runs, s)["r3/dropped/first_try_success"] for s in range(1, STEPS + 1))
    assert dropped > 0
    for run in (runs["first"], runs["second"]):
        assert "Empty output for prompt" not in run.log_path.read_text(errors="replace")


def test_weights_reach_vllm_every_step(runs):
    for step in range(1, STEPS + 1):
        m = _step_metrics(runs, step)
        assert m["training/rollout_probs_diff_mean"] < 1e-3, m
    # The policy did change (so the small difference is not two untouched copies agreeing).
    assert any(_step_metrics(runs, s)["actor/grad_norm"] > 0 for s in range(1, STEPS + 1))


def test_advantage_only_on_reflection_tokens_and_grpo_groups_of_two_or_more(runs, tokenizer):
    reflection_prompt = get_task(TOY_SOURCE).reflection_prompt
    nonzero = 0
    for step in range(1, CHECKPOINT_STEP + 1):  # the first half trains with r3.credit=reflection
        rows = _dump(runs, step)
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


def test_validation_logs_first_and_second_try_accuracy(runs):
    for step in (0, STEPS):
        keys = _step_metrics(runs, step) if step else runs["first_metrics"][0]
        assert f"val-aux/{TOY_SOURCE}/first_try_acc/mean@1" in keys, sorted(k for k in keys if k.startswith("val"))
        assert f"val-aux/{TOY_SOURCE}/second_try_acc/mean@1" in keys
        assert keys[f"val-aux/{TOY_SOURCE}/second_try_acc/mean@1"] >= keys[f"val-aux/{TOY_SOURCE}/first_try_acc/mean@1"]


def test_resume_continues_from_the_step_2_checkpoint_and_loses_nothing(runs):
    assert {1, 2} <= set(runs["first_metrics"])
    assert sorted(k for k in runs["second_metrics"] if k > 0) == [3, 4], "the resumed run must continue at step 3"
    assert "global_step_2" in runs["second"].log_path.read_text()
    # The dataloader resumed where it stopped, so steps 3-4 train on prompts steps 1-2 never saw.
    seen = {step: {tuple(r["prompt_ids"]) for r in _dump(runs, step)} for step in range(1, STEPS + 1)}
    assert not (seen[1] | seen[2]) & (seen[3] | seen[4])


def test_reflection_and_retry_credit_trains_both_spans(runs, tokenizer):
    retry_prompt = get_task(TOY_SOURCE).retry_prompt
    for step in range(CHECKPOINT_STEP + 1, STEPS + 1):
        for row in _dump(runs, step):
            spans = _spans(row["response_mask"])
            assert len(spans) == 2, f"reflection_and_retry trains the reflection and the retry, got {spans}"
            assert retry_prompt in _decoded_before(tokenizer, row["response_ids"], spans[1][0])
            assert all(m == 1 for m, a in zip(row["response_mask"], row["advantages"], strict=True) if a != 0)


def test_demo_view_of_a_real_run(runs, tokenizer, capsys):
    """What ``r3 demo`` prints, on this run's own files: per-step R3 metrics, transcripts, legend."""
    from r3_plugin.tools.demo_trainer import follow, show_last_step

    assert follow(runs["second"], STEPS) == 0
    show_last_step(runs["second"], STEPS, tokenizer, show=2, color=False)
    out = capsys.readouterr().out
    assert "first try" in out and "[[" in out and "advantage" in out and "[[...]] marks the trained tokens" in out
