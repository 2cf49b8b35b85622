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
"""Countdown verifier: TinyZero semantics with exact arithmetic, no eval, bounded on any input."""

from __future__ import annotations

import importlib.util
import json
import re
import warnings
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from r3_plugin.policy.tasks import CORRECT, NO_ANSWER, VERIFIER_ERROR, get_task
from r3_plugin.policy.verifiers.countdown import (
    ANSWER_TOO_LONG,
    DIVISION_BY_ZERO,
    MALFORMED_EXPRESSION,
    MAX_ANSWER_CHARS,
    MAX_NESTING,
    WRONG_NUMBERS,
    WRONG_TARGET,
    countdown_verify,
    evaluate_expression,
    extract_answer,
    parse_ground_truth,
)

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_countdown_verifier.py"


def _load_bench():
    spec = importlib.util.spec_from_file_location("r3_bench_countdown_verifier", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()

GT = {"target": 24, "numbers": [2, 3, 4]}


# ---------------------------------------------------------------------------------------------- basics
@pytest.mark.parametrize(
    ("response", "category"),
    [
        ("<think>2*3=6, 6*4=24</think>\n<answer>2 * 3 * 4</answer>", CORRECT),
        ("<answer> (4 * (3 * 2)) </answer>", CORRECT),
        ("<answer>4 / (1 / (2 * 3))</answer>", WRONG_NUMBERS),
        ("<answer>(2 + 3) * 4</answer>", WRONG_TARGET),
        ("<answer>2 * 3 * 4 * 1</answer>", WRONG_NUMBERS),
        ("<answer>2 * 3 * 3</answer>", WRONG_NUMBERS),
        ("<answer>23 * 4</answer>", WRONG_NUMBERS),  # digits glued together
        ("<answer>2 * 3 * 4 = 24</answer>", MALFORMED_EXPRESSION),
        ("<answer>2 x 3 x 4</answer>", MALFORMED_EXPRESSION),
        ("<answer>2 * 3 * 4)</answer>", MALFORMED_EXPRESSION),
        ("<answer>((2 * 3 * 4)</answer>", MALFORMED_EXPRESSION),
        ("<answer>2 * 3 4</answer>", MALFORMED_EXPRESSION),
        ("<answer>2 * 3 * 4 +</answer>", MALFORMED_EXPRESSION),
        ("<answer>(2)(3)*4</answer>", MALFORMED_EXPRESSION),
        ("<answer>02 * 3 * 4</answer>", MALFORMED_EXPRESSION),  # Python rejects leading zeros
        ("<answer>2 ** 3 * 4</answer>", MALFORMED_EXPRESSION),
        ("<answer>4 // 2 * 3</answer>", MALFORMED_EXPRESSION),
        ("<answer>2.0 * 3 * 4</answer>", MALFORMED_EXPRESSION),
        ("<answer>2 * 3\n* 4</answer>", MALFORMED_EXPRESSION),  # a line break ends a Python expression
        ("<answer>(2 * 3\n* 4)</answer>", CORRECT),  # ... except inside parentheses
        ("<answer>\n2 * 3 * 4\n</answer>", CORRECT),
        ("<answer>-(-2) * 3 * 4</answer>", CORRECT),
        ("<answer>+2 * -3 * -4</answer>", CORRECT),
        ("<answer>4 / (2 - 2) * 3</answer>", WRONG_NUMBERS),
        ("2 * 3 * 4", NO_ANSWER),
        ("<answer>2 * 3 * 4", NO_ANSWER),
        ("<answer>   </answer>", NO_ANSWER),
        ("<answer>1</answer> then <answer>2*3*4</answer>", CORRECT),
        ("<answer>2*3*4</answer> then <answer>2+3+4</answer>", WRONG_TARGET),
        ("<answer>2*3*4</answer> then <answer>2+3+4", CORRECT),  # an unclosed last tag is ignored
    ],
)
def test_categories(response, category):
    result = countdown_verify(response, GT)
    assert result.category == category, result
    assert result.passed == (category == CORRECT)


def test_division_and_exact_fractions():
    gt = {"target": 24, "numbers": [8, 3, 8, 3]}
    assert countdown_verify("<answer>8 / (3 - 8 / 3)</answer>", gt).passed  # needs 1/3 exactly
    assert countdown_verify("<answer>8 / (3 - 3) + 8</answer>", gt).category == DIVISION_BY_ZERO
    result = countdown_verify("<answer>8 / 3 + 8 + 3</answer>", gt)
    assert result.category == WRONG_TARGET and "41/3" in result.detail
    result = countdown_verify("<answer>-8 / 6</answer>", {"target": 24, "numbers": [8, 6]})
    assert result.category == WRONG_TARGET and "-4/3" in result.detail


def test_extracted_answer_and_detail():
    result = countdown_verify("<answer> (2 + 3) * 4 </answer>", GT)
    assert result.answer == "(2 + 3) * 4"
    assert "20" in result.detail and "24" in result.detail


def test_ground_truth_formats():
    response = "<answer>2*3*4</answer>"
    assert countdown_verify(response, {"target": 24, "nums": [4, 3, 2]}).passed  # TinyZero's key
    assert countdown_verify(response, {"target": np.int64(24), "numbers": np.array([2, 3, 4])}).passed
    assert countdown_verify(response, json.dumps(GT)).passed
    assert countdown_verify(response, {"target": 24.0, "numbers": [2.0, 3, 4]}).passed
    assert countdown_verify("<answer>3/2</answer>", {"target": 1.5, "numbers": [3, 2]}).passed
    assert parse_ground_truth({"target": 5, "numbers": [3, 1, 2]}) == (5, [1, 2, 3])


@pytest.mark.parametrize(
    ("gt", "message"),
    [
        ({"numbers": [1, 2]}, "target"),
        ({"target": 3}, "numbers"),
        ({"target": 3, "numbers": "1,2"}, "list of integers"),
        ({"target": 3, "numbers": [1.5, 2]}, "integer"),
        ({"target": 3, "numbers": [True, 2]}, "integer"),
        ({"target": 3, "numbers": [-1, 2]}, "non-negative"),
        ({"target": 3, "numbers": []}, "empty"),
        ("not json", "not JSON"),
        ([1, 2, 3], "dict"),
    ],
)
def test_bad_ground_truth_is_a_clear_error(gt, message):
    with pytest.raises(ValueError, match=message):
        countdown_verify("<answer>1+2</answer>", gt)
    # Through the registry it becomes a verifier_error result instead of killing a training step.
    result = get_task("countdown").verify("<answer>1+2</answer>", gt)
    assert result.category == VERIFIER_ERROR and not result.passed


def test_registered_task_and_prompts():
    task = get_task("countdown")
    assert task.verifier is countdown_verify
    assert get_task("countdown_3to4").verifier is countdown_verify
    assert task.reflection_prompt == (
        "You tried solving the problem and got the wrong answer. Reflect on what went wrong and write a short "
        "explanation that will help you do better next time."
    )
    assert "<answer>" in task.retry_prompt and "<think>" in task.retry_prompt
    assert CORRECT in task.metadata["categories"]


def test_evaluate_expression_helper():
    assert evaluate_expression("8 / (3 - 8 / 3)") == 24
    assert evaluate_expression("1/99/98/97") == Fraction(1, 99 * 98 * 97)
    assert evaluate_expression("-(-(1)) - -2") == 3
    with pytest.raises(ZeroDivisionError):
        evaluate_expression("1/(2-2)")
    for bad in ("2**3", "1.5", "(1", "1 2", "", "05", "1+"):
        with pytest.raises(ValueError):
            evaluate_expression(bad)


# ---------------------------------------------------------------------------------------------- extraction
_TAG_PIECES = st.sampled_from(["<answer>", "</answer>", "a", "1+2", " ", "\n", "<", ">", "answer", "/"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_TAG_PIECES, max_size=14).map("".join))
def test_extract_answer_matches_tinyzero_regex(text):
    matches = list(re.finditer(r"<answer>(.*?)</answer>", text, re.DOTALL))
    expected = matches[-1].group(1) if matches else None
    assert extract_answer(text) == expected


# ---------------------------------------------------------------------------------------------- properties
@st.composite
def expression_trees(draw, max_leaves: int = 5):
    """(text, exact value or None on division by zero, the numbers used) for a random expression."""
    n = draw(st.integers(1, max_leaves))
    numbers = draw(st.lists(st.integers(0, 120), min_size=n, max_size=n))

    def build(nums):
        if len(nums) == 1:
            text, value = str(nums[0]), Fraction(nums[0])
        else:
            cut = draw(st.integers(1, len(nums) - 1))
            (lt, lv), (rt, rv) = build(nums[:cut]), build(nums[cut:])
            op = draw(st.sampled_from("+-*/"))
            lt = f"({lt})" if draw(st.booleans()) or len(nums[:cut]) > 1 else lt
            rt = f"({rt})" if len(nums[cut:]) > 1 or draw(st.booleans()) else rt
            sep = draw(st.sampled_from(["", " ", "\t"]))
            text = f"{lt}{sep}{op}{sep}{rt}"
            if lv is None or rv is None or (op == "/" and rv == 0):
                value = None
            else:
                value = {"+": lv + rv, "-": lv - rv, "*": lv * rv, "/": lv / rv if op == "/" else None}[op]
        if draw(st.integers(0, 9)) == 0:  # an occasional unary sign
            sign = draw(st.sampled_from("+-"))
            text = f"{sign}({text})"
            if value is not None and sign == "-":
                value = -value
        return text, value

    text, value = build(numbers)
    return text, value, numbers


@settings(max_examples=400, deadline=None)
@given(expression_trees(), st.integers(-3, 3))
def test_random_expressions_are_scored_exactly(tree, offset):
    text, value, numbers = tree
    target = (value.numerator if value is not None and value.denominator == 1 else 7) + offset
    result = countdown_verify(f"<think>...</think><answer>{text}</answer>", {"target": target, "numbers": numbers})
    if value is None:
        assert result.category == DIVISION_BY_ZERO
    else:
        assert result.passed == (value == target), (text, value, target, result)
        assert result.category == (CORRECT if value == target else WRONG_TARGET)
        assert evaluate_expression(text) == value


def _explained_disagreement(expr: str, target: int, numbers: list[int], ours) -> bool:
    if "." in expr or "//" in expr:
        return True  # TinyZero admits decimals and floor division; the paper's four operators do not
    if "/" in expr and np.prod([float(max(n, 1)) for n in numbers]) >= 1e9:
        return True  # float rounding in the eval rule once magnitudes are large
    if ours.category == ANSWER_TOO_LONG or "nested deeper" in ours.detail or "unary signs" in ours.detail:
        return True
    if ours.category == WRONG_TARGET:
        value = evaluate_expression(expr)
        return value != target and abs(value - target) < Fraction(1, 100_000)
    return False


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.text(alphabet="0123456789+-*/() .\n", min_size=1, max_size=40), st.integers(-2, 2))
def test_agrees_with_tinyzero_eval_rule_where_both_decide(expr, offset):
    assume("**" not in expr)  # hangs the eval rule (9**9**9**9)
    numbers = [int(n) for n in re.findall(r"\d+", expr)]
    assume(numbers and all(len(str(n)) <= 12 for n in numbers))
    try:
        value = evaluate_expression(expr)
        target = round(value) + offset
    except (ValueError, ZeroDivisionError):
        target = offset
    gt = {"target": target, "numbers": numbers}
    response = f"<answer>{expr}</answer>"
    ours = countdown_verify(response, gt)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        theirs = bench.tinyzero_score(response, gt) == 1.0
    if ours.passed != theirs:
        assert _explained_disagreement(expr.strip(), target, numbers, ours), (expr, gt, ours, theirs)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=300), st.lists(st.integers(0, 10**6), min_size=1, max_size=6), st.integers())
