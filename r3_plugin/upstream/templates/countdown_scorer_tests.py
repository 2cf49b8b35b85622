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
"""verl.utils.reward_score.countdown: response-only scoring, the default_compute_score branch, and
adversarial answers (nothing the model writes is evaluated as code; every answer is bounded work)."""
# ruff: noqa: I001

import json

import numpy as np
import pytest

from verl.utils.reward_score import default_compute_score
from verl.utils.reward_score.countdown import CATEGORIES, compute_score, countdown_verify, evaluate_expression

GT = {"target": 46, "numbers": [3, 7, 25]}
RIGHT = "<think> 3 * 7 = 21, 21 + 25 = 46 </think> <answer> 25 + 3 * 7 </answer>"


def test_response_only_string_is_scored():
    # verl's reward managers pass the decoded response alone: no prompt, no "Assistant:" marker.
    assert compute_score(RIGHT, GT) == 1.0
    assert compute_score("<answer> 25 + 3 + 7 </answer>", GT) == 0.0
    assert compute_score("no answer tags at all: 25 + 3 * 7", GT) == 0.0
    # the last <answer> span counts
    assert compute_score("<answer> 1 </answer> ... <answer> (25 + 3 * 7) </answer>", GT) == 1.0
    assert compute_score("<answer> 25 + 3 * 7 </answer> ... <answer> 0 </answer>", GT) == 0.0


@pytest.mark.parametrize("data_source", ["countdown", "countdown_3to4"])
def test_default_compute_score_dispatch(data_source):
    score = default_compute_score(data_source, RIGHT, GT)
    assert isinstance(score, float) and score == 1.0
    assert default_compute_score(data_source, "<answer> 25 * 3 * 7 </answer>", GT) == 0.0


def test_ground_truth_as_parquet_returns_it():
    # parquet gives numpy arrays and numpy integers; TinyZero's rows say "nums"; JSON strings also work
    assert compute_score(RIGHT, {"target": np.int64(46), "numbers": np.array([25, 7, 3])}) == 1.0
    assert compute_score(RIGHT, {"target": 46, "nums": [3, 7, 25]}) == 1.0
    assert compute_score(RIGHT, json.dumps(GT)) == 1.0
    with pytest.raises(ValueError, match="target"):
        compute_score(RIGHT, {"numbers": [3, 7, 25]})


@pytest.mark.parametrize(
    "answer, category",
    [
        ("25 + 7 * 3 + 3 - 3", "wrong_numbers"),  # a number used twice
        ("25 + 21", "wrong_numbers"),  # numbers not given
        ("25 * 3 + 7", "wrong_target"),
        ("25 + 3 * 7 / (7 - 7)", "wrong_numbers"),
        ("(25 + 3 * 7", "malformed_expression"),
        ("", "no_answer"),
    ],
)
def test_failure_categories(answer, category):
    result = countdown_verify(f"<answer>{answer}</answer>", GT)
    assert not result.passed and result.score == 0.0
    assert result.category == category and result.category in CATEGORIES


def test_exact_arithmetic():
    # 8 / (3 - 8 / 3) is exactly 24; floating point gives 23.999999999999996
    assert compute_score("<answer>8 / (3 - 8 / 3)</answer>", {"target": 24, "numbers": [3, 3, 8, 8]}) == 1.0
    assert evaluate_expression("8 / (3 - 8 / 3)") == 24
    assert countdown_verify("<answer>3 / (7 - 7) + 25</answer>", GT).category in ("division_by_zero", "wrong_numbers")


@pytest.mark.parametrize(
    "answer",
    [
        "9**9**9**9",  # would never finish under eval
        "3 ** 7 ** 25",
        "(" * 5000 + "25 + 3 * 7" + ")" * 5000,  # deeper than Python's parser allows
        "-" * 100_000 + "25 + 3 * 7",
        "1" * 100_000,
        "25 + 3 * 7 " * 10_000,
        "__import__('os').system('echo pwned')",
        "().__class__.__bases__[0].__subclasses__()",
        "25 + 3 * 7; import os",
        "25 + 3 * 7 # comment",
        "25.0 + 3 * 7",
        "25 + 3 * 7 // 1",
        "0x19 + 3 * 7",
        "25 + 3 * 7 == 46",
        "２５ + 3 * 7",  # full-width digits
    ],
)
def test_adversarial_answers_score_zero_without_evaluation(answer):
    assert compute_score(f"<answer>{answer}</answer>", GT) == 0.0


def test_huge_responses_are_bounded():
    text = "<answer>" * 50_000 + "25 + 3 * 7" + "</answer>" * 50_000
    assert compute_score(text, GT) in (0.0, 1.0)
    assert compute_score("x" * 1_000_000 + "<answer>25 + 3 * 7</answer>", GT) == 1.0
