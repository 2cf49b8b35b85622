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
under ``val-aux/<data_source>/<key>/...`` during validation, and R3's replay buffer
(:mod:`r3_plugin.integration.sampler`) turns each training step's records into ``r3/...`` step metrics with
:func:`aggregate_step_metrics`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from r3_plugin.policy.episode import EndReason, Episode

#: Why the ``r3_agent`` loop drops a training session (each is counted as ``r3/dropped/<reason>``).
DROP_REASONS = ("first_try_success", "out_of_budget", "aborted", "no_credited_tokens")

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
    trained: Iterable[Mapping[str, Any]],
    dropped: Mapping[str, float] | None = None,
    *,
    untrained: Iterable[Mapping[str, Any]] = (),
) -> dict[str, float]:
    """``r3/...`` metrics for one training step, over every session the step sampled.

    ``trained`` are the records of the trajectories in the batch; ``untrained`` those of trajectories
    sampled but not trained (their GRPO group was evicted or surplus); ``dropped`` counts, by reason,
    the sessions the loop dropped (online first-try successes, out of budget, aborted). Rates cover
    all three, so ``r3/first_try_success_rate`` is the first-try accuracy of what was sampled.
    """
    trained = [r for r in trained if r]
    untrained = [r for r in untrained if r]
    dropped = {str(k): float(v) for k, v in (dropped or {}).items()}
    sampled = trained + untrained
    n_dropped = sum(dropped.values())
    n_total = float(len(sampled)) + n_dropped
    metrics: dict[str, float] = {
        "r3/episodes": n_total,
        "r3/trained_episodes": float(len(trained)),
        "r3/trained_share": len(trained) / n_total if n_total else 0.0,
    }
    for reason in DROP_REASONS:
        metrics[f"r3/dropped/{reason}"] = dropped.pop(reason, 0.0)
    metrics["r3/dropped/other"] = sum(dropped.values())
    if n_total:
        first_success = metrics["r3/dropped/first_try_success"] + sum(
            float(r.get("first_try_acc", 0.0)) for r in sampled
        )
        metrics["r3/first_try_success_rate"] = first_success / n_total
    failed_first = [r for r in sampled if float(r.get("first_try_acc", 0.0)) == 0.0]
    if failed_first:
        retried = sum(float(r.get("retry_success", 0.0)) for r in failed_first)
        metrics["r3/retry_success_rate"] = retried / len(failed_first)
    if trained:
        for key, name in (
            ("reflection_tokens", "reflection_length"),
            ("episode_tokens", "episode_length"),
            ("trained_tokens", "trained_tokens"),
            ("truncated", "truncated_rate"),
            ("acc", "reward"),
        ):
            metrics[f"r3/{name}/mean"] = sum(float(r.get(key, 0.0)) for r in trained) / len(trained)
    return metrics
