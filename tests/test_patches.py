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
"""The upstream patch series: committed == generated, and it applies to verl 0.9.1 and passes its tests.

The apply test copies the installed verl package (and the ``tests`` package verl's wheel ships)
into a scratch git repository laid out like verl's, runs ``git am`` on ``patches/*.patch``, and
runs the patched-in tests plus verl's own CPU tests of the touched packages on that copy, with
external verl plugins (this one included) switched off.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from r3_plugin.upstream import layout
from r3_plugin.upstream.patches import run as patches_run
from r3_plugin.upstream.series import check_series, generate_series, write_series

ROOT = Path(__file__).resolve().parents[1]
PATCHES = ROOT / "patches"
VERL_ENV = {"VERL_USE_EXTERNAL_PLUGINS": "none", "R3_PLUGIN_DISABLE": "1"}

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


@pytest.fixture(scope="module")
def series() -> dict[str, bytes]:
    return generate_series(sources=layout.Sources.locate(ROOT))  # the checkout, also when the wheel is installed


@needs_git
def test_committed_series_is_current(series):
    problems = check_series(PATCHES, series)
    assert not problems, "patches/ is out of date; run `r3 patches generate`:\n" + "\n".join(problems)


@needs_git
def test_generation_is_byte_stable_and_check_reports_drift(series, tmp_path, capsys):
    assert generate_series(sources=layout.Sources.locate(ROOT)) == series
    assert [name[:5] for name in series] == ["0001-", "0002-", "0003-", "0004-", "0005-"]
    for data in series.values():
        head = data.decode().splitlines()[:3]
        assert head[0].startswith("From 0000000000000000000000000000000000000000 ")
        assert head[1] == f"From: {layout.AUTHOR_NAME} <{layout.AUTHOR_EMAIL}>"
        assert head[2] == "Date: Thu, 1 Jan 2026 00:00:00 +0000"

    out = tmp_path / "patches"
    write_series(out, series)
    (out / "README.md").write_text("kept")
    assert check_series(out, series) == []
    first, second = sorted(out.glob("*.patch"))[:2]
    first.write_bytes(first.read_bytes().replace(b"countdown", b"countup", 1))
    second.unlink()
    (out / "0009-stale.patch").write_text("old")
    problems = check_series(out, series)
    assert any(p.startswith(f"differs: {first.name}") and "countup" in p for p in problems)
    assert f"missing: {second.name} (generated, not committed)" in problems
    assert "stale: 0009-stale.patch (committed, no longer generated)" in problems

    args = type("Args", (), {"patches_command": "check", "repo": str(ROOT), "dir": str(out)})()
    assert patches_run(args) == 1
    assert "out of date (3 file(s))" in capsys.readouterr().err
    write_series(out, series)  # regeneration repairs it and keeps other files
    assert check_series(out, series) == [] and (out / "README.md").read_text() == "kept"
    assert not (out / "0009-stale.patch").exists()


def _git(repo: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    ident = ["-c", "user.name=verl-maintainer", "-c", "user.email=maintainer@example.com"]
    return subprocess.run(["git", *ident, *args], cwd=repo, env=env, capture_output=True, text=True)


def _touched_verl_cpu_tests(repo: Path) -> list[str]:
    """verl's own *_on_cpu.py tests that import a package the series modifies."""
    pattern = re.compile("|".join(re.escape(p) for p in layout.TOUCHED_PACKAGES))
    found = []
    for path in sorted((repo / "tests").rglob("*_on_cpu.py")):
        rel = path.relative_to(repo).as_posix()
        if "r3" not in path.name and pattern.search(path.read_text(encoding="utf-8", errors="replace")):
            found.append(rel)
    return found


@pytest.fixture(scope="module")
def patched_verl(tmp_path_factory) -> Path:
    """A git repository with verl 0.9.1's package tree (as installed) and the series applied by git am."""
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    site = layout.installed_verl_root()
    repo = tmp_path_factory.mktemp("verl-repo")
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(site / "verl", repo / "verl", ignore=ignore)
    if (site / "tests" / "experimental" / "agent_loop").is_dir():  # verl's wheel ships its tests package
        shutil.copytree(site / "tests", repo / "tests", ignore=ignore)
    assert _git(repo, "init", "-q").returncode == 0
    _git(repo, "add", "-A")
    assert _git(repo, "commit", "-q", "-m", "verl 0.9.1 (installed package tree)").returncode == 0
    patches = sorted(str(p) for p in PATCHES.glob("*.patch"))
    assert patches, f"no patches in {PATCHES}; run `r3 patches generate`"
    applied = _git(repo, "am", "--keep-non-patch", *patches)
    assert applied.returncode == 0, f"git am failed:\n{applied.stdout}\n{applied.stderr}"
    return repo


