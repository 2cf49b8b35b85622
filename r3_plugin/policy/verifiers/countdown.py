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
"""Countdown verifier: TinyZero's rule, decided with exact arithmetic and without ``eval``.

The answer is the last ``<answer>...</answer>`` span (the same span as the last match of
``re.finditer(r"<answer>(.*?)</answer>", text, re.DOTALL)``). It passes when it is an arithmetic
expression over ``+ - * /`` and parentheses (unary signs allowed, as Python allows them) that uses
each given number exactly once and equals the target exactly.

The expression is checked and evaluated by a hand-written single-pass parser over exact rationals
(numerator/denominator integer pairs), so nothing the model writes is executed and every call is
bounded: answers longer than :data:`MAX_ANSWER_CHARS`, literals longer than
:data:`MAX_LITERAL_DIGITS`, nesting deeper than :data:`MAX_NESTING` and more than
:data:`MAX_UNARY_OPS` unary signs are rejected before any arithmetic, and ``**`` is never computed.

Where TinyZero's ``eval`` rule (character filter ``^[\\d+\\-*/().\\s]+$``, then ``eval``, then
``abs(value - target) < 1e-5``) decides an input, this verifier decides it the same way, except:

* a decimal point (``1.5*2``) or floor division (``7//2``): TinyZero admits them through its
  character filter; they are not among the four operators, so they are rejected here;
* a value within 1e-5 of the target but not equal to it (``1/99/98/97`` for target 0): TinyZero
  passes it, exact arithmetic does not; conversely, float rounding can make TinyZero fail an exactly
  correct answer once magnitudes approach 2**53 (never with countdown's numbers);
* answers over the length, nesting or unary-sign caps, which Python may still accept.
``**`` (which can hang TinyZero's scorer) and anything Python cannot parse are rejected by both.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Mapping
from fractions import Fraction
from math import gcd
from typing import Any

from r3_plugin.policy.tasks import CORRECT, NO_ANSWER, VerifyResult, register_task

__all__ = [
    "ANSWER_TOO_LONG",
    "CORRECT",
    "DIVISION_BY_ZERO",
    "MALFORMED_EXPRESSION",
    "NO_ANSWER",
    "WRONG_NUMBERS",
    "WRONG_TARGET",
    "CATEGORIES",
    "MAX_ANSWER_CHARS",
    "MAX_LITERAL_DIGITS",
    "MAX_NESTING",
    "MAX_UNARY_OPS",
    "REFLECTION_PROMPT",
    "RETRY_PROMPT",
    "countdown_verify",
    "evaluate_expression",
    "extract_answer",
    "parse_ground_truth",
]

# ---------------------------------------------------------------------------------------------- categories
MALFORMED_EXPRESSION = "malformed_expression"
WRONG_NUMBERS = "wrong_numbers"
WRONG_TARGET = "wrong_target"
DIVISION_BY_ZERO = "division_by_zero"
ANSWER_TOO_LONG = "answer_too_long"
#: Every category this verifier can return, in the order its checks run.
CATEGORIES = (NO_ANSWER, ANSWER_TOO_LONG, MALFORMED_EXPRESSION, WRONG_NUMBERS, DIVISION_BY_ZERO, WRONG_TARGET, CORRECT)

# ---------------------------------------------------------------------------------------------- limits
#: Longest answer (after stripping) that is parsed; a real equation is under 100 characters.
MAX_ANSWER_CHARS = 1000
#: Longest integer literal; also the limit for numbers in the ground truth.
MAX_LITERAL_DIGITS = 32
#: Deepest parenthesis nesting (Python's own parser stops at 200).
MAX_NESTING = 100
#: Most unary ``+``/``-`` signs in one answer.
MAX_UNARY_OPS = 100

REFLECTION_PROMPT = (
    "You tried solving the problem and got the wrong answer. Reflect on what went wrong and write a short "
    "explanation that will help you do better next time."
)
RETRY_PROMPT = (
    "Now try again. Show your work in <think> </think> tags and return the final equation in <answer> </answer> tags."
)

_OPEN = "<answer>"
_CLOSE = "</answer>"
_LEN_OPEN = len(_OPEN)
_LEN_CLOSE = len(_CLOSE)

# Characters Python's tokenizer accepts inside such an expression: ASCII digits, the operators,
# parentheses, and the whitespace it skips (newlines only inside parentheses, checked separately).
_ALLOWED = re.compile(r"[0-9+\-*/() \t\f\r\n]*")
_DIGITS = re.compile(r"[0-9]+")
_TOKENS = re.compile(r"[0-9]+|[-+*/()]")
_LEADING_ZERO = re.compile(r"(?<![0-9])0+[1-9]")
_single_line_fullmatch = re.compile(r"[0-9+\-*/() \t\f]*").fullmatch
_tokens_findall = _TOKENS.findall
_BAD_CHAR_HINTS = {".": "a decimal point", "=": "'='", "x": "'x'", "^": "'^'", "%": "'%'", ",": "','"}


# ---------------------------------------------------------------------------------------------- extraction
def extract_answer(text: str) -> str | None:
    """The content of the last ``<answer>...</answer>`` span, unstripped, or None.

    Same span as the last match of ``re.finditer(r"<answer>(.*?)</answer>", text, re.DOTALL)``,
    found with a constant number of ``str.find``/``rfind`` scans (linear, no backtracking).
    """
    last_close = text.rfind(_CLOSE)
    if last_close < 0:
        return None
    opener = text.rfind(_OPEN, 0, last_close)
    if opener < 0:
        return None
    # The last match ends at the first closer after the last opener that has a closer after it ...
    end = text.find(_CLOSE, opener + _LEN_OPEN)
    first = text.find(_OPEN, 0, opener)
    if first < 0:  # the usual case: a single opener
        return text[opener + _LEN_OPEN : end]
    # ... and starts at the first opener after the closer before that (where the scan resumes).
    prev_close = text.rfind(_CLOSE, 0, end)
    start = text.find(_OPEN, prev_close + _LEN_CLOSE, end) if prev_close >= 0 else first
    return text[start + _LEN_OPEN : end]


# ---------------------------------------------------------------------------------------------- ground truth
def _as_int(value: Any, what: str) -> int:
    if isinstance(value, bool):
        raise ValueError(f"countdown ground truth: {what} must be an integer, got {value!r}")
    try:
        return operator.index(value)  # int and numpy integers
    except TypeError:
        pass
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "item"):  # numpy float scalar holding an integer
        return _as_int(value.item(), what)
    if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
        return int(value)
    raise ValueError(f"countdown ground truth: {what} must be an integer, got {value!r}")


_LITERAL_LIMIT = 10**MAX_LITERAL_DIGITS


def parse_ground_truth(ground_truth: Any) -> tuple[int | Fraction, list[int]]:
    """``(target, sorted numbers)`` from ``{"target", "numbers"}`` (or TinyZero's ``"nums"``).

    Accepts a dict, a JSON string of one, and numpy arrays / numpy integers as parquet returns them.
    Raises ValueError naming the problem: a bad ground truth is a data bug, not a model failure.
    """
    if type(ground_truth) is dict:  # fast path: plain ints in a list, as written by the data builder
        target = ground_truth.get("target")
        numbers = ground_truth.get("numbers")
        if numbers is None:
            numbers = ground_truth.get("nums")
        if type(target) is int and type(numbers) is list and numbers:
            for n in numbers:
                if type(n) is not int:
                    break
            else:
                nums = sorted(numbers)
                if nums[0] >= 0 and nums[-1] < _LITERAL_LIMIT:
                    return target, nums
    return _parse_ground_truth_slow(ground_truth)


def _parse_ground_truth_slow(ground_truth: Any) -> tuple[int | Fraction, list[int]]:
    gt = ground_truth
    if isinstance(gt, str | bytes):
        try:
            gt = json.loads(gt)
        except ValueError as exc:
            raise ValueError(f"countdown ground truth is a string but not JSON: {ground_truth!r:.200}") from exc
    if not isinstance(gt, Mapping):
        raise ValueError(f"countdown ground truth must be a dict with 'target' and 'numbers', got {type(gt).__name__}")
    numbers = gt.get("numbers")
    if numbers is None:
        numbers = gt.get("nums")
    if numbers is None or "target" not in gt:
        raise ValueError(f"countdown ground truth needs 'target' and 'numbers' (or 'nums'); keys: {sorted(gt)}")
    if hasattr(numbers, "tolist"):  # numpy array from parquet
        numbers = numbers.tolist()
    if isinstance(numbers, str | bytes | Mapping) or not hasattr(numbers, "__iter__"):
        raise ValueError(f"countdown ground truth 'numbers' must be a list of integers, got {numbers!r:.200}")
    target_raw = gt["target"]
    if hasattr(target_raw, "item") and not isinstance(target_raw, int):
        target_raw = target_raw.item()
    if isinstance(target_raw, float) and not target_raw.is_integer():
        target: int | Fraction = Fraction(target_raw)
    else:
        target = _as_int(target_raw, "'target'")
    nums = sorted(_as_int(n, "every number") for n in numbers)
    if not nums:
        raise ValueError("countdown ground truth 'numbers' is empty")
    if nums[0] < 0 or nums[-1] >= _LITERAL_LIMIT:
        raise ValueError(
            f"countdown ground truth numbers must be non-negative with at most {MAX_LITERAL_DIGITS} digits, got {nums}"
        )
    return target, nums


# ---------------------------------------------------------------------------------------------- evaluation
class _Malformed(Exception):
    pass


class _DivisionByZero(Exception):
    pass


_BINARY = {"+": 0, "-": 1, "*": 2, "/": 3}


def _evaluate(tokens: list[str], literals: list[int]) -> tuple[int, int]:
    """Validate and evaluate an infix token stream in one pass; returns (numerator, denominator).

    Two precedence levels, so each nesting level keeps a running sum of finished terms and the term
    being multiplied; ``(`` saves that state and ``)`` folds the group back in as an operand.
    Unary signs commute with ``* /`` exactly, so a pending sign is applied to the next operand.
    Values are unreduced integer fractions (no gcd until the caller needs one). Number tokens sort
    after every operator character (``"0" > "/"``), which keeps the common case to one comparison.
    Raises _Malformed (syntax) or _DivisionByZero.
    """
    lit = iter(literals)
    binary = _BINARY
    stack: list[tuple[int, int, int, int, int, bool]] = []
    sn, sd = 0, 1  # sum of finished terms at this level
    tn, td = 0, 1  # current term
    op = 0  # what the next operand does: 0 start term +, 1 start term -, 2 multiply, 3 divide
    neg = False  # pending unary minus for the next operand
    expect_operand = True
    unary = 0
    for tok in tokens:
        if expect_operand:
            if tok > "/":  # a number
                vn, vd = next(lit), 1
            elif tok == "(":
                if len(stack) >= MAX_NESTING:
                    raise _Malformed(f"nested deeper than {MAX_NESTING}")
                stack.append((sn, sd, tn, td, op, neg))
                sn, sd, tn, td, op, neg = 0, 1, 0, 1, 0, False
                continue
            elif tok == "-" or tok == "+":
                unary += 1
                if unary > MAX_UNARY_OPS:
                    raise _Malformed(f"more than {MAX_UNARY_OPS} unary signs")
                if tok == "-":
                    neg = not neg
                continue
            elif tok == "*" and op == 2:
                raise _Malformed("'**' is not allowed (only + - * /)")
            elif tok == "/" and op == 3:
                raise _Malformed("'//' is not allowed (only + - * /)")
            else:
                raise _Malformed(f"unexpected {tok!r}")
        elif tok == ")":
            if not stack:
                raise _Malformed("unbalanced ')'")
            vn, vd = sn * td + tn * sd, sd * td  # the group's value
            sn, sd, tn, td, op, neg = stack.pop()
        else:
            code = binary.get(tok)
            if code is None:
                raise _Malformed("missing operator before '('" if tok == "(" else "missing operator between numbers")
            if code < 2:
                sn, sd = sn * td + tn * sd, sd * td
            op = code
            expect_operand = True
            continue
        # An operand (number or closed group) arrives.
        if neg:
            vn = -vn
            neg = False
        if op == 0:
            tn, td = vn, vd
        elif op == 2:
            tn *= vn
            td *= vd
        elif op == 1:
            tn, td = -vn, vd
        else:
            if vn == 0:
                raise _DivisionByZero
            tn *= vd
            td *= vn
        expect_operand = False
    if expect_operand:
        raise _Malformed("ends with an operator" if tokens else "empty expression")
    if stack:
        raise _Malformed("unbalanced '('")
    return sn * td + tn * sd, sd * td


def _fraction_text(num: int, den: int) -> str:
    if den == 1:
        return str(num)
    g = gcd(num, den)
    if den < 0:
        g = -g
    num, den = num // g, den // g
    return str(num) if den == 1 else f"{num}/{den}"


def _syntax_problem(expr: str) -> str | None:
    """Problems a whole-string check finds before tokenizing: bad characters, stray newlines, 05."""
    if not _ALLOWED.fullmatch(expr):
        bad = next(ch for ch in expr if not _ALLOWED.fullmatch(ch))
        hint = _BAD_CHAR_HINTS.get(bad, repr(bad))
        return f"{hint} is not allowed (only digits, + - * /, parentheses and spaces)"
    if "\n" in expr or "\r" in expr:
        # Python joins lines only inside parentheses; a line break at depth 0 ends the expression.
        for i, ch in enumerate(expr):
            if (ch == "\n" or ch == "\r") and expr.count("(", 0, i) <= expr.count(")", 0, i):
                return "line break outside parentheses"
    return None


def evaluate_expression(expr: str) -> Fraction:
    """Exact value of an answer expression (trusted helper for data tools and tests).

    Raises ValueError for anything that is not a well-formed ``+ - * /`` expression within the
    limits, and ZeroDivisionError on division by zero. Never executes code.
    """
    expr = expr.strip()
    if len(expr) > MAX_ANSWER_CHARS:
        raise ValueError(f"expression longer than {MAX_ANSWER_CHARS} characters")
    problem = _syntax_problem(expr)
    if problem is None and _LEADING_ZERO.search(expr):
        problem = "leading zeros in a number"
    if problem is None and any(len(t) > MAX_LITERAL_DIGITS for t in _DIGITS.findall(expr)):
        problem = f"a number with more than {MAX_LITERAL_DIGITS} digits"
    if problem is not None:
        raise ValueError(problem)
    try:
        num, den = _evaluate(_TOKENS.findall(expr), [int(t) for t in _DIGITS.findall(expr)])
    except _Malformed as exc:
        raise ValueError(str(exc)) from None
    except _DivisionByZero:
        raise ZeroDivisionError("division by zero") from None
    return Fraction(num, den)


# ---------------------------------------------------------------------------------------------- verifier
_NO_TAG = VerifyResult(False, NO_ANSWER, None, "no <answer>...</answer> span")


def countdown_verify(response: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None) -> VerifyResult:
    """Check a countdown response; never raises on model output, bounded time on any input.

    Checks run in TinyZero's order (answer present, allowed characters, numbers used, evaluates,
    equals target), so the category names the first thing that went wrong. Raises ValueError only
    for a bad ``ground_truth`` (see :func:`parse_ground_truth`).
    """
    target, numbers = parse_ground_truth(ground_truth)
    if type(response) is not str:
        if not isinstance(response, str | bytes):
            return VerifyResult(False, NO_ANSWER, None, f"response is {type(response).__name__}, not text")
        if isinstance(response, bytes):
            response = response.decode("utf-8", errors="replace")
    raw = extract_answer(response)
    if raw is None:
        return _NO_TAG
    expr = raw.strip()
    if not expr:
        return VerifyResult(False, NO_ANSWER, "", "empty <answer> span")
    if len(expr) > MAX_ANSWER_CHARS:
        return VerifyResult(False, ANSWER_TOO_LONG, expr[:200], f"answer longer than {MAX_ANSWER_CHARS} characters")
    if not _single_line_fullmatch(expr):  # slow path: bad characters or line breaks
        problem = _syntax_problem(expr)
        if problem is not None:
            return VerifyResult(False, MALFORMED_EXPRESSION, expr, problem)
    tokens = _tokens_findall(expr)
    digits = [t for t in tokens if t > "/"]  # number tokens sort after every operator character
    if len(digits) != len(numbers):
        return VerifyResult(False, WRONG_NUMBERS, expr, f"uses {len(digits)} numbers, expected {len(numbers)}")
    if len(expr) > MAX_LITERAL_DIGITS and max(map(len, digits)) > MAX_LITERAL_DIGITS:
        return VerifyResult(False, WRONG_NUMBERS, expr, f"a number with more than {MAX_LITERAL_DIGITS} digits")
    literals = list(map(int, digits))
    if sorted(literals) != numbers:
        return VerifyResult(False, WRONG_NUMBERS, expr, f"uses {sorted(literals)}, expected {numbers}")
    if "0" in expr and _LEADING_ZERO.search(expr):
        return VerifyResult(False, MALFORMED_EXPRESSION, expr, "leading zeros in a number")
    try:
        num, den = _evaluate(tokens, literals)
    except _Malformed as exc:
        return VerifyResult(False, MALFORMED_EXPRESSION, expr, str(exc))
    except _DivisionByZero:
        return VerifyResult(False, DIVISION_BY_ZERO, expr, "division by zero")
    if type(target) is int:
        ok = num == target * den
    else:
        ok = num * target.denominator == target.numerator * den
    if ok:
        return VerifyResult(True, CORRECT, expr)
    return VerifyResult(False, WRONG_TARGET, expr, f"evaluates to {_fraction_text(num, den)}, target {target}")


register_task(
    ("countdown", "countdown_3to4"),
    countdown_verify,
    reflection_prompt=REFLECTION_PROMPT,
    retry_prompt=RETRY_PROMPT,
    description="Countdown equations (TinyZero's Countdown-Tasks-3to4): exact arithmetic, each number once.",
    categories=CATEGORIES,
)
