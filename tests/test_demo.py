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
"""`r3 demo --quick`: the in-process episode view shows trained spans, rewards and advantages.

The default `r3 demo` (verl's real trainer) is checked on a real run in tests/test_trainer_cpu.py.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys


def _run_demo(*args: str, tmp_path) -> str:
    env = {**os.environ, "R3_CACHE_DIR": str(tmp_path)}  # build the embedded tiny model afresh
    proc = subprocess.run(
        [sys.executable, "-m", "r3_plugin", "demo", "--quick", "--no-color", *args],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_demo_scripted_policy_shows_credit_on_reflections(tmp_path):
    out = _run_demo("--policy", "scripted", "--tasks", "3", "--group-size", "4", "--seed", "1", tmp_path=tmp_path)
    assert "+recipe=r3_countdown" in out and "r3_agent" in out
    assert "[[" in out and "]]" in out  # the trained span is marked
    assert "r3/first_try_success_rate" in out and "r3/retry_success_rate" in out
    # with seed 1 the oracle both fixes and fails answers inside one group: non-zero advantages
    advantages = [float(line.split("advantage ")[1].split()[0]) for line in out.splitlines() if "advantage " in line]
    assert any(a > 0 for a in advantages) and any(a < 0 for a in advantages)


def test_demo_scripted_policy_is_reproducible_and_explains_its_marker(tmp_path):
    args = ("--policy", "scripted", "--tasks", "3", "--group-size", "4", "--seed", "3")
    first = _run_demo(*args, tmp_path=tmp_path)
    assert _run_demo(*args, tmp_path=tmp_path) == first  # same --seed, same table
    assert "[[...]] marks the trained tokens" in first
    assert "1 sessions" not in first and "trajectorys" not in first
    # the config block's values share one column
    config = [line for line in first.splitlines() if line.startswith("  ") and "  " in line.strip()][:7]
    columns = {re.match(r"  \S+\s{2,}", line).end() for line in config}
    assert len(config) == 7 and len(columns) == 1, config


def test_demo_default_is_the_shipped_evidence_model_on_its_own_tasks(tmp_path):
    """The package ships the evidence pipeline's SFT model (r3_plugin/assets/evidence-model); the
    demo poses it tasks of the distribution it was trained on, so it actually attempts, reflects and
    retries: its answers are well-formed and some of them pass."""
    out = _run_demo("--tasks", "4", "--group-size", "4", "--seed", "0", tmp_path=tmp_path)
    assert "assets/evidence-model" in out and "(2 numbers in 1..50, targets in 1..100)" in out
    assert "r3/episodes" in out and "<answer>" in out
    rewards = [float(line.split("reward ")[1].split()[0]) for line in out.splitlines() if "reward " in line]
    assert rewards, out


def test_demo_tiny_model_when_asked(tmp_path):
    from r3_plugin.local.tiny_model import build_tiny_model

    model = build_tiny_model(tmp_path / "tiny")
    out = _run_demo("--model", str(model), "--tasks", "1", "--group-size", "2", "--max-tokens", "8", tmp_path=tmp_path)
    assert "(3 or 4 numbers in 1..100, targets in 1..100)" in out  # the paper's distribution
    assert "reward 0" in out and "Every advantage is 0" in out
    assert "r3/episodes" in out


def test_demo_refuses_bad_sizes_naming_the_flag(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "r3_plugin", "demo", "--steps", "0"], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 2 and "--steps must be >= 1" in proc.stderr
