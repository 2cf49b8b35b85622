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
"""The Markdown report of one evaluation run (report.md next to summary.json)."""

from __future__ import annotations

from typing import Any


def pct(rate: dict[str, Any] | None) -> str:
    """``12.3% [10.1, 14.8]`` from an accounting rate dict."""
    if not rate or not rate.get("n"):
        return "n/a"
    lo, hi = rate["ci95"]
    return f"{100 * rate['rate']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}]"


def points(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:+.1f} pts"


def _num(x: float | None, fmt: str = "{:.1f}") -> str:
    return "n/a" if x is None else fmt.format(x)


def _categories_table(columns: dict[str, dict[str, int]]) -> list[str]:
    names = sorted(
        {c for col in columns.values() for c in col}, key=lambda c: (-sum(col.get(c, 0) for col in columns.values()), c)
    )
    if not names:
        return ["(none)"]
    lines = ["| category | " + " | ".join(columns) + " |", "|---|" + "---:|" * len(columns)]
    for name in names:
        lines.append(f"| {name} | " + " | ".join(str(col.get(name, 0)) for col in columns.values()) + " |")
    return lines


def metrics_section(m: dict[str, Any], heading: str = "##") -> list[str]:
    ctrl = m.get("control")
    lines = [
        f"{heading} Accuracy (n = {m['n']}, 95% Wilson intervals)",
        "",
        "| | accuracy |",
        "|---|---|",
        f"| first try | {pct(m['first_try'])} |",
        f"| second try (reflect, retry) | {pct(m['second_try'])} |",
        f"| gain | {points(m['gain'])} |",
    ]
    if ctrl:
        lines += [
            f"| second try without reflection (control) | {pct(ctrl['second_try'])} |",
            f"| control gain | {points(ctrl['gain'])} |",
            f"| **what the reflection adds** | {points(ctrl['reflection_effect'])} |",
        ]
    if m["within_episode"]["count"] != m["second_try"]["count"]:
        lines.append(f"| solved within the episode (all rounds) | {pct(m['within_episode'])} |")
    if m.get("broken_rows"):
        lines.append(
            f"| broken rows (the verifier raised; not in n) | {m['broken_rows']} (listed in summary.json, 'broken') |"
        )
    lines += [
        "",
        f"Of {m['first_try_failures']} first-try failures, "
        f"{pct(m['retry_success_after_reflection'])} were solved after reflecting",
    ]
    if ctrl:
        lines[-1] += (
            f" and {pct(ctrl['retry_success'])} by a plain retry of the same failed attempt "
            f"(reflect-only successes {ctrl['reflect_only_successes']}, control-only "
            f"{ctrl['control_only_successes']}, exact McNemar p = {ctrl['mcnemar_p']:.3g})."
        )
    else:
        lines[-1] += " (control not run)."
    refl = m["reflection_length"]
    lines += [
        "",
        f"{heading}# Reflections",
        "",
        f"- count: {refl['count']}, mean length {_num(refl['mean_tokens'])} tokens "
        f"(median {_num(refl['median_tokens'], '{:g}')}, {_num(refl['mean_words'])} words), "
        f"truncated {refl['truncated']}",
        f"- mean tokens when the retry passed: {_num(refl['mean_tokens_when_retry_passed'])}; "
        f"when it failed: {_num(refl['mean_tokens_when_retry_failed'])}",
        "",
        f"{heading}# Error categories (verifier)",
        "",
    ]
    columns = {
        "first try (all rows)": m["first_try_categories"],
        "second try, reflect (first-try failures)": m["second_try_categories"],
    }
    if ctrl:
        columns["second try, control"] = ctrl["second_try_categories"]
    lines += _categories_table(columns)
    lines += [
        "",
        f"End reasons: {', '.join(f'{k} {v}' for k, v in m['end_reasons'].items()) or 'none'}; "
        f"episodes with a truncated turn: {m['truncated_episodes']}.",
    ]
    return lines


def _example(records: list[dict]) -> list[str]:
    for rec in records:
        ep = rec["reflect"]
        if ep["second_try_passed"] and not ep["first_try_passed"] and ep.get("messages"):
            lines = ["## Example: a retry that succeeded after reflecting", ""]
            for msg in ep["messages"]:
                text = str(msg.get("content", ""))
                if len(text) > 600:
                    text = text[:600] + " [...]"
                lines.append(f"**{msg.get('role')}**:")
                lines.append("")
                lines += ["    " + ln for ln in text.splitlines() or [""]]
                lines.append("")
            return lines
    return []


def render_report(summary: dict[str, Any], records: list[dict] | None = None) -> str:
    run = summary["run"]
    lines = [
        f"# R3 evaluation: {run.get('label') or run['model']}",
        "",
        f"- model: `{run['model']}` (backend {run['backend']})",
        f"- data: `{run['data']}` ({run['rows']} rows)",
        f"- sampling: {', '.join(f'{k}={v}' for k, v in run['sampling'].items())}",
        f"- episode: {', '.join(f'{k}={v}' for k, v in run['episode'].items() if v is not None)}",
        f"- elapsed {run['elapsed_s']:.1f} s, {run['episodes_per_s']:.2f} episodes/s, "
        f"{run['generated_tokens_per_s']:.0f} generated tokens/s",
        "",
    ]
    lines += metrics_section(summary["metrics"])
    by_ds = summary.get("by_data_source") or {}
    if len(by_ds) > 1:
        for ds, m in by_ds.items():
            lines += ["", f"## {ds}", ""] + metrics_section(m, heading="###")
    if records:
        lines += [""] + _example(records)
    return "\n".join(lines).rstrip() + "\n"
