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
"""The evaluation harness: exact accounting on scripted episodes (reflect vs the paired control),
Wilson intervals, report files, resume, compare table and chart, and a tiny real model end to end."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from r3_echo_fixtures import ECHO, echo_rows, register_echo, unregister_echo, write_parquet

from r3_plugin.policy.tasks import (
    GENERIC_REFLECTION_PROMPT,
    GENERIC_RETRY_PROMPT,
    PLAIN_RETRY_PROMPT,
    VerifyResult,
    register_task,
    unregister_task,
)
from r3_plugin.tools.backends.scripted import ScriptedBackend, table_script
from r3_plugin.tools.cli import main
from r3_plugin.tools.dataset_rows import read_task_rows
from r3_plugin.tools.evaluation.accounting import summarize_records
from r3_plugin.tools.evaluation.runner import EvalConfig, evaluate_rows
from r3_plugin.tools.evaluation.stats import mcnemar_exact_p, wilson_interval
from r3_plugin.tools.journal import Journal

# Five rows covering every branch; "say 00i" has ground truth "00i".
#   0: first try passes
#   1: fails; retry after reflection passes; plain retry passes
#   2: fails; retry after reflection passes; plain retry fails
#   3: fails; retry after reflection fails;  plain retry passes
#   4: fails; both retries fail (and the reflection is empty)
TABLE = {
    "say 000": {"attempt": "000"},
    "say 001": {"attempt": "nope", "reflection": "I misread it", "retry": "001", "plain_retry": "001"},
    "say 002": {"attempt": "nah", "reflection": "copy the number exactly", "retry": "002", "plain_retry": "two"},
    "say 003": {"attempt": "hmm", "reflection": "a b c d", "retry": "three", "plain_retry": "003"},
    "say 004": {"attempt": "", "reflection": "", "retry": "four", "plain_retry": "4"},
}


@pytest.fixture()
def echo_task():
    register_echo()
    yield ECHO
    unregister_echo()


async def _evaluate(tmp_path, n=5, control=True):
    data = write_parquet(echo_rows(n), tmp_path / "test.parquet")
    backend = ScriptedBackend(table_script(TABLE))
    with Journal.open(tmp_path / "episodes.jsonl", {"t": 1}) as journal:
        await evaluate_rows(read_task_rows(data), backend, EvalConfig(control=control), journal, progress=False)
        records = [journal.records[i] for i in range(n)]
    return records, backend


def test_wilson_and_mcnemar_known_values():
    lo, hi = wilson_interval(5, 10)
    assert lo == pytest.approx(0.2366, abs=1e-4) and hi == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 10) == (0.0, pytest.approx(0.2775, abs=1e-4))
    assert wilson_interval(10, 10)[1] == 1.0 and wilson_interval(0, 0) == (0.0, 0.0)
    assert mcnemar_exact_p(0, 0) == 1.0
    assert mcnemar_exact_p(1, 1) == 1.0
    assert mcnemar_exact_p(6, 0) == pytest.approx(2 / 64)
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


async def test_accounting_is_exact(tmp_path, echo_task):
    records, backend = await _evaluate(tmp_path)
    # calls: row 0 one attempt; rows 1-4: attempt + reflection + retry, then one plain retry each
    assert len(backend.calls) == 1 + 4 * 3 + 4
    m = summarize_records(records)
    assert m["n"] == 5
    assert (m["first_try"]["count"], m["second_try"]["count"]) == (1, 3)
    assert m["gain"] == pytest.approx(2 / 5)
    assert m["first_try_failures"] == 4
    assert m["retry_success_after_reflection"]["count"] == 2
    c = m["control"]
    assert c["second_try"]["count"] == 3 and c["retry_success"]["count"] == 2
    assert c["gain"] == pytest.approx(2 / 5) and c["reflection_effect"] == pytest.approx(0.0)
    assert (c["reflect_only_successes"], c["control_only_successes"]) == (1, 1)
    assert c["mcnemar_p"] == 1.0
    assert m["first_try"]["ci95"] == list(wilson_interval(1, 5))
    assert m["first_try_categories"] == {"wrong": 3, "correct": 1, "no_answer": 1}
    assert m["second_try_categories"] == {"correct": 2, "wrong": 2}
    assert c["second_try_categories"] == {"correct": 2, "wrong": 2}
    assert m["end_reasons"] == {"retry_success": 2, "first_try_success": 1, "retries_exhausted": 2}
    # reflection lengths in scripted tokens (words): 3, 4, 4, 0
    refl = m["reflection_length"]
    assert refl["count"] == 4 and refl["mean_tokens"] == pytest.approx(11 / 4)
    assert refl["mean_tokens_when_retry_passed"] == pytest.approx(3.5)
    assert refl["mean_tokens_when_retry_failed"] == pytest.approx(2.0)
    # tokens: attempts 1+1+1+1+0, reflections 3+4+4+0, retries 1+1+1+1
    assert m["generated_tokens"] == 4 + 11 + 4
    assert c["generated_tokens"] == 1 + 1 + 1 + 1  # the shared attempt is not generated again


async def test_control_shares_the_failed_first_attempt(tmp_path, echo_task):
    records, _ = await _evaluate(tmp_path)
    assert records[0]["control"] is None  # first try passed: nothing to retry
    for rec in records[1:]:
        reflect, control = rec["reflect"]["messages"], rec["control"]["messages"]
        assert control[:2] == reflect[:2]  # same prompt, same failed attempt
        assert rec["control"]["offline_attempt"] and rec["control"]["rounds"][0]["reflection"] is None
        assert [m["content"] for m in control[2:3]] == [PLAIN_RETRY_PROMPT]
        assert [m["content"] for m in reflect if m["role"] == "user"][1:] == [
            GENERIC_REFLECTION_PROMPT,
            GENERIC_RETRY_PROMPT,
        ]


async def test_no_control(tmp_path, echo_task):
    records, backend = await _evaluate(tmp_path, control=False)
    assert len(backend.calls) == 1 + 4 * 3
    assert summarize_records(records)["control"] is None


def _script_module(tmp_path, monkeypatch, calls_file):
    (tmp_path / "eval_script.py").write_text(
        "import json\n"
        "from r3_plugin.backends.scripted import table_script\n"
        f"TABLE = {json.dumps(TABLE)}\n"
        "_inner = table_script(TABLE)\n"
        "def script(messages):\n"
        f"    with open({str(calls_file)!r}, 'a') as f:\n"
        "        f.write('x\\n')\n"
        "    return _inner(messages)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))


def test_cli_run_writes_reports_and_resumes(tmp_path, monkeypatch, echo_task):
    calls = tmp_path / "calls.txt"
    _script_module(tmp_path, monkeypatch, calls)
    data = write_parquet(echo_rows(5), tmp_path / "test.parquet")
    out = tmp_path / "runs" / "vanilla"
    args = ["evaluate", "run", "--backend", "scripted", "--model", "eval_script:script", "--data", str(data),
            "--output-dir", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]
    assert (m["first_try"]["count"], m["second_try"]["count"], m["control"]["second_try"]["count"]) == (1, 3, 3)
    assert summary["run"]["label"] == "vanilla" and summary["run"]["rows"] == 5
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert sorted(e["key"] for e in episodes) == list(range(5))
    assert all(e["reflect"]["messages"][0]["content"].startswith("say") for e in episodes)
    report = (out / "report.md").read_text()
    assert "| first try | 20.0% [3.6, 62.4] |" in report
    assert "| second try (reflect, retry) | 60.0% [23.1, 88.2] |" in report
    assert "what the reflection adds** | +0.0 pts" in report
    assert "Example: a retry that succeeded after reflecting" in report
    n_calls = len(calls.read_text().splitlines())
    assert n_calls == 17

    # a second run of the same command resumes: no new model calls, same numbers
    assert main(args) == 0
    assert len(calls.read_text().splitlines()) == n_calls
    again = json.loads((out / "summary.json").read_text())
    assert again["metrics"] == summary["metrics"] and again["run"]["resumed_rows"] == 5

    # a torn last line (killed mid-write) is dropped and that row re-evaluated
    text = (out / "episodes.jsonl").read_text()
    lines = text.splitlines(keepends=True)
    (out / "episodes.jsonl").write_text("".join(lines[:-1]) + lines[-1][:20])
    assert main(args) == 0
    assert len([json.loads(x) for x in (out / "episodes.jsonl").read_text().splitlines()]) == 5
    assert json.loads((out / "summary.json").read_text())["metrics"] == summary["metrics"]

    # other parameters: refused unless --restart
    assert main([*args, "--temperature", "0.7"]) == 2

    # --verifier judges with another registered task (prompts stay the rows'); unknown names fail fast
    register_task("r3_accept_all", lambda r, gt, e=None: VerifyResult(True, "correct"), replace_existing=True)
    try:
        lenient = tmp_path / "runs" / "lenient"
        assert main([*args[:-2], str(lenient), "--no-progress", "--verifier", "r3_accept_all"]) == 0
        assert json.loads((lenient / "summary.json").read_text())["metrics"]["first_try"]["count"] == 5
    finally:
        unregister_task("r3_accept_all")
    assert main([*args, "--restart", "--verifier", "no_such_verifier"]) == 2


def _fake_summary(label, first, second, control, n=100):
    def rate(k):
        lo, hi = wilson_interval(k, n)
        return {"count": k, "n": n, "rate": k / n, "ci95": [lo, hi]}

    return {
        "run": {"label": label, "model": f"m-{label}", "data": "/d/countdown/test.parquet", "data_sha256": "abc"},
        "metrics": {
            "n": n,
            "first_try": rate(first),
            "second_try": rate(second),
            "gain": (second - first) / n,
            "reflection_length": {"mean_tokens": 12.5},
            "control": {"second_try": rate(control), "reflection_effect": (second - control) / n},
        },
    }


def test_compare_table_and_chart(tmp_path):
    runs = []
    for label, nums in (("a", (6, 10, 8)), ("b", (35, 45, 38))):
        d = tmp_path / label
        d.mkdir()
        (d / "summary.json").write_text(json.dumps(_fake_summary(label, *nums)))
        runs.append(str(d))
    out = tmp_path / "cmp"
    rc = main(["evaluate", "compare", *runs, "--labels", "vanilla,trained", "--output-dir", str(out)])
    assert rc == 0
    md = (out / "compare.md").read_text()
    assert "| data | vanilla 1st | vanilla 2nd | trained 1st | trained 2nd |" in md
    assert "| countdown | 6.0 | 10.0 | 35.0 | 45.0 |" in md
    assert "| vanilla | 100 | 6.0% [" in md and "+2.0 pts" in md and "+7.0 pts" in md
    rows = json.loads((out / "compare.json").read_text())["runs"]
    assert [r["label"] for r in rows] == ["vanilla", "trained"]
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["evaluate", "compare", *runs, "--labels", "one", "--output-dir", str(out)]) == 2
    assert main(["evaluate", "compare", str(tmp_path / "nope"), "--output-dir", str(out)]) == 2


def test_chart_text_names_data_n_and_wilson_intervals():
    from r3_plugin.tools.evaluation.compare import plot_text

    text = plot_text([_fake_summary("a", 40, 60, 45, n=200), _fake_summary("b", 50, 90, 52, n=200)], ["sft", "r3"])
    assert text["title"] == "R3 first vs second try: countdown/test.parquet (n=200)"
    assert text["ticks"] == ["sft\n(n=200)", "r3\n(n=200)"]
    assert "95% Wilson" in text["caption"]
    uneven = plot_text([_fake_summary("a", 1, 2, 1, n=100), _fake_summary("b", 1, 2, 1, n=300)], ["x", "y"])
    assert "(n=100/300)" in uneven["title"]


def test_compare_prints_where_the_chart_and_table_went(tmp_path, capsys):
    runs = []
    for label in ("a", "b"):
        (tmp_path / label).mkdir()
        (tmp_path / label / "summary.json").write_text(json.dumps(_fake_summary(label, 10, 20, 12)))
        runs.append(str(tmp_path / label))
    out = tmp_path / "cmp"
    assert main(["evaluate", "compare", *runs, "--output-dir", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"chart (95% Wilson intervals): {out / 'compare.png'}" in printed
    assert str(out / "compare.md") in printed
    assert (out / "compare.png").read_bytes()[:4] == b"\x89PNG"


def test_compare_without_matplotlib_says_what_to_install(tmp_path, monkeypatch, capsys):
    import sys

    d = tmp_path / "a"
    d.mkdir()
    (d / "summary.json").write_text(json.dumps(_fake_summary("a", 1, 2, 2)))
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    assert main(["evaluate", "compare", str(d), "--output-dir", str(tmp_path / "o")]) == 3
    assert "pip install 'r3-plugin[plot]'" in capsys.readouterr().err
    assert (tmp_path / "o" / "compare.md").exists()


def test_countdown_scripted_with_real_verifier(tmp_path, monkeypatch):
    """Real countdown verifier: correct equations pass, wrong ones get the verifier's categories."""
    from r3_plugin.tools.data.countdown import build_countdown

    paths = build_countdown(tmp_path / "cd", max_rows=10, test_size=6, seed=1, progress=False)
    test = pd.read_parquet(paths["test"])
    table = {}
    for i, (prompt, extra) in enumerate(zip(test["prompt"], test["extra_info"], strict=True)):
        good = f"<answer> {extra['solution']} </answer>"
        if i % 2 == 0:
            table[prompt[-1]["content"]] = {"attempt": good}
        else:
            table[prompt[-1]["content"]] = {"attempt": "<answer> 1 + 1 </answer>", "reflection": "use the numbers",
                                            "retry": good, "plain_retry": "no tags"}  # fmt: skip
    (tmp_path / "cd_script.py").write_text(
        f"from r3_plugin.backends.scripted import table_script\nscript = table_script({json.dumps(table)})\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "run"
    args = ["evaluate", "run", "--backend", "scripted", "--model", "cd_script:script", "--data", str(paths["test"]),
            "--output-dir", str(out), "--no-progress"]  # fmt: skip
    assert main(args) == 0
    m = json.loads((out / "summary.json").read_text())["metrics"]
    n = len(test)
    assert m["first_try"]["count"] == (n + 1) // 2 and m["second_try"]["count"] == n
    assert m["control"]["second_try"]["count"] == (n + 1) // 2
    assert m["control"]["second_try_categories"] == {"no_answer": n // 2}
    assert m["first_try_categories"]["correct"] == (n + 1) // 2
    assert m["first_try_categories"]["wrong_numbers"] == n // 2


def test_tiny_model_end_to_end(tmp_path, tiny_model_dir):
    from r3_plugin.tools.data.countdown import build_countdown

    paths = build_countdown(tmp_path / "cd", max_rows=8, test_size=3, seed=0, progress=False)
    out = tmp_path / "tiny"
    args = ["evaluate", "run", "--model", str(tiny_model_dir), "--backend", "hf", "--data", str(paths["test"]),
            "--output-dir", str(out), "--max-tokens", "6", "--no-progress"]  # fmt: skip
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]
    assert m["n"] == 3 and m["first_try"]["count"] == 0  # a random tiny model writes no valid equation
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    for ep in episodes:
        r, c = ep["reflect"], ep["control"]
        assert len(r["messages"]) == 6 and r["rounds"][0]["reflection"]["num_tokens"] <= 6
        assert c["messages"][1] == r["messages"][1]  # the control retries the same first attempt
    stats = summary["run"]["backend_stats"]
    assert stats["requests"] == 3 * 3 + 3 and stats["batches"] < stats["requests"]  # requests were batched
    assert m["generated_tokens"] + m["control"]["generated_tokens"] == stats["generated_tokens"]
    assert (out / "report.md").read_text().startswith("# R3 evaluation: tiny")
