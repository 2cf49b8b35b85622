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
"""Per-episode records (verl's ``reward_extra_info``) and the step metrics aggregated from them.

The agent loop attaches :func:`episode_record` to every trajectory; verl logs numeric keys of it
under ``val-aux/<data_source>/<key>/...`` during validation, and the ``r3_sync`` trainer turns the
training batch's records into ``r3/...`` step metrics with :func:`aggregate_step_metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from r3_plugin.episode import EndReason, Episode

#: Keys present in every record, so verl can stack them into arrays (it requires equal key sets).
RECORD_KEYS = (
    "acc",
    "first_try_acc",
    "second_try_acc",
    "retry_success",
    "reflection_tokens",
    "episode_tokens",
    "trained_tokens",
    "truncated",
    "aborted",
    "end_reason",
    "first_category",
    "final_category",
)


def episode_record(episode: Episode, *, reward: float, episode_tokens: int, trained_tokens: int) -> dict[str, Any]:
    """Flat, numeric-where-possible summary of one episode (``acc`` is verl's core val metric)."""
    return {
        "acc": float(reward),
        "first_try_acc": float(episode.first_try_passed),
        "second_try_acc": float(episode.passed),
        "retry_success": float(episode.retry_passed),
        "reflection_tokens": float(episode.reflection_tokens),
        "episode_tokens": float(episode_tokens),
        "trained_tokens": float(trained_tokens),
        "truncated": float(episode.truncated or episode.end_reason == EndReason.OUT_OF_BUDGET),
        "aborted": float(episode.end_reason == EndReason.ABORTED),
        "end_reason": episode.end_reason.value,
        "first_category": episode.first_result.category,
        "final_category": episode.final_result.category,
    }


def aggregate_step_metrics(
    records: Iterable[Mapping[str, Any]], dropped: Mapping[str, float] | None = None
) -> dict[str, float]:
    """``r3/...`` metrics for one training step.

    ``records`` are the trajectories that reached the batch; ``dropped`` counts sessions the loop
    dropped before the batch (online first-try successes, aborted episodes), reported by the
    agent-loop workers alongside the records, so rates cover every episode sampled.
    """
    records = [r for r in records if r]
    dropped = dict(dropped or {})
    n_first_success = float(dropped.get("first_try_success", 0.0))
    n_dropped = float(sum(dropped.values()))
    n_kept = float(len(records))
    n_total = n_kept + n_dropped
    metrics: dict[str, float] = {
        "r3/episodes": n_total,
        "r3/trained_share": n_kept / n_total if n_total else 0.0,
        "r3/dropped_first_try_success": n_first_success,
        "r3/dropped_other": n_dropped - n_first_success,
    }
    if n_total:
        first_success = n_first_success + sum(float(r.get("first_try_acc", 0.0)) for r in records)
        metrics["r3/first_try_success_rate"] = first_success / n_total
    failed_first = [r for r in records if float(r.get("first_try_acc", 0.0)) == 0.0]
    if failed_first:
        metrics["r3/retry_success_rate"] = sum(float(r.get("retry_success", 0.0)) for r in failed_first) / len(
            failed_first
        )
    if records:
        for key, name in (
            ("reflection_tokens", "reflection_length"),
            ("episode_tokens", "episode_length"),
            ("trained_tokens", "trained_tokens"),
            ("truncated", "truncated_rate"),
            ("aborted", "aborted_rate"),
        ):
            metrics[f"r3/{name}/mean"] = sum(float(r.get(key, 0.0)) for r in records) / n_kept
    return metrics
