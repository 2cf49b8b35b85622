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
"""Several evaluation runs side by side, in the paper's layout (vanilla 1st, vanilla 2nd,
trained 1st, trained 2nd), plus the control column the paper lacks, and a bar chart."""

from __future__ import annotations

import json
import os
from typing import Any

from r3_plugin.tools.evaluation.report import pct, points


class PlotUnavailable(RuntimeError):
    """matplotlib is not installed."""


def load_summary(path: str) -> dict[str, Any]:
    """A run's summary.json (a run directory is accepted too)."""
    file = os.path.join(path, "summary.json") if os.path.isdir(path) else path
    try:
        with open(file, encoding="utf-8") as f:
            summary = json.load(f)
    except FileNotFoundError as exc:
        raise ValueError(f"{file}: no such file (pass a run's summary.json or its directory)") from exc
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}: not valid JSON: {exc}") from exc
    if "metrics" not in summary or "run" not in summary:
        raise ValueError(f"{file}: not an 'r3 evaluate run' summary (no 'metrics'/'run' keys)")
    return summary


def _rate_value(rate: dict | None) -> float | None:
    return None if not rate or not rate.get("n") else rate["rate"]


def compare_rows(summaries: list[dict], labels: list[str]) -> list[dict[str, Any]]:
    """One machine-readable row per run."""
    rows = []
    for label, s in zip(labels, summaries, strict=True):
        m = s["metrics"]
        ctrl = m.get("control") or {}
        rows.append(
            {
                "label": label,
                "model": s["run"]["model"],
                "data": s["run"]["data"],
                "data_sha256": s["run"].get("data_sha256"),
                "n": m["n"],
                "first_try": m["first_try"],
                "second_try": m["second_try"],
                "gain": m["gain"],
                "control_second_try": ctrl.get("second_try"),
                "reflection_effect": ctrl.get("reflection_effect"),
                "mean_reflection_tokens": m["reflection_length"]["mean_tokens"],
            }
        )
    return rows


def render_compare(summaries: list[dict], labels: list[str]) -> str:
    rows = compare_rows(summaries, labels)
    datasets = sorted({os.path.basename(os.path.dirname(r["data"])) or r["data"] for r in rows})
    header = "| data | " + " | ".join(f"{lab} 1st | {lab} 2nd" for lab in labels) + " |"
    lines = [
        "# R3 evaluation: comparison",
        "",
        "Accuracy in %, paper layout (first try, second try after one reflection):",
        "",
        header,
        "|---|" + "---:|---:|" * len(labels),
        f"| {', '.join(datasets)} | "
        + " | ".join(f"{100 * r['first_try']['rate']:.1f} | {100 * r['second_try']['rate']:.1f}" for r in rows)
        + " |",
        "",
        "With 95% Wilson intervals and the control (second try without reflection, same failed attempt):",
        "",
        "| run | n | 1st | 2nd | gain | 2nd w/o reflection | reflection adds | reflection tokens |",
        "|---|---:|---|---|---:|---|---:|---:|",
    ]
    for r in rows:
        tokens = r["mean_reflection_tokens"]
        lines.append(
            f"| {r['label']} | {r['n']} | {pct(r['first_try'])} | {pct(r['second_try'])} | {points(r['gain'])} | "
            f"{pct(r['control_second_try'])} | {points(r['reflection_effect'])} | "
            f"{'n/a' if tokens is None else f'{tokens:.1f}'} |"
        )
    digests = {r["data_sha256"] for r in rows}
    if len(digests) > 1:
        lines += ["", "**Warning**: the runs were evaluated on different data files; the numbers are not paired."]
    return "\n".join(lines) + "\n"


def _dataset_name(path: str | None) -> str:
    """A short name for a data file: ``countdown/test.parquet`` rather than a long absolute path."""
    if not path:
        return "unknown data"
    parent = os.path.basename(os.path.dirname(path))
    return f"{parent}/{os.path.basename(path)}" if parent else os.path.basename(path)


def plot_text(summaries: list[dict], labels: list[str]) -> dict[str, Any]:
    """What the chart says besides its bars: a title naming the data and n, tick labels with each run's
    n, and a caption saying what the error bars are (so a PNG shown alone is still read correctly)."""
    rows = compare_rows(summaries, labels)
    datasets = sorted({_dataset_name(r["data"]) for r in rows})
    ns = sorted({r["n"] for r in rows})
    n_text = f"n={ns[0]}" if len(ns) == 1 else "n=" + "/".join(str(n) for n in ns)
    return {
        "title": f"R3 first vs second try: {', '.join(datasets)} ({n_text})",
        "ticks": [f"{r['label']}\n(n={r['n']})" for r in rows],
        "caption": "bars: accuracy; error bars: 95% Wilson score intervals; "
        "'no reflection': plain retry on the same failed attempt",
    }


def plot_compare(summaries: list[dict], labels: list[str], png_path: str) -> str:
    """Grouped bars (1st, 2nd, 2nd without reflection) per run, with Wilson error bars; returns the path."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PlotUnavailable(
            "the comparison chart needs matplotlib: pip install 'r3-plugin[plot]' (or pass --no-plot)"
        ) from exc
    series = [("first try", "first_try"), ("second try", "second_try"), ("second try, no reflection", "control")]
    width = 0.8 / len(series)
    fig, ax = plt.subplots(figsize=(max(4.0, 1.8 * len(labels) + 2), 3.6))
    for j, (name, key) in enumerate(series):
        values, errs = [], [[], []]
        for s in summaries:
            m = s["metrics"]
            rate = (m.get("control") or {}).get("second_try") if key == "control" else m[key]
            v = _rate_value(rate)
            values.append(0.0 if v is None else 100 * v)
            lo, hi = rate["ci95"] if v is not None else (0.0, 0.0)
            errs[0].append(0.0 if v is None else 100 * (v - lo))
            errs[1].append(0.0 if v is None else 100 * (hi - v))
        xs = [i + (j - (len(series) - 1) / 2) * width for i in range(len(labels))]
        ax.bar(xs, values, width, yerr=errs, capsize=3, label=name)
    text = plot_text(summaries, labels)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(text["ticks"])
    ax.set_ylabel("accuracy (%)")
    ax.set_ylim(0, 100)
    ax.legend(fontsize=8)
    ax.set_title(text["title"], fontsize=9)
    fig.text(0.5, 0.01, text["caption"], ha="center", va="bottom", fontsize=7)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    tmp = f"{png_path}.tmp-{os.getpid()}.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, png_path)
    return png_path
