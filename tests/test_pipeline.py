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
"""The whole CPU pipeline: r3 data -> r3 mine -> offline R3 rollouts through verl's worker."""

from __future__ import annotations

import asyncio
import contextlib
import io

import pandas as pd

from r3_plugin.local.local_rollout import compose_config, load_batch, local_overrides, make_worker, rollout
from r3_plugin.local.local_server import ScriptedTokenServer, turn_script
from r3_plugin.tools.cli import main

REFLECTION = "I must use every number exactly once."


def test_mined_failures_feed_the_offline_recipe(tmp_path, tiny_model_dir, tiny_tokenizer):
    data_dir = tmp_path / "countdown"
    assert main(["data", "countdown", "--max-rows", "6", "--test-size", "2", "--output-dir", str(data_dir),
                 "--no-progress"]) == 0  # fmt: skip
    failures = data_dir / "failures.parquet"
    with contextlib.redirect_stderr(io.StringIO()):
        rc = main(["mine", "--model", str(tiny_model_dir), "--backend", "hf", "--data", str(data_dir / "train.parquet"),
                   "--output", str(failures), "--samples", "2", "--max-tokens", "8", "--no-progress"])  # fmt: skip
    assert rc == 0
    mined = pd.read_parquet(failures)
    assert len(mined) == 4  # a random tiny model fails every countdown task
    attempts = [info["r3_failed_attempt"] for info in mined["extra_info"]]
    assert all(isinstance(a, str) for a in attempts)

    overrides = local_overrides(str(tiny_model_dir), n=2, prompt_length=512, response_length=256) + [
        f"data.train_files={failures}",
        "++r3.reflection_max_tokens=32",
        "++r3.retry_max_tokens=32",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
    ]
    config = compose_config(overrides, recipe="r3_countdown_offline")
    assert config.r3.mode == "offline"
    server = ScriptedTokenServer(tiny_tokenizer, turn_script("unused", REFLECTION, "<answer> 1 + 1 </answer>"))
    worker = make_worker(config, server)
    with contextlib.redirect_stdout(io.StringIO()):
        batch = load_batch(str(failures), config, tiny_tokenizer)
    out = asyncio.run(rollout(worker, batch, n=2))
    assert len(out) == 8 and len(server.calls) == 16  # reflection + retry per session: no new attempt
    for i in range(len(out)):
        prompt_mask = out.batch["attention_mask"][i][: out.batch["prompts"].shape[1]].bool()
        prompt = tiny_tokenizer.decode(out.batch["prompts"][i][prompt_mask].tolist())
        response = tiny_tokenizer.decode(out.batch["responses"][i].tolist())
        # Each group reflects on its own stored failure, which opens the response; the prompt is the task.
        assert attempts[i // 2] not in prompt and response.startswith(attempts[i // 2])
        credited = out.batch["responses"][i][out.batch["response_mask"][i].bool()].tolist()
        assert tiny_tokenizer.decode(credited) == REFLECTION + "<|im_end|>"