def test_never_raises_on_arbitrary_text(text, numbers, target):
    for response in (text, f"<answer>{text}</answer>", f"<answer>{text}"):
        result = countdown_verify(response, {"target": target, "numbers": numbers})
        assert result.category in {
            CORRECT,
            NO_ANSWER,
            ANSWER_TOO_LONG,
            MALFORMED_EXPRESSION,
            WRONG_NUMBERS,
            DIVISION_BY_ZERO,
            WRONG_TARGET,
        }


# ---------------------------------------------------------------------------------------------- adversarial
ADVERSARIAL = [
    ("exponent tower", "<answer>9**9**9**9</answer>", {"target": 1, "numbers": [9, 9, 9, 9]}, MALFORMED_EXPRESSION),
    (
        "power in parens",
        "<answer>(9**(9**(9**9)))</answer>",
        {"target": 1, "numbers": [9, 9, 9, 9]},
        MALFORMED_EXPRESSION,
    ),
    ("huge literal", "<answer>" + "9" * 999 + "</answer>", {"target": 1, "numbers": [9]}, WRONG_NUMBERS),
    ("million digits", "<answer>" + "9" * 10**6 + "</answer>", {"target": 1, "numbers": [9]}, ANSWER_TOO_LONG),
    (
        "huge products",
        "<answer>" + "*".join(["99999999999999999999999999999999"] * 20) + "</answer>",
        {"target": 1, "numbers": [10**32 - 1] * 20},
        WRONG_TARGET,
    ),
    ("division by zero", "<answer>1/(2-2)</answer>", {"target": 1, "numbers": [1, 2, 2]}, DIVISION_BY_ZERO),
    ("zero over zero", "<answer>0/0</answer>", {"target": 0, "numbers": [0, 0]}, DIVISION_BY_ZERO),
    (
        "deep nesting",
        "<answer>" + "(" * 10**5 + "1" + ")" * 10**5 + "</answer>",
        {"target": 1, "numbers": [1]},
        ANSWER_TOO_LONG,
    ),
    (
        "nesting over cap",
        "<answer>" + "(" * (MAX_NESTING + 1) + "1" + ")" * (MAX_NESTING + 1) + "</answer>",
        {"target": 1, "numbers": [1]},
        MALFORMED_EXPRESSION,
    ),
    (
        "nesting at cap",
        "<answer>" + "(" * MAX_NESTING + "1" + ")" * MAX_NESTING + "</answer>",
        {"target": 1, "numbers": [1]},
        CORRECT,
    ),
    ("unary spam", "<answer>" + "-" * 500 + "1</answer>", {"target": 1, "numbers": [1]}, MALFORMED_EXPRESSION),
    (
        "padding",
        "<answer>1 +" + " " * MAX_ANSWER_CHARS + "2</answer>",
        {"target": 3, "numbers": [1, 2]},
        ANSWER_TOO_LONG,
    ),
    ("megabyte of text", "x" * 2**20 + "<answer>1</answer>", {"target": 1, "numbers": [1]}, CORRECT),
    ("megabyte of tags", "<answer>" * 2**17 + "</answer>" * 2**17, {"target": 1, "numbers": [1]}, ANSWER_TOO_LONG),
    ("megabyte of closers", "</answer>" * 2**17, {"target": 1, "numbers": [1]}, NO_ANSWER),
    (
        "python code",
        "<answer>__import__('os').system('echo hi')</answer>",
        {"target": 0, "numbers": [0]},
        MALFORMED_EXPRESSION,
    ),
    ("lambda", "<answer>(lambda: 1)()</answer>", {"target": 1, "numbers": [1]}, MALFORMED_EXPRESSION),
    ("nul byte", "<answer>1\x00+2</answer>", {"target": 3, "numbers": [1, 2]}, MALFORMED_EXPRESSION),
    ("arabic digits", "<answer>\u0661+2</answer>", {"target": 3, "numbers": [1, 2]}, MALFORMED_EXPRESSION),
    ("fullwidth digits", "<answer>\uff11+2</answer>", {"target": 3, "numbers": [1, 2]}, MALFORMED_EXPRESSION),
    ("lone surrogate", "<answer>1+2\ud800</answer>", {"target": 3, "numbers": [1, 2]}, MALFORMED_EXPRESSION),
    ("vertical tab", "<answer>1\x0b+2</answer>", {"target": 3, "numbers": [1, 2]}, MALFORMED_EXPRESSION),
    ("exponent notation", "<answer>1e5</answer>", {"target": 100000, "numbers": [1, 5]}, MALFORMED_EXPRESSION),
    ("empty parens", "<answer>()</answer>", {"target": 0, "numbers": [1]}, WRONG_NUMBERS),
]


@pytest.mark.parametrize(("name", "response", "gt", "category"), ADVERSARIAL, ids=[a[0] for a in ADVERSARIAL])
def test_adversarial_inputs(hang_guard, name, response, gt, category):
    result = countdown_verify(response, gt)
    assert result.category == category, result
    assert result.answer is None or len(result.answer) <= MAX_ANSWER_CHARS


def test_non_utf8_bytes_through_the_task(hang_guard):
    task = get_task("countdown")
    result = task.verify(b"<answer>2*3*4</answer>\xff\xfe\x80", GT)
    assert result.passed
    result = task.verify(b"\xff<answer>2*\xc3(3*4)</answer>", GT)
    assert result.category == MALFORMED_EXPRESSION
    assert task.verify(None, GT).category == NO_ANSWER
    assert task.verify(12345, GT).category == NO_ANSWER
