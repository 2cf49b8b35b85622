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
"""docs/adding-a-task.md works as written: its Python block is run as a user's my_task.py."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "adding-a-task.md"
REPO = GUIDE.parents[1]

#: A scripted "model": wrong first attempt, a reflection, then the right answer.
MY_POLICY = """\
import re

from r3_plugin.tools.backends.scripted import first_user_text, infer_turn


def answer(messages):
    turn = infer_turn(messages)
    if turn == "attempt":
        return "it is 0 km"
    if turn == "reflection":
        return "I forgot to divide by 1000."
    metres = int(re.search(r"Convert (\\d+) m", first_user_text(messages)).group(1))
    return f"{metres / 1000:g} km"
"""


def _python_block() -> str:
    blocks = re.findall(r"```python\n(.*?)```", GUIDE.read_text(encoding="utf-8"), flags=re.S)
    assert len(blocks) == 1, "the guide has one Python block, the whole task"
    return blocks[0]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(cwd), str(REPO), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def test_the_guide_is_about_twenty_lines():
    code = [line for line in _python_block().splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert len(code) <= 22, len(code)


def test_the_guides_task_builds_verifies_and_evaluates(tmp_path):
    (tmp_path / "my_task.py").write_text(_python_block())
    (tmp_path / "my_policy.py").write_text(MY_POLICY)

    built = _run(["my_task.py"], tmp_path)
    assert built.returncode == 0, built.stderr
    train = pd.read_parquet(tmp_path / "data" / "unit_conversion" / "train.parquet")
    test = pd.read_parquet(tmp_path / "data" / "unit_conversion" / "test.parquet")
    assert (len(train), len(test)) == (16, 4)
    assert list(train.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info", "agent_name"]
    row = test.iloc[0]
    assert row["data_source"] == "unit_conversion" and row["agent_name"] == "r3_agent"
    assert row["prompt"][0]["role"] == "user" and row["reward_model"]["style"] == "rule"

    # the verifier, through verl's reward entry point, on the parquet's own rows
    probe = (
        "import pandas as pd, my_task\n"
        "from r3_plugin.reward import compute_score\n"
        "df = pd.read_parquet('data/unit_conversion/test.parquet')\n"
        "gt = [r['ground_truth'] for r in df['reward_model']]\n"
        "print([compute_score('unit_conversion', f'so {g}', g)['score'] for g in gt],"
        " compute_score('unit_conversion', 'no idea', gt[0])['category'])\n"
    )
    scored = _run(["-c", probe], tmp_path)
    assert scored.returncode == 0, scored.stderr
    assert scored.stdout.split() == ["[1.0,", "1.0,", "1.0,", "1.0]", "wrong_value"]

    # r3 evaluate, the scripted backend playing a model that fails, reflects and then passes
    args = ["--import", "my_task", "--backend", "scripted", "--model", "my_policy:answer"]
    data = ["--data", "data/unit_conversion/test.parquet", "--output-dir", "runs/guide", "--no-progress"]
    ev = _run(["-m", "r3_plugin", "evaluate", "run", *args, *data], tmp_path)
    assert ev.returncode == 0, ev.stderr
    m = json.loads((tmp_path / "runs" / "guide" / "summary.json").read_text())["metrics"]
    assert (m["n"], m["first_try"]["count"], m["second_try"]["count"]) == (4, 0, 4)
