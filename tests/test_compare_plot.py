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
"""`r3 evaluate compare` tells where its files went, and its chart names the data, n and the intervals."""

from __future__ import annotations

import json

from r3_plugin.tools.cli import main
from r3_plugin.tools.evaluation.compare import plot_text


def _summary(label: str, n: int, first: int, second: int, control: int) -> dict:
    def rate(k: int) -> dict:
        return {"k": k, "n": n, "rate": k / n, "ci95": [max(0.0, k / n - 0.05), min(1.0, k / n + 0.05)]}

    return {
        "run": {"label": label, "model": f"/m/{label}", "data": "/data/countdown/test.parquet", "data_sha256": "x"},
        "metrics": {
            "n": n,
            "first_try": rate(first),
            "second_try": rate(second),
            "gain": (second - first) / n,
            "reflection_length": {"mean_tokens": 10.0},
            "control": {"second_try": rate(control), "reflection_effect": (second - control) / n},
        },
    }


def test_chart_text_names_data_n_and_wilson_intervals():
    text = plot_text([_summary("a", 200, 40, 60, 45), _summary("b", 200, 50, 90, 52)], ["sft", "r3"])
    assert text["title"] == "R3 first vs second try: countdown/test.parquet (n=200)"
    assert text["ticks"] == ["sft\n(n=200)", "r3\n(n=200)"]
    assert "95% Wilson" in text["caption"]
    uneven = plot_text([_summary("a", 100, 1, 2, 1), _summary("b", 300, 1, 2, 1)], ["x", "y"])
    assert "(n=100/300)" in uneven["title"]


def test_compare_prints_where_the_chart_and_table_went(tmp_path, capsys):
    runs = []
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "summary.json").write_text(json.dumps(_summary(label, 100, 10, 20, 12)))
        runs.append(str(tmp_path / label))
    out = tmp_path / "cmp"
    assert main(["evaluate", "compare", *runs, "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"chart (95% Wilson intervals): {out / 'compare.png'}" in printed
    assert str(out / "compare.md") in printed
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"
