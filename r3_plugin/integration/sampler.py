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
"""``R3ReplayBuffer``: verl's sync replay buffer with R3's GRPO group rule and exact ``r3/*`` step metrics.

Plugged in through verl's own option ``trainer.v1.sampler.custom_sampler`` (the recipes set it), so
the trainer stays verl's ``sync`` trainer. Validation sampling is verl's, unchanged.

The group rule (training). The ``r3_agent`` loop drops sessions that have nothing to teach the
reflection (first try passed, aborted, out of budget, nothing credited); a GRPO group is what
survives of one prompt's ``rollout.n`` sessions. verl normalises a group of one to its raw reward
(mean 0, std 1), i.e. no baseline, so a group needs at least ``min_group_size`` (default 2)
surviving episodes. Thinner groups, and groups in which a session raised, are evicted and replaced
by fresh prompts (at most ``max_refill_prompts`` per step; default 4 x train_batch_size). When the
refill budget is spent, the step trains on the groups it has (verl pads the batch with mask-0
rows); a step never has zero groups: refilling then goes on, with a warning per batch of prompts,
until ``max_empty_refill_prompts`` fresh prompts gave nothing to train, which stops the run with an
explanation (the model passes nearly every first attempt: R3 has nothing to learn from this data).

The metrics. Every session sampled for this step (trained, dropped, or in an evicted group) is
counted exactly once in this step's ``r3/*`` metrics; see :func:`r3_plugin.policy.episode_info.aggregate_step_metrics`.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

import transfer_queue as tq
from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer

from r3_plugin.integration import names, session
from r3_plugin.policy.config import R3Config
from r3_plugin.policy.episode_info import aggregate_step_metrics

logger = logging.getLogger(__name__)

SAMPLER_PATH = names.SAMPLER_PATH
SAMPLER_NAME = names.SAMPLER_NAME
DEFAULT_MIN_GROUP_SIZE = R3Config.min_group_size


class R3TrainingDataExhausted(RuntimeError):
    """Fresh prompts keep producing no GRPO group with enough R3 episodes to train on."""


def _uid(key: str) -> str:
    return key.split("_")[0]


class R3ReplayBuffer(ReplayBuffer):
    """verl's sync ``ReplayBuffer``; training batches hold only groups of >= ``min_group_size`` R3 episodes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        opts = dict(self.sampler_kwargs or {})
        self.min_group_size = int(opts.get("min_group_size") or DEFAULT_MIN_GROUP_SIZE)
        self.max_refill_prompts = opts.get("max_refill_prompts")
        self.max_empty_refill_prompts = opts.get("max_empty_refill_prompts")
        if self.min_group_size < 1:
            raise ValueError(
                f"trainer.v1.sampler.sampler_kwargs.min_group_size must be >= 1, got {self.min_group_size}"
            )
        if self.refill_fn is None:
            raise ValueError("R3ReplayBuffer needs verl's refill_fn to replace evicted groups")
        self._prompt_tags: dict[str, dict[str, dict]] = defaultdict(dict)

    # -- TransferQueue snapshot ------------------------------------------------------------------
    def _sync_metadata_from_transfer_queue(self) -> None:
        super()._sync_metadata_from_transfer_queue()
        self._prompt_tags.clear()
        for partition_id, items in (tq.kv_list() or {}).items():
            for key, tag in items.items():
                if tag.get("is_prompt", False):
                    self._prompt_tags[partition_id][key] = dict(tag)

    def _dropped_reasons(self, partition_id: str, uid: str) -> list[str]:
        tag = self._prompt_tags[partition_id].get(uid, {})
        return [str(v) for k, v in tag.items() if k.startswith(session.DROP_TAG_PREFIX)]

    def _trajectory_keys(self, partition_id: str, uids: Iterable[str]) -> dict[str, list[str]]:
        wanted = set(uids)
        keys: dict[str, list[str]] = defaultdict(list)
        for key in self.partitions[partition_id]:
            if _uid(key) in wanted:
                keys[_uid(key)].append(key)
        return keys

    # -- sampling ----------------------------------------------------------------------------------
    def sample(self, global_steps: int, partition_id: str, batch_size: int):
        if partition_id == "val":
            return super().sample(global_steps, partition_id, batch_size)

        budget = int(self.max_refill_prompts) if self.max_refill_prompts is not None else 4 * batch_size
        hard_limit = (
            int(self.max_empty_refill_prompts) if self.max_empty_refill_prompts is not None else 16 * batch_size
        )
        consumed = _StepLedger()
        refilled = 0
        last_debug_time = 0.0
        while True:
            self._sync_metadata_from_transfer_queue()
            terminal = self.finished_keys[partition_id] | self.failure_keys[partition_id]
            keys_by_uid = self._trajectory_keys(partition_id, terminal)
            failed = set(self.failure_keys[partition_id])
            thin = {uid for uid in terminal - failed if len(keys_by_uid.get(uid, ())) < self.min_group_size}
            evicted = failed | thin
            if evicted:
                self._account(consumed, partition_id, evicted, keys_by_uid, kind="evicted", failed=failed)
                self._clear_groups(partition_id, evicted)
            sampleable = terminal - evicted
            inflight = len(self.pending_keys[partition_id]) + len(self.running_keys[partition_id])
            deficit = batch_size - len(sampleable) - inflight

            if deficit > 0 and (refilled < budget or not sampleable):
                if refilled >= hard_limit:
                    raise R3TrainingDataExhausted(
                        f"r3: {refilled} fresh prompts at step {global_steps} gave no GRPO group with >= "
                        f"{self.min_group_size} R3 episodes (dropped sessions: {dict(consumed.dropped)}). "
                        "The model passes (nearly) every first attempt on this data, so R3 has no failures to "
                        "reflect on: use harder data, or train offline on mined failures (+recipe=r3_countdown_offline)"
                    )
                count = deficit if refilled < budget else max(deficit, batch_size)
                if refilled >= budget:
                    logger.warning(
                        "r3: refill budget (%d prompts) spent at step %d with no trainable group; %d more prompts",
                        budget,
                        global_steps,
                        count,
                    )
                self.refill_fn(count)
                refilled += count
                consumed.refilled += count
                continue
            if inflight == 0 and sampleable:
                selected, partition_snapshot, _ = self._select_prompt_uids(partition_id, sampleable, batch_size)
                surplus = sampleable - set(selected)
                self._account(consumed, partition_id, set(selected), keys_by_uid, kind="trained")
                if surplus:
                    self._account(consumed, partition_id, surplus, keys_by_uid, kind="surplus")
                    self._clear_groups(partition_id, surplus)
                break
            last_debug_time = self._wait_for_next_poll(partition_id, last_debug_time)

        batch = self._materialize_batch(partition_id, selected, partition_snapshot)
        return batch, consumed.metrics(batch_size)

    def _account(
        self,
        ledger: _StepLedger,
        partition_id: str,
        uids: set[str],
        keys_by_uid: Mapping[str, list[str]],
        *,
        kind: str,
        failed: set[str] = frozenset(),
    ) -> None:
        """Add these groups' sessions (trajectories and dropped ones) to this step's ledger."""
        keys = [key for uid in uids for key in keys_by_uid.get(uid, ())]
        records = _records(keys, partition_id) if keys else []
        for uid in uids:
            ledger.dropped.update(self._dropped_reasons(partition_id, uid))
        ledger.groups[kind] += len(uids)
        if kind == "evicted":
            ledger.groups["failed"] += len(uids & failed)
            ledger.groups["thin"] += len(uids - failed)
        if kind == "trained":
            ledger.trained.extend(records)
        else:
            ledger.untrained.extend(records)


