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
"""The shipped evidence checkpoint (r3_plugin/assets/evidence-model): in the installed package,
small, with the command and seed that made it, and a model that really attempts, reflects and
retries on tasks of its own distribution, so the demo's rewards vary."""

from __future__ import annotations

import json
from pathlib import Path

from r3_plugin.tools.cli import main
from r3_plugin.tools.data.countdown import build_countdown, model_distribution, model_prompts
from r3_plugin.tools.demo_trainer import embedded_model

MAX_BYTES = 16 * 2**20


def test_the_package_ships_the_evidence_model_with_its_recipe():
    model = embedded_model()
    assert model.parts[-2:] == ("assets", "evidence-model"), model  # not the tiny random fallback
    size = sum(p.stat().st_size for p in model.iterdir())
    assert size <= MAX_BYTES, f"{size} bytes"
    meta = json.loads((model / "r3_evidence.json").read_text())
    assert meta["seed"] == 0 and "--recipe cpu" in meta["command"] and "--seed 0" in meta["command"]
    assert model_distribution(model) == {"operand_counts": [2], "number_range": [1, 50], "target_range": [1, 100]}
    readme = (model / "README.md").read_text()
    assert "python -m r3_plugin.evidence.sft --recipe cpu --output-dir" in readme  # stage 1
    assert "python -m r3_plugin.evidence.sft --recipe cpu-fix" in readme and "--init-from" in readme  # stage 2
    assert "--recipe cpu-fix" in meta["command"] and "--init-from" in meta["command"]
    # it learnt episodes whose retry follows the reflection at once: the demo and evaluations pose them so
    assert model_prompts(model) == {"retry_prompt": ""}


def test_the_embedded_model_attempts_reflects_and_retries(tmp_path: Path):
    model = embedded_model()
    paths = build_countdown(
        tmp_path / "data", train_size=8, test_size=24, seed=1, progress=False, distribution=model_distribution(model)
    )
    out = tmp_path / "eval"
    args = ["evaluate", "run", "--model", str(model), "--backend", "hf", "--data", str(paths["test"]),
            "--output-dir", str(out), "--max-tokens", "64", "--seed", "0", "--no-progress"]  # fmt: skip
    for key, text in model_prompts(model).items():  # the episode as the model learnt it
        args += ["--" + key.replace("_", "-"), text]
    assert main(args) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["episode"]["retry_prompt"] == ""  # recorded, and part of the resume check
    m = summary["metrics"]
    # greedy first tries: some right, some wrong (a random model gets none; a perfect one leaves no failures)
    assert 0 < m["first_try"]["count"] < m["n"] == 24, m["first_try"]
    assert m["first_try_categories"].get("malformed_expression", 0) + m["first_try_categories"].get("no_answer", 0) <= 2
    for line in (out / "episodes.jsonl").read_text().splitlines():
        ep = json.loads(line)["reflect"]
        if ep["first_try_passed"]:
            continue
        turns = [msg["content"] for msg in ep["messages"] if msg["role"] == "assistant"]
        assert len(turns) == 3, turns  # attempt, reflection, retry
        roles = [msg["role"] for msg in ep["messages"]]
        assert roles[-2:] == ["assistant", "assistant"], roles  # --retry-prompt '': no user turn between
        reflection, retry = turns[1], turns[2]
        assert reflection and "<answer>" not in reflection, reflection
        assert "<answer>" in retry and "</answer>" in retry, retry