@pytest.mark.slow
def test_series_applies_cleanly_with_one_commit_per_topic(patched_verl):
    log = _git(patched_verl, "log", "--format=%s", "-6").stdout.splitlines()
    assert [s.split("]")[0] + "]" for s in log[:5]] == ["[ci]", "[doc]", "[trainer]", "[rollout]", "[reward]"]
    assert _git(patched_verl, "status", "--porcelain").stdout == ""
    for rel in (
        layout.SCORER_PATH,
        layout.AGENT_PKG_INIT_PATH,
        layout.EXAMPLE_CONFIG_PATH,
        layout.RUN_SCRIPT_PATH,
        layout.PREPROCESS_PATH,
        layout.DOCS_PATH,
        layout.AGENT_LOOP_TEST_PATH,
        layout.SCORER_TEST_PATH,
    ):
        assert (patched_verl / rel).is_file(), rel
    assert os.access(patched_verl / layout.RUN_SCRIPT_PATH, os.X_OK)
    docs = (patched_verl / layout.DOCS_PATH).read_text()
    assert "response_mask" in docs and "No GPU training run of this code has been measured yet" in docs


@pytest.mark.slow
def test_patched_in_and_verl_cpu_tests_pass_on_the_patched_tree(patched_verl):
    ours = sorted(p.relative_to(patched_verl).as_posix() for p in patched_verl.rglob("test_*r3*_on_cpu.py"))
    ours.append(layout.SCORER_TEST_PATH)
    verl_own = _touched_verl_cpu_tests(patched_verl)
    assert len(ours) == 4 and verl_own, (ours, verl_own)
    env = {**os.environ, **VERL_ENV, "PYTHONPATH": str(patched_verl)}
    # the subprocess must import the patched copy, not the installed verl
    where = subprocess.run(
        [sys.executable, "-c", "import importlib.util as u; print(u.find_spec('verl').origin)"],
        cwd=patched_verl,
        env=env,
        capture_output=True,
        text=True,
    )
    assert where.stdout.strip() == str(patched_verl / "verl" / "__init__.py")
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--asyncio-mode=auto", *ours, *verl_own],
        cwd=patched_verl,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    tail = (done.stdout + done.stderr)[-4000:]
    assert done.returncode == 0, tail
    assert re.search(r"\d+ passed", done.stdout) and " failed" not in done.stdout, tail


VERL_RUFF = """\
[tool.ruff]
line-length = 120
target-version = "py310"

[tool.ruff.lint]
isort = {known-first-party = ["verl"]}
select = ["E", "F", "UP", "B", "I", "G"]
ignore = ["F405", "F403", "E731", "B007", "UP032", "G004", "UP045", "UP035"]
"""


@pytest.mark.slow
def test_generated_python_passes_verls_ruff_settings(patched_verl, tmp_path):
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(ruff).exists():
        pytest.skip("ruff is not installed")
    changed = _git(patched_verl, "diff", "--name-only", "HEAD~5", "HEAD").stdout.split()
    files = [str(patched_verl / f) for f in changed if f.endswith(".py")]
    config = tmp_path / "ruff.toml"
    config.write_text(VERL_RUFF.replace("[tool.ruff]\n", "").replace("[tool.ruff.lint]", "[lint]"))
    lint = subprocess.run([ruff, "check", "--config", str(config), *files], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = subprocess.run([ruff, "format", "--check", "--config", str(config), *files], capture_output=True, text=True)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


@pytest.mark.slow
def test_example_preprocessing_writes_the_plugin_builders_rows(patched_verl, tmp_path):
    pytest.importorskip("datasets")
    from r3_plugin.tools.data.countdown import CountdownTask, task_row

    raw = tmp_path / "raw"
    raw.mkdir()
    rows = [{"target": 46, "nums": [3, 7, 25]}, {"target": 24, "nums": [3, 3, 8, 8]}, {"target": 10, "nums": [1, 9]}]
    pd.DataFrame(rows * 4).to_parquet(raw / "train.parquet")
    out = tmp_path / "out"
    script = patched_verl / layout.PREPROCESS_PATH
    args = ["--local_dataset_path", str(raw), "--local_save_dir", str(out), "--test_size", "3"]
    env = {**os.environ, **VERL_ENV, "PYTHONPATH": str(patched_verl), "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, str(script), *args], env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    train, test = pd.read_parquet(out / "train.parquet"), pd.read_parquet(out / "test.parquet")
    assert (len(train), len(test)) == (9, 3)
    for split, frame in (("train", train), ("test", test)):
        for i, row in enumerate(frame.to_dict("records")):
            gt = row["reward_model"]["ground_truth"]
            numbers = [int(n) for n in gt["numbers"]]
            expected = task_row(CountdownTask(int(gt["target"]), tuple(numbers)), split, i)
            assert [dict(m) for m in row["prompt"]] == expected["prompt"]
            for key in ("data_source", "ability", "agent_name"):
                assert row[key] == expected[key]
            assert row["reward_model"]["style"] == "rule" and {"target": int(gt["target"]), "numbers": numbers} in [
                {"target": r["target"], "numbers": r["nums"]} for r in rows
            ]
            assert row["extra_info"]["split"] == split and row["extra_info"]["index"] == i
