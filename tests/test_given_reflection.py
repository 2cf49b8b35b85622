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
"""``r3 evaluate run --given-reflection``: the reflection is written from the row's ground truth,
the model's retry follows it, and the run says so (summary, resume check), with the shipped model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from r3_plugin.tools.cli import main
from r3_plugin.tools.data.countdown import build_countdown, model_distribution, model_prompts
from r3_plugin.tools.demo_trainer import embedded_model
from r3_plugin.tools.evaluation.given_reflection import given_reflection

TEMPLATE = "I must use each of {numbers} exactly once to make {target}."


def test_the_template_is_filled_from_the_ground_truth():
    assert given_reflection(TEMPLATE, {"target": 68, "numbers": [26, 42]}) == (
        "I must use each of [26, 42] exactly once to make 68."
    )
    assert given_reflection("The answer is {ground_truth}.", "42") == "The answer is 42."
    with pytest.raises(ValueError, match=r"no field 'count'.*fields: ground_truth, numbers, target"):
        given_reflection("{count}", {"target": 1, "numbers": [1]})
    with pytest.raises(ValueError, match="bad template"):
        given_reflection("{0}", {"target": 1})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    model = embedded_model()
    root = tmp_path_factory.mktemp("given")
    paths = build_countdown(
        root, train_size=8, test_size=24, seed=1, progress=False, distribution=model_distribution(model)
    )
    return Path(paths["test"])


def _evaluate(data: Path, out: Path, *extra: str) -> int:
    model = embedded_model()
    args = ["evaluate", "run", "--model", str(model), "--backend", "hf", "--data", str(data),
            "--output-dir", str(out), "--max-tokens", "64", "--seed", "0", "--no-progress", *extra]  # fmt: skip
    for key, text in model_prompts(model).items():
        args += ["--" + key.replace("_", "-"), text]
    return main(args)


def test_the_retry_follows_the_given_reflection(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture):
    out = tmp_path / "eval"
    assert _evaluate(data, out, "--given-reflection", TEMPLATE) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["run"]["given_reflection"] == TEMPLATE
    failures = 0
    for line in (out / "episodes.jsonl").read_text().splitlines():
        record = json.loads(line)
        ep = record["reflect"]
        if ep["first_try_passed"]:
            continue
        failures += 1
        gt = record["ground_truth"]
        assistant = [m["content"] for m in ep["messages"] if m["role"] == "assistant"]
        assert assistant[1] == f"I must use each of {gt['numbers']} exactly once to make {gt['target']}."
        assert "<answer>" in assistant[2]  # the model's own retry, right after the given reflection
        (rnd,) = ep["rounds"]
        assert rnd["reflection"]["num_tokens"] == 0  # written, not generated
        assert ep["generated_tokens"] == ep["first_attempt"]["num_tokens"] + rnd["retry"]["num_tokens"]
        assert record["control"] is not None  # the control still retries without any reflection
    assert failures > 0
    # another template is another experiment: resuming into the same directory is refused
    capsys.readouterr()
    assert _evaluate(data, out, "--given-reflection", "Check the numbers.") == 2
    assert "given_reflection" in capsys.readouterr().err


def test_a_template_with_an_unknown_field_is_refused_before_any_episode(data: Path, tmp_path: Path, capsys):
    out = tmp_path / "bad"
    assert _evaluate(data, out, "--given-reflection", "Use {nums}.") == 2
    err = capsys.readouterr().err
    assert "row 0: --given-reflection: no field 'nums'" in err and "numbers, target" in err
    assert not (out / "episodes.jsonl").exists()