def _records(keys: list[str], partition_id: str) -> list[Mapping[str, Any]]:
    data = tq.kv_batch_get(keys=keys, partition_id=partition_id, select_fields=["extra_fields"])
    out = []
    for fields in data.pop("extra_fields").tolist():
        record = fields.get("reward_extra_info") if isinstance(fields, Mapping) else None
        out.append(record if isinstance(record, Mapping) else {})
    return out


class _StepLedger:
    """Every session one training step consumed, by fate."""

    def __init__(self) -> None:
        self.trained: list[Mapping[str, Any]] = []
        self.untrained: list[Mapping[str, Any]] = []
        self.dropped: Counter[str] = Counter()
        self.groups: Counter[str] = Counter()
        self.refilled = 0

    def metrics(self, batch_size: int) -> dict[str, float]:
        metrics = aggregate_step_metrics(self.trained, self.dropped, untrained=self.untrained)
        metrics["r3/groups/trained"] = float(self.groups["trained"])
        metrics["r3/groups/evicted_thin"] = float(self.groups["thin"])
        metrics["r3/groups/evicted_failed"] = float(self.groups["failed"])
        metrics["r3/groups/discarded_surplus"] = float(self.groups["surplus"])
        metrics["r3/groups/refilled_prompts"] = float(self.refilled)
        metrics["r3/groups/short_of_batch"] = float(max(0, batch_size - self.groups["trained"]))
        return metrics
