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
"""R3's replay buffer on a real TransferQueue, then verl's own GRPO advantage on what it returns.

Constructed steps, exactly as verl's v1 trainer stores them (prompt keys with status tags, one
key per trajectory, drop reasons in the prompt's tag), drive the group rule's branches: groups of
one and groups with nothing left are evicted and refilled, partial batches after the refill budget,
a clear stop when fresh prompts never give a trainable group, exact per-step counts. The refill
function stands in for the trainer's rollout (it writes what R3's worker would write).
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

pytestmark = pytest.mark.slow

_uids = (f"p{i:04d}" for i in itertools.count())  # no "_" inside: verl splits keys on it


@pytest.fixture(scope="module")
def tq():
    import ray
    import transfer_queue

    ray.init(num_cpus=4, include_dashboard=False, logging_level="ERROR", ignore_reinit_error=True)
    transfer_queue.init(OmegaConf.create({"backend": {"SimpleStorage": {"num_data_storage_units": 1}}}))
    yield transfer_queue
    ray.shutdown()


def put_group(tq, rewards: list[float], dropped: list[str], status: str = "finished") -> str:
    """One prompt of a training step: its surviving trajectories and the reasons its other sessions dropped."""
    from verl.utils.tensordict_utils import list_of_dict_to_tensordict

    uid = next(_uids)
    tag = {"is_prompt": True, "status": status, "global_steps": 1}
    tag.update({f"r3_dropped/{len(rewards) + i}": reason for i, reason in enumerate(dropped)})
    tq.kv_put(key=uid, partition_id="train", tag=tag)
    if rewards:
        fields = [
            {
                "rm_scores": torch.tensor([0.0, 0.0, r]),
                "extra_fields": {"reward_extra_info": {"first_try_acc": 0.0, "retry_success": r, "acc": r}},
            }
            for r in rewards
        ]
        keys = [f"{uid}_{i}_0" for i in range(len(rewards))]
        tags = [{"status": "success", "seq_len": 10, "min_global_steps": 1, "max_global_steps": 1}] * len(rewards)
        tq.kv_batch_put(keys=keys, partition_id="train", fields=list_of_dict_to_tensordict(fields), tags=tags)
    return uid


def buffer(refill, **kwargs):
    from r3_plugin.integration.sampler import R3ReplayBuffer

    return R3ReplayBuffer(
        trainer_mode="sync",
        trainer_config=OmegaConf.create({}),
        max_off_policy_threshold=None,
        max_off_policy_strategy="drop",
        sampler_kwargs=OmegaConf.create({"min_group_size": 2, **kwargs}),
        poll_interval=0.01,
        refill_fn=refill,
    )


def grpo(tq, batch):
    """verl's GRPO advantage over the batch the buffer returned, grouped by prompt uid."""
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    data = tq.kv_batch_get(keys=batch.keys, partition_id="train", select_fields=["rm_scores"])
    scores = data["rm_scores"]
    advantages, _ = compute_grpo_outcome_advantage(
        token_level_rewards=scores,
        response_mask=torch.ones_like(scores),
        index=np.array([k.split("_")[0] for k in batch.keys]),
    )
    return {key: round(float(adv[-1]), 3) for key, adv in zip(batch.keys, advantages, strict=True)}


def test_thin_and_empty_groups_are_refilled_and_counted(tq):
    refills = []

    def refill(count):  # the rollout of fresh prompts: each keeps two episodes, one passing
        refills.append(count)
        for _ in range(count):
            put_group(tq, [1.0, 0.0], ["first_try_success", "out_of_budget"])

    full = put_group(tq, [1.0, 0.0, 0.0, 0.0], [])
    lone = put_group(tq, [1.0], ["first_try_success"] * 3)  # verl would give this its raw reward, +1
    empty = put_group(tq, [], ["first_try_success"] * 4)  # every session dropped
    batch, metrics = buffer(refill).sample(global_steps=1, partition_id="train", batch_size=3)

    uids = {k.split("_")[0] for k in batch.keys}
    assert full in uids and lone not in uids and empty not in uids and len(uids) == 3
    assert refills == [2]
    advantages = grpo(tq, batch)
    assert all(len([k for k in batch.keys if k.startswith(u + "_")]) >= 2 for u in uids)
    assert advantages[f"{full}_0_0"] == 1.5 and advantages[f"{full}_1_0"] == -0.5  # (r - mean) / std within 4
    assert sorted(v for k, v in advantages.items() if not k.startswith(full)) == [-0.707, -0.707, 0.707, 0.707]
    # every session of the step counted once: 4 + (1 + 3) + 4 + 2 x (2 + 2)
    assert metrics["r3/episodes"] == 20 and metrics["r3/trained_episodes"] == 8
    assert metrics["r3/dropped/first_try_success"] == 3 + 4 + 2 and metrics["r3/dropped/out_of_budget"] == 2
    assert metrics["r3/groups/evicted_thin"] == 2 and metrics["r3/groups/refilled_prompts"] == 2
    assert metrics["r3/retry_success_rate"] == 4 / 9  # over the 9 sampled trajectories, evicted ones too
    tq.kv_clear(keys=batch.keys + list(uids), partition_id="train")


def test_after_the_refill_budget_a_step_trains_on_the_groups_it_has(tq):
    def refill(count):  # fresh prompts that never give a group
        for _ in range(count):
            put_group(tq, [], ["first_try_success"] * 4)

    kept = put_group(tq, [1.0, 0.0], [])
    put_group(tq, [0.0], ["aborted"])
    batch, metrics = buffer(refill, max_refill_prompts=2).sample(global_steps=1, partition_id="train", batch_size=4)
    assert {k.split("_")[0] for k in batch.keys} == {kept}
    assert metrics["r3/groups/short_of_batch"] == 3 and metrics["r3/groups/refilled_prompts"] == 3
    tq.kv_clear(keys=batch.keys + [kept], partition_id="train")


def test_a_step_with_nothing_to_train_stops_with_a_diagnosis(tq):
    from r3_plugin.integration.sampler import R3TrainingDataExhausted

    def refill(count):
        for _ in range(count):
            put_group(tq, [], ["first_try_success"] * 4)

    put_group(tq, [], ["first_try_success"] * 4)
    with pytest.raises(R3TrainingDataExhausted, match="passes .nearly. every first attempt"):
        buffer(refill, max_refill_prompts=2, max_empty_refill_prompts=6).sample(
            global_steps=1, partition_id="train", batch_size=2
        )
    left = list((tq.kv_list() or {}).get("train", {}))
    if left:
        tq.kv_clear(keys=left, partition_id="train")


def test_a_group_whose_session_raised_is_replaced(tq):
    def refill(count):
        for _ in range(count):
            put_group(tq, [1.0, 0.0], [])

    crashed = put_group(tq, [1.0, 0.0], [], status="failure")
    batch, metrics = buffer(refill).sample(global_steps=1, partition_id="train", batch_size=1)
    assert crashed not in {k.split("_")[0] for k in batch.keys}
    assert metrics["r3/groups/evicted_failed"] == 1 and metrics["r3/groups/refilled_prompts"] == 1
