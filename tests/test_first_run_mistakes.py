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
"""What a new user trips on with ``r3 mine`` / ``r3 evaluate`` (issue #16): each slip gets one clear line
naming the flag, file or row, and leaves nothing behind that blocks the corrected rerun."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from r3_echo_fixtures import ECHO, echo_rows, register_echo, unregister_echo, write_parquet

from r3_plugin.policy.tasks import VerifyResult
from r3_plugin.tools.cli import main
from r3_plugin.tools.journal import Journal

R3 = str(Path(sys.executable).parent / "r3")

# README.md, "Verifiers and bringing your own task", verbatim.
MY_TASKS = """\
from r3_plugin import VerifyResult, register_task


@register_task("unit_conversion", reflection_prompt="You converted wrongly. Reflect on what went wrong ...")
def verify(response: str, ground_truth, extra_info=None) -> VerifyResult:
    ok = response.strip().endswith(str(ground_truth))
    return VerifyResult(ok, "correct" if ok else "wrong_value", answer=response[-40:])
"""

MY_POLICY = """\
from r3_plugin.backends.scripted import infer_turn


def answer(messages):
    return "I think about it" if infer_turn(messages) == "reflection" else "it is 2 km"
"""


def _own_task_dir(tmp_path: Path) -> Path:
    (tmp_path / "my_tasks.py").write_text(MY_TASKS)
    (tmp_path / "my_policy.py").write_text(MY_POLICY)
    rows = [
        {
            "data_source": "unit_conversion",
            "prompt": [{"role": "user", "content": f"convert {i} m"}],
            "reward_model": {"style": "rule", "ground_truth": "2 km" if i % 2 else "3 km"},
            "extra_info": {"index": i},
        }
        for i in range(4)
    ]
    write_parquet(rows, tmp_path / "units.parquet")
    return tmp_path


def _r3(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """The installed ``r3`` console script, run from ``cwd`` as a user would."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    return subprocess.run([R3, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_readme_own_task_commands_work_from_the_current_directory(tmp_path):
    """`--import my_tasks` and `--backend scripted --model my_policy:answer` find ./my_tasks.py, ./my_policy.py."""
    cwd = _own_task_dir(tmp_path)
    common = ["--import", "my_tasks", "--backend", "scripted", "--model", "my_policy:answer", "--data", "units.parquet"]
    ev = _r3(["evaluate", "run", *common, "--output-dir", "runs/mine", "--no-progress"], cwd)
    assert ev.returncode == 0, ev.stderr
    m = json.loads((cwd / "runs" / "mine" / "summary.json").read_text())["metrics"]
    assert (m["n"], m["first_try"]["count"]) == (4, 2)
    mine = _r3(["mine", *common, "--samples", "2", "--no-progress"], cwd)
    assert mine.returncode == 0, mine.stderr
    assert len(pd.read_parquet(cwd / "failures.parquet")) == 2

    # and the mistakes around them get one line each, no traceback
    cases = {
        ("--import", "my_taks"): "--import my_taks: no module named 'my_taks' in the current directory",
        ("--model", "my_policy:anser"): "scripted backend: my_policy has no attribute 'anser'",
        ("--model", "my_polcy:answer"): "--model my_polcy:answer: no module named 'my_polcy'",
    }
    (cwd / "broken_policy.py").write_text("def answer(messages):\n    return 1\n\nundefined_name\n")
    cases[("--model", "broken_policy:answer")] = "broken_policy.py:4: NameError: name 'undefined_name'"
    for (flag, value), message in cases.items():
        args = list(common)
        args[args.index(flag) + 1] = value
        run = _r3(["evaluate", "run", *args, "--output-dir", "runs/bad"], cwd)
        assert run.returncode != 0
        assert message in run.stderr and "Traceback" not in run.stderr, run.stderr
        assert len(run.stderr.strip().splitlines()) == 1, run.stderr
        assert not (cwd / "runs" / "bad").exists()


@pytest.fixture()
def echo_task():
    register_echo()
    yield ECHO
    unregister_echo()


@pytest.fixture()
def echo_script(tmp_path, monkeypatch):
    (tmp_path / "echo_script.py").write_text(
        "from r3_plugin.backends.scripted import first_user_text\n"
        "def script(messages):\n"
        "    return 'it is ' + first_user_text(messages).split()[-1] if '1' in first_user_text(messages) else 'no'\n"
    )
    monkeypatch.chdir(tmp_path)
    return "echo_script:script"


def test_wrong_model_path_is_named_before_anything_is_written(tmp_path, capsys, echo_task, echo_script):
    data = write_parquet(echo_rows(3), tmp_path / "test.parquet")
    out = tmp_path / "runs" / "a"
    for command in (
        ["evaluate", "run", "--data", str(data), "--output-dir", str(out)],
        ["mine", "--data", str(data), "--output", str(tmp_path / "f" / "failures.parquet")],
    ):
        for backend in ("hf", "vllm"):
            assert main([*command, "--model", "/wrong/path", "--backend", backend]) == 2
            err = capsys.readouterr().err
            assert "--model /wrong/path: no such directory" in err and len(err.strip().splitlines()) == 1
    assert not out.exists() and not (tmp_path / "f").exists()


