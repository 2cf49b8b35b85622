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
"""Shared set-up for the tests that run verl's real ``main_ppo`` on CPU: data, the toy task, runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from r3_plugin.local.trainer_run import TrainerRun, main_ppo_command, run_env

TOY_PKG = Path(__file__).parent / "toy_task_pkg"
TOY_SOURCE = "r3_toy_parity"
if str(TOY_PKG) not in sys.path:  # this process reads the task's prompts and verifier too
    sys.path.insert(0, str(TOY_PKG))
import r3_toy_task  # noqa: E402,F401  (registers r3_toy_parity here, as verl's workers do via the env below)

#: Generous: a run on 2 busy cores takes 2-4 minutes; a hang must still end the test.
RUN_TIMEOUT_S = 900


def toy_env() -> dict[str, str]:
    """Load the toy task package in every verl process, the way verl loads a user's module."""
    path = os.pathsep.join(p for p in (str(TOY_PKG), os.environ.get("PYTHONPATH", "")) if p)
    return {"VERL_USE_EXTERNAL_MODULES": "r3_toy_task", "PYTHONPATH": path}


def build_toy_data(out: Path, *, train: int, test: int, seed: int = 0) -> Path:
    """``r3 data countdown`` (synthetic) turned into toy-task parquet files by the toy package's own CLI."""
    raw = out / "countdown"
    cli = [sys.executable, "-m", "r3_plugin", "data", "countdown", "--output-dir", str(raw)]
    cli += ["--train-size", str(train), "--test-size", str(test), "--seed", str(seed), "--no-progress"]
    subprocess.run(cli, check=True, capture_output=True)
    env = {**os.environ, **toy_env()}
    subprocess.run([sys.executable, "-m", "r3_toy_task", str(raw), str(out)], check=True, env=env, capture_output=True)
    return out


def trainer_run(
    out: Path, recipe: str, model: Path, data: Path, overrides: list[str], train_file: str = "train.parquet"
):
    command = main_ppo_command(
        recipe,
        model=model,
        train_files=data / train_file,
        val_files=data / "test.parquet",
        out_dir=out,
        overrides=overrides,
    )
    return TrainerRun(command, out, run_env(out, toy_env()))


def finish(run: TrainerRun) -> TrainerRun:
    rc = run.run(timeout=RUN_TIMEOUT_S)
    assert rc == 0, f"main_ppo exited {rc}; log tail:\n{run.log_tail()}"
    return run
