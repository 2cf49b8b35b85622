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
"""The failure miner: exact sample accounting, the output parquet (same columns as the input,
failed attempt in extra_info), countdown + xlam fixtures, the tiny real model, and kill -9 resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from r3_echo_fixtures import ECHO, echo_rows, register_echo, unregister_echo, write_parquet

from r3_plugin.tools.backends.scripted import ScriptedBackend, first_user_text
from r3_plugin.tools.cli import main
from r3_plugin.tools.dataset_rows import DatasetError, read_task_rows
from r3_plugin.tools.journal import Journal, JournalMismatch
from r3_plugin.tools.mine import MineConfig, mine_rows, write_failures_parquet


@pytest.fixture()
def echo_task():
    register_echo()
    yield ECHO
    unregister_echo()


def _counting_script(fail_on: dict[str, set[int]]):
    """Answer correctly except on the listed call numbers (1-based) of each prompt."""
    calls: dict[str, int] = {}

    def script(messages):
        prompt = first_user_text(messages)
        calls[prompt] = calls.get(prompt, 0) + 1
        gt = prompt.split()[-1]
        return "no idea" if calls[prompt] in fail_on.get(prompt, set()) else f"it is {gt}"

    return script, calls


async def test_mine_counts_samples_exactly(tmp_path, echo_task):
    data = write_parquet(echo_rows(4), tmp_path / "train.parquet")
    rows = read_task_rows(data)
    # row 0 fails on its 3rd sample, row 1 never fails, row 2 fails at once, row 3 on its 5th (last) sample
    script, calls = _counting_script({"say 000": {3}, "say 002": {1, 2}, "say 003": {5}})
    backend = ScriptedBackend(script)
    config = MineConfig(samples=5, samples_per_round=1, concurrency=4)
    with Journal.open(tmp_path / "j.jsonl", {"t": 1}) as journal:
        await mine_rows(rows, backend, config, journal, progress=False)
        records = dict(journal.records)
    spent = {k: r["samples_spent"] for k, r in records.items()}
    assert spent == {0: 3, 1: 5, 2: 1, 3: 5}
    assert {k: r["failed"] for k, r in records.items()} == {0: True, 1: False, 2: True, 3: True}
    assert {k: r["samples_passed"] for k, r in records.items()} == {0: 2, 1: 5, 2: 0, 3: 4}
    assert records[0]["attempt"] == "no idea" and records[0]["category"] == "wrong"
    assert calls == {"say 000": 3, "say 001": 5, "say 002": 1, "say 003": 5}

    # rounds of 4: a failure on sample 3 still spends the whole round; samples caps the last round
    script, calls = _counting_script({"say 000": {3}, "say 003": {5}})
    config = MineConfig(samples=5, samples_per_round=4, concurrency=8)
    with Journal.open(tmp_path / "j2.jsonl", {"t": 2}) as journal:
        await mine_rows(rows, ScriptedBackend(script), config, journal, progress=False)
        records = dict(journal.records)
    assert {k: r["samples_spent"] for k, r in records.items()} == {0: 4, 1: 5, 2: 5, 3: 5}
    assert {k: r["failed"] for k, r in records.items()} == {0: True, 1: False, 2: False, 3: True}


def test_failures_parquet_keeps_input_columns(tmp_path, echo_task):
    data = write_parquet(echo_rows(3), tmp_path / "train.parquet")
    records = {
        0: {"failed": True, "attempt": "oops", "category": "wrong", "samples_spent": 2, "samples_passed": 1},
        1: {"failed": False, "samples_spent": 4, "samples_passed": 4},
        2: {"failed": True, "attempt": "", "category": "no_answer", "samples_spent": 1, "samples_passed": 0},
    }
    out = tmp_path / "failures.parquet"
    assert write_failures_parquet(str(data), records, str(out)) == 2
    src, got = pq.read_table(data), pq.read_table(out)
    assert got.column_names == src.column_names
    for col in ("data_source", "prompt", "reward_model", "agent_name"):
        assert got.schema.field(col).type == src.schema.field(col).type
    df = pd.read_parquet(out)
    assert list(df["extra_info"].map(lambda e: e["index"])) == [0, 2]
    assert df["extra_info"][0]["r3_failed_attempt"] == "oops"
    assert df["extra_info"][1]["r3_failed_category"] == "no_answer"
    # the miner's output is valid input again (offline mode / a second mining pass read it)
    rows = read_task_rows(out)
    assert rows[0].extra_info["r3_samples_spent"] == 2 and rows[1].ground_truth == "002"


def test_dataset_errors_name_file_and_row(tmp_path):
    bad = write_parquet([{"data_source": "x", "prompt": [{"role": "user", "content": "q"}]}], tmp_path / "a.parquet")
    with pytest.raises(DatasetError, match=r"a\.parquet.*reward_model"):
        read_task_rows(bad)
    rows = [
        {"data_source": "x", "prompt": [{"role": "user", "content": "q"}], "reward_model": {"ground_truth": "1"}},
        {"data_source": "x", "prompt": [], "reward_model": {"ground_truth": "1"}},
    ]
    with pytest.raises(DatasetError, match=r"b\.parquet, row 1: 'prompt'"):
        read_task_rows(write_parquet(rows, tmp_path / "b.parquet"))
    with pytest.raises(DatasetError, match="no such file"):
        read_task_rows(tmp_path / "missing.parquet")


def test_mine_cli_countdown_tiny_model(tmp_path, tiny_model_dir):
    """Synthetic countdown data, the transformers backend and the real countdown verifier, end to end."""
    from r3_plugin.tools.data.countdown import build_countdown

    paths = build_countdown(tmp_path / "countdown", max_rows=8, test_size=4, seed=0, progress=False)
    out = tmp_path / "countdown" / "failures.parquet"
    rc = main(
        ["mine", "--model", str(tiny_model_dir), "--backend", "hf", "--data", str(paths["train"]),
         "--samples", "3", "--samples-per-round", "2", "--max-tokens", "6", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    summary = json.loads((tmp_path / "countdown" / "failures.summary.json").read_text())
    n = len(pd.read_parquet(paths["train"]))
    # a random tiny model never writes a valid equation: every query fails in its first round of 2
    assert summary["queries_seen"] == n == summary["failures"]
    assert summary["samples_spent"] == 2 * n and summary["failure_rate"] == 1.0
    assert set(summary["failure_categories"]) <= {"no_answer", "malformed_expression", "wrong_numbers"}
    df = pd.read_parquet(out)
    assert len(df) == n and set(df["data_source"]) == {"countdown"}
    assert all(isinstance(e["r3_failed_attempt"], str) for e in df["extra_info"])
    assert all(e["r3_samples_spent"] == 2 for e in df["extra_info"])


def _write_xlam(path: Path) -> Path:
    tools = [
        {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {"city": {"type": "str", "description": "City name", "default": ""}},
        }
    ]
    records = [
        {
            "id": i,
            "query": f"What is the weather in {city}?",
            "tools": json.dumps(tools),
            "answers": json.dumps([{"name": "get_weather", "arguments": {"city": city}}]),
        }
        for i, city in enumerate(["Paris", "Oslo", "Lima", "Rome", "Kyiv", "Doha"])
    ]
    path.write_text(json.dumps(records))
    return path


@pytest.mark.parametrize("placement", ["system-prompt", "chat-template"])
def test_mine_function_calling_xlam_fixture(tmp_path, monkeypatch, placement):
    """A local xlam-format file through the function-calling builder and verifier."""
    from r3_plugin.policy.tasks import registered_tasks

    if "function_calling" not in registered_tasks():
        pytest.skip("the function_calling verifier is not registered yet")
    from r3_plugin.tools.data.function_calling import build_function_calling

    src = _write_xlam(tmp_path / "xlam.json")
    paths = build_function_calling(
        tmp_path / "fc", source=str(src), test_size=2, seed=0, tool_placement=placement, progress=False
    )
    rows = read_task_rows(paths["train"])
    if placement == "chat-template":  # tools travel to apply_chat_template(tools=...)
        assert "get_weather" in json.dumps(rows[0].tools)
    else:  # tools already rendered into the system message
        assert rows[0].tools is None and "get_weather" in rows[0].prompt[0]["content"]
    module = tmp_path / "fc_script.py"
    module.write_text(
        "import json, re\n"
        "from r3_plugin.backends.scripted import first_user_text\n"
        "def script(messages):\n"
        "    city = re.search(r'weather in (\\w+)', first_user_text(messages)).group(1)\n"
        "    wrong = city in ('Paris', 'Lima')\n"
        "    call = {'name': 'get_weather', 'arguments': {'city': 'London' if wrong else city}}\n"
        "    return '<tool_call>' + json.dumps(call) + '</tool_call>'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    out = tmp_path / "fc" / "failures.parquet"
    rc = main(
        ["mine", "--backend", "scripted", "--model", "fc_script:script", "--data", str(paths["train"]),
         "--output", str(out), "--samples", "4", "--no-progress"]
    )  # fmt: skip
    assert rc == 0
    train = pd.read_parquet(paths["train"])
    expected = sum(1 for p in train["prompt"] if any(c in p[-1]["content"] for c in ("Paris", "Lima")))
    df = pd.read_parquet(out)
    assert len(df) == expected
    assert all("London" in e["r3_failed_attempt"] for e in df["extra_info"])
    summary = json.loads((tmp_path / "fc" / "failures.summary.json").read_text())
    assert summary["failures"] == expected and summary["never_failed"] == len(train) - expected
    assert summary["samples_spent"] == expected * 4 + (len(train) - expected) * 4


# ------------------------------------------------------------------------------------------------ resume

_SLOW_SCRIPT = r"""
import os, time
from r3_plugin.policy.tasks import VerifyResult, register_task

