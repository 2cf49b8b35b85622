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
"""Turn evaluated episodes (the JSON records in episodes.jsonl) into the report's numbers.

Works on the stored records, not on live objects, so a resumed run and a run re-summarised from
its episodes.jsonl give the same numbers. Definitions (n = evaluated rows):

- first-try accuracy: the first attempt passed the verifier;
- second-try accuracy: first try passed, or the first retry (after one reflection) passed, i.e. the
  paper's "second try";
- control (retry without reflection): first try passed, or the plain retry passed; the control
  reuses the reflect episode's failed first attempt, so the two second tries are paired;
- reflection effect: second-try accuracy minus control second-try accuracy;
- error categories come from the verifier's ``VerifyResult.category``;
- a broken row (its verifier raised: bad data, not a model error) is counted in ``broken_rows`` and
  left out of n and every rate.
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Iterable
from typing import Any

from r3_plugin.tools.evaluation.stats import mcnemar_exact_p, wilson_interval


def generation_dict(gen: Any) -> dict[str, Any] | None:
    if gen is None:
        return None
    return {"text": gen.text, "num_tokens": gen.num_tokens, "finish": getattr(gen.finish, "value", gen.finish)}


def result_dict(res: Any) -> dict[str, Any] | None:
    if res is None:
        return None
    return {"passed": res.passed, "category": res.category, "answer": res.answer, "detail": res.detail}


def episode_dict(episode: Any, messages: list[dict] | None = None) -> dict[str, Any]:
    """A JSON-ready record of an :class:`r3_plugin.policy.episode.Episode` (plus its transcript)."""
    second = episode.second_result
    return {
        "first_attempt": generation_dict(episode.first_attempt),
        "first_result": result_dict(episode.first_result),
        "rounds": [
            {
                "reflection": generation_dict(r.reflection),
                "retry": generation_dict(r.retry),
                "result": result_dict(r.result),
            }
            for r in episode.rounds
        ],
        "end_reason": getattr(episode.end_reason, "value", episode.end_reason),
        "offline_attempt": episode.offline_attempt,
        "first_try_passed": episode.first_try_passed,
        "second_try_passed": episode.first_try_passed or bool(second is not None and second.passed),
        "passed": episode.passed,
        "truncated": episode.truncated,
        "generated_tokens": _generated_tokens(episode),
        "messages": messages,
    }


def _generated_tokens(episode: Any) -> int:
    total = 0 if episode.offline_attempt else episode.first_attempt.num_tokens
    for r in episode.rounds:
        for g in (r.reflection, r.retry):
            if g is not None:
                total += g.num_tokens
    return total


def _rate(k: int, n: int) -> dict[str, Any]:
    lo, hi = wilson_interval(k, n)
    return {"count": k, "n": n, "rate": k / n if n else 0.0, "ci95": [lo, hi]}


def _second_category(ep: dict) -> str:
    rounds = ep.get("rounds") or []
    if rounds and rounds[0].get("result"):
        return rounds[0]["result"]["category"]
    return f"not_retried:{ep.get('end_reason')}"


def _mean(values: list[float]) -> float | None:
    return statistics.fmean(values) if values else None


def summarize_records(records: Iterable[dict]) -> dict[str, Any]:
    """All metrics of a run from its episode records (broken rows are counted, not scored)."""
    records = list(records)
    broken = [r for r in records if r.get("broken")]
    records = [r for r in records if not r.get("broken")]
    n = len(records)
    reflect = [r["reflect"] for r in records]
    first_pass = [ep["first_try_passed"] for ep in reflect]
    second_pass = [ep["second_try_passed"] for ep in reflect]
    final_pass = [ep["passed"] for ep in reflect]
    failed_first = [r for r in records if not r["reflect"]["first_try_passed"]]
    m = len(failed_first)

    metrics: dict[str, Any] = {
        "n": n,
        "broken_rows": len(broken),
        "first_try": _rate(sum(first_pass), n),
        "second_try": _rate(sum(second_pass), n),
        "gain": (sum(second_pass) - sum(first_pass)) / n if n else 0.0,
        "within_episode": _rate(sum(final_pass), n),
        "first_try_failures": m,
        "retry_success_after_reflection": _rate(sum(1 for r in failed_first if r["reflect"]["second_try_passed"]), m),
        "first_try_categories": dict(Counter(ep["first_result"]["category"] for ep in reflect).most_common()),
        "second_try_categories": dict(Counter(_second_category(r["reflect"]) for r in failed_first).most_common()),
        "end_reasons": dict(Counter(ep["end_reason"] for ep in reflect).most_common()),
        "truncated_episodes": sum(1 for ep in reflect if ep["truncated"]),
        "generated_tokens": sum(ep["generated_tokens"] for ep in reflect),
    }

    with_reflection = [ep for ep in reflect if ep["rounds"] and ep["rounds"][0]["reflection"]]
    good = [ep["rounds"][0]["reflection"]["num_tokens"] for ep in with_reflection if ep["second_try_passed"]]
    bad = [ep["rounds"][0]["reflection"]["num_tokens"] for ep in with_reflection if not ep["second_try_passed"]]
    reflections = [ep["rounds"][0]["reflection"] for ep in with_reflection]
    metrics["reflection_length"] = {
        "count": len(with_reflection),
        "mean_tokens": _mean([g["num_tokens"] for g in reflections]),
        "median_tokens": statistics.median([g["num_tokens"] for g in reflections]) if reflections else None,
        "mean_words": _mean([len(g["text"].split()) for g in reflections]),
        "mean_tokens_when_retry_passed": _mean(good),
        "mean_tokens_when_retry_failed": _mean(bad),
        "truncated": sum(1 for g in reflections if g["finish"] == "length"),
    }

    control_enabled = bool(records) and all(r.get("control_enabled") for r in records)
    if control_enabled:
        controls = [r.get("control") for r in failed_first]  # None: first attempt aborted, nothing to retry
        ctrl_retry = [bool(c and c["second_try_passed"]) for c in controls]
        refl_retry = [r["reflect"]["second_try_passed"] for r in failed_first]
        control_second = sum(first_pass) + sum(ctrl_retry)
        b = sum(1 for x, y in zip(refl_retry, ctrl_retry, strict=True) if x and not y)
        c = sum(1 for x, y in zip(refl_retry, ctrl_retry, strict=True) if y and not x)
        metrics["control"] = {
            "second_try": _rate(control_second, n),
            "gain": sum(ctrl_retry) / n if n else 0.0,
            "retry_success": _rate(sum(ctrl_retry), m),
            "reflection_effect": (sum(second_pass) - control_second) / n if n else 0.0,
            "reflect_only_successes": b,
            "control_only_successes": c,
            "mcnemar_p": mcnemar_exact_p(b, c),
            "second_try_categories": dict(
                Counter(_second_category(ctl) if ctl else "not_retried:aborted" for ctl in controls).most_common()
            ),
            "generated_tokens": sum(ctl["generated_tokens"] for ctl in controls if ctl),
        }
    else:
        metrics["control"] = None
    return metrics


def summarize_by_data_source(records: Iterable[dict]) -> dict[str, dict[str, Any]]:
    groups: dict[str, list[dict]] = {}
    for r in records:
        groups.setdefault(r["data_source"], []).append(r)
    return {ds: summarize_records(rs) for ds, rs in sorted(groups.items())}
