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
"""The ``r3_sync`` trainer: verl's synchronous v1 trainer plus R3's step metrics.

verl's v1 trainer logs no agent-loop-specific numbers for training steps, so this subclass adds
``r3/...`` metrics (first-try success rate, retry success rate, reflection and episode length,
share of sampled episodes that trained) computed from the per-trajectory records the ``r3_agent``
loop attaches. Selected by ``trainer.v1.trainer_mode=r3_sync`` (the recipes set it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any

from verl.trainer.ppo.v1.trainer_base import register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from r3_plugin.episode_info import aggregate_step_metrics

TRAINER_MODE = "r3_sync"


def metrics_from_extra_fields(extra_fields: Iterable[Any]) -> dict[str, float]:
    """R3 step metrics from the trajectories' ``extra_fields`` (non-R3 rows are ignored)."""
    records: list[Mapping[str, Any]] = []
    dropped: Counter[str] = Counter()
    for fields in extra_fields:
        if not isinstance(fields, Mapping):
            continue
        for reason, count in (fields.get("r3_dropped") or {}).items():
            dropped[str(reason)] += float(count)
        record = fields.get("reward_extra_info")
        if isinstance(record, Mapping) and "first_try_acc" in record:
            records.append(record)
    if not records and not dropped:
        return {}
    return aggregate_step_metrics(records, dropped)


@register_trainer(TRAINER_MODE)
class R3SyncTrainer(PPOTrainerSync):
    """Sync PPO/GRPO trainer that also logs R3 episode metrics each step."""

    def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):  # noqa: D401 - verl hook
        super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
        import transfer_queue as tq

        keep = [i for i, tag in enumerate(batch.tags) if not tag.get("is_padding", False)]
        if not keep:
            return
        data = tq.kv_batch_get(
            keys=[batch.keys[i] for i in keep], partition_id=batch.partition_id, select_fields=["extra_fields"]
        )
        metrics.update(metrics_from_extra_fields(data.pop("extra_fields").tolist()))