def _verify(response, ground_truth, extra_info=None):
    return VerifyResult(str(ground_truth) in response, "correct" if str(ground_truth) in response else "wrong")

register_task("echo_test", _verify, replace_existing=True)

def script(messages):
    prompt = messages[0]["content"]
    with open(os.environ["R3_TEST_CALL_LOG"], "a") as f:
        f.write(f"{os.getpid()}\t{prompt}\n")
    time.sleep(float(os.environ.get("R3_TEST_DELAY", "0")))
    n = int(prompt.split()[-1])
    return "wrong answer" if n % 3 == 0 else f"answer {n:03d}"
"""


def _mine_cmd(data: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "r3_plugin", "mine", "--import", "slow_script", "--backend", "scripted",
        "--model", "slow_script:script", "--data", str(data), "--output", str(out),
        "--samples", "2", "--samples-per-round", "1", "--concurrency", "2", "--no-progress",
    ]  # fmt: skip


def test_mine_resumes_after_kill_9(tmp_path):
    (tmp_path / "slow_script.py").write_text(_SLOW_SCRIPT)
    data = write_parquet(echo_rows(24), tmp_path / "train.parquet")
    out = tmp_path / "run" / "failures.parquet"
    journal = Path(str(out) + ".journal.jsonl")
    log = tmp_path / "calls.log"
    env = {**os.environ, "PYTHONPATH": str(tmp_path), "R3_TEST_CALL_LOG": str(log), "R3_TEST_DELAY": "0.08"}

    proc = subprocess.Popen(_mine_cmd(data, out), env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        if journal.exists() and len(journal.read_text().splitlines()) >= 4:
            break
        assert proc.poll() is None, proc.stderr.read()
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not out.exists()  # nothing half-written: the parquet only appears at the very end
    done_first = {json.loads(line)["key"] for line in journal.read_text().splitlines() if line.endswith("}")}
    assert 4 <= len(done_first) < 24
    first_pid_calls = log.read_text().splitlines()

    result = subprocess.run(_mine_cmd(data, out), env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stderr

    lines = journal.read_text().splitlines()
    keys = [json.loads(line)["key"] for line in lines]
    assert sorted(keys) == list(range(24))  # every query exactly once: none lost, none redone
    second_calls = [c.split("\t")[1] for c in log.read_text().splitlines()[len(first_pid_calls) :]]
    redone = {int(p.split()[-1]) for p in second_calls} & done_first
    assert not redone

    # the resumed output equals an uninterrupted run's
    clean = tmp_path / "clean" / "failures.parquet"
    result = subprocess.run(_mine_cmd(data, clean), env=env | {"R3_TEST_DELAY": "0"}, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert pq.read_table(out).equals(pq.read_table(clean))
    assert len(pd.read_parquet(out)) == 8  # rows 0, 3, ..., 21 fail
    s1 = json.loads((tmp_path / "run" / "failures.summary.json").read_text())
    s2 = json.loads((tmp_path / "clean" / "failures.summary.json").read_text())
    for key in ("queries_seen", "failures", "samples_spent", "failure_rate", "failure_categories"):
        assert s1[key] == s2[key]
    assert s1["samples_spent"] == 8 * 1 + 16 * 2


def test_mine_refuses_to_resume_with_other_parameters(tmp_path, capsys):
    (tmp_path / "slow_script.py").write_text(_SLOW_SCRIPT)
    data = write_parquet(echo_rows(3), tmp_path / "train.parquet")
    out = tmp_path / "failures.parquet"
    os.environ.setdefault("R3_TEST_CALL_LOG", str(tmp_path / "calls.log"))
    sys.path.insert(0, str(tmp_path))
    try:
        args = _mine_cmd(data, out)[3:]
        assert main(args) == 0
        other = [a if a != "2" else "3" for a in args]  # --samples 3
        assert main(other) == 2
        assert "different parameters" in capsys.readouterr().err
        assert main([*other, "--restart"]) == 0
        with pytest.raises(JournalMismatch):
            Journal.open(str(out) + ".journal.jsonl", {"something": "else"})
    finally:
        sys.path.remove(str(tmp_path))