def test_a_failed_start_leaves_no_journal_that_blocks_the_rerun(tmp_path, monkeypatch, echo_task, echo_script):
    import r3_plugin.tools.evaluate as evaluate
    import r3_plugin.tools.mine as mine

    def cannot_load(args, sampling=None):
        raise OSError(f"cannot load {args.model}")

    data = write_parquet(echo_rows(3), tmp_path / "test.parquet")
    out = tmp_path / "runs" / "a"
    failures = tmp_path / "failures.parquet"
    for module in (evaluate, mine):
        monkeypatch.setattr(module, "make_backend", cannot_load)
    with pytest.raises(OSError):
        main(["evaluate", "run", "--data", str(data), "--output-dir", str(out), "--model", "org/typo"])
    with pytest.raises(OSError):
        main(["mine", "--data", str(data), "--output", str(failures), "--model", "org/typo"])
    assert os.listdir(out) == [] and not list(tmp_path.glob("failures.parquet.journal*"))
    monkeypatch.undo()
    monkeypatch.chdir(tmp_path)
    fixed = ["--backend", "scripted", "--model", echo_script, "--no-progress"]
    assert main(["evaluate", "run", "--data", str(data), "--output-dir", str(out), *fixed]) == 0
    assert main(["mine", "--data", str(data), "--output", str(failures), "--samples", "1", *fixed]) == 0


def test_an_empty_journal_never_blocks_other_parameters(tmp_path):
    path = tmp_path / "j.jsonl"
    Journal.open(path, {"model": "/wrong/path"}).close()
    with Journal.open(path, {"model": "/right/path"}) as journal:
        assert not journal.resumed
        journal.append({"key": 0})
    with pytest.raises(Exception, match="different parameters"):
        Journal.open(path, {"model": "/third/path"})


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["mine", "--limit", "-5"], "argument --limit: must be a positive integer (>= 1), got -5"),
        (["mine", "--samples", "0"], "argument --samples: must be a positive integer (>= 1), got 0"),
        (["evaluate", "run", "--concurrency", "0"], "argument --concurrency: must be a positive integer (>= 1), got 0"),
        (["evaluate", "run", "--limit", "-5"], "argument --limit: must be a positive integer (>= 1), got -5"),
        (["evaluate", "run", "--max-reflections", "-1"], "argument --max-reflections: must be >= 0, got -1"),
        (["evaluate", "run", "--max-tokens", "0"], "argument --max-tokens: must be a positive integer (>= 1), got 0"),
    ],
)
def test_bad_counts_name_the_flag(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--model", "m", "--data", str(tmp_path / "d.parquet"), "--output-dir", str(tmp_path / "o")])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def _fragile_verify(response, ground_truth, extra_info=None):
    if ground_truth == "boom":
        raise ValueError("ground truth 'boom' is not a number")
    return VerifyResult(ground_truth in response, "correct" if ground_truth in response else "wrong")


@pytest.fixture()
def fragile_rows(tmp_path):
    from r3_plugin.policy.tasks import register_task, unregister_task

    register_task("fragile", _fragile_verify, replace_existing=True)
    rows = echo_rows(4)
    for row in rows:
        row["data_source"] = "fragile"
    rows[2]["reward_model"]["ground_truth"] = "boom"
    rows[2]["extra_info"]["index"] = 17
    yield write_parquet(rows, tmp_path / "fragile.parquet")
    unregister_task("fragile")


def test_a_broken_row_is_named_once_and_kept_out_of_the_results(tmp_path, capsys, fragile_rows, echo_script):
    out = tmp_path / "runs" / "e"
    args = ["--backend", "scripted", "--model", echo_script, "--no-progress", "--data", str(fragile_rows)]
    assert main(["evaluate", "run", *args, "--output-dir", str(out)]) == 0
    err = capsys.readouterr().err
    named = f"{fragile_rows}, row 2 (extra_info.index 17): the verifier for 'fragile' failed (ValueError"
    assert err.count(named) == 1 and err.count("failed (") == 1, err
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]
    assert (m["n"], m["broken_rows"], m["first_try"]["count"]) == (3, 1, 1)  # only row 1 says a "1"
    assert "verifier_error" not in m["first_try_categories"]
    assert summary["broken"] == [
        {"row": 2, "index": 17, "data_source": "fragile", "error": "ValueError: ground truth 'boom' is not a number"}
    ]
    assert "broken rows (the verifier raised; not in n) | 1" in (out / "report.md").read_text()

    failures = tmp_path / "failures.parquet"
    assert main(["mine", *args, "--output", str(failures), "--samples", "4", "--samples-per-round", "2"]) == 0
    err = capsys.readouterr().err
    assert err.count(named) == 1 and err.count("failed (") == 1, err
    kept = pd.read_parquet(failures)
    assert sorted(info["index"] for info in kept["extra_info"]) == [0, 3]  # not 17
    mined = json.loads((tmp_path / "failures.summary.json").read_text())
    assert (mined["queries_seen"], mined["broken_rows"], mined["failures"]) == (3, 1, 2)
    assert "verifier_error" not in mined["failure_categories"]
