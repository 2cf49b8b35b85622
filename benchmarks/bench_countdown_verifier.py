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
"""Benchmark: r3_plugin's countdown verifier against TinyZero's eval-based rule.

Scores the same synthetic countdown responses (seeded; a realistic mix of correct answers, wrong
values, wrong numbers, malformed and missing answers, plus adversarial and loophole cases) with

* ``r3_plugin.policy.verifiers.countdown.countdown_verify`` (hand-written parser, exact arithmetic), and
* ``tinyzero_score`` below, a reimplementation of TinyZero's ``countdown.compute_score`` rule
  (last ``<answer>``; numbers via ``re.findall(r"\\d+")`` sorted equality; character filter
  ``^[\\d+\\-*/().\\s]+$``; ``eval`` with ``__builtins__`` None; ``abs(value - target) < 1e-5``),

and prints both throughputs, their ratio and the agreement count. Inputs containing ``**`` are not
given to the eval rule (``9**9**9**9`` hangs it). Every disagreement is classified; a disagreement
outside the documented edges (decimal point, floor division, the 1e-5 tolerance, the length and
nesting caps, float rounding) is "unexplained" and makes the script exit with status 1.

Usage: ``python benchmarks/bench_countdown_verifier.py [--n 100000] [--seed 0] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
import warnings
from collections import Counter
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from r3_plugin.policy.verifiers.countdown import (
    ANSWER_TOO_LONG,
    MALFORMED_EXPRESSION,
    WRONG_TARGET,
    countdown_verify,
    evaluate_expression,
    extract_answer,
)

# ---------------------------------------------------------------------------------------------- TinyZero rule
_TZ_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_TZ_NUMBER = re.compile(r"\d+")
_TZ_ALLOWED = re.compile(r"^[\d+\-*/().\s]+$")


def tinyzero_extract(solution_str: str) -> str | None:
    """Last ``<answer>...</answer>`` (verl passes the response only, so no 'Assistant:' split)."""
    matches = list(_TZ_ANSWER.finditer(solution_str))
    return matches[-1].group(1).strip() if matches else None


def tinyzero_score(solution_str: str, ground_truth: dict[str, Any]) -> float:
    """TinyZero's rule: 1.0 correct, 0.1 format score (answer present but wrong), 0.0 no answer."""
    target = ground_truth["target"]
    numbers = ground_truth["numbers"]
    equation = tinyzero_extract(solution_str)
    if equation is None:
        return 0.0
    try:
        used = sorted(int(n) for n in _TZ_NUMBER.findall(equation))
        if used != sorted(numbers):
            return 0.1
    except Exception:
        return 0.1
    try:
        if not _TZ_ALLOWED.match(equation):
            return 0.1
        result = eval(equation, {"__builtins__": None}, {})  # noqa: S307 - the reference rule under test
        if abs(result - target) < 1e-5:
            return 1.0
        return 0.1
    except Exception:
        return 0.1


def tinyzero_decides(solution_str: str) -> bool:
    """False for inputs the eval rule must not see (``**`` can hang it)."""
    return "**" not in solution_str


# ---------------------------------------------------------------------------------------------- responses
_WORDS = (
    "first let me try combining the numbers to reach target maybe multiply then subtract that gives "
    "too big so divide instead check again the result is close but not equal hmm wait consider adding"
).split()
_OPS = "+-*/"


def _random_tree(rng: random.Random, nums: list[int]) -> tuple[str, Fraction | None]:
    """A random expression over ``nums`` (each once): text (minimal-ish parentheses) and exact value."""
    if len(nums) == 1:
        return str(nums[0]), Fraction(nums[0])
    cut = rng.randint(1, len(nums) - 1)
    (ls, lv), (rs, rv) = _random_tree(rng, nums[:cut]), _random_tree(rng, nums[cut:])
    op = rng.choice(_OPS)
    if len(nums[:cut]) > 1 and rng.random() < 0.7:
        ls = f"({ls})"
    if len(nums[cut:]) > 1:
        rs = f"({rs})"
    sep = rng.choice(("", " ", " "))
    text = f"{ls}{sep}{op}{sep}{rs}"
    if lv is None or rv is None:
        return text, None
    if op == "+":
        return text, lv + rv
    if op == "-":
        return text, lv - rv
    if op == "*":
        return text, lv * rv
    return text, (lv / rv if rv != 0 else None)


def _problem(rng: random.Random) -> tuple[dict[str, Any], str]:
    while True:
        nums = [rng.randint(1, 99) for _ in range(rng.choice((3, 4)))]
        order = nums[:]
        rng.shuffle(order)
        text, value = _random_tree(rng, order)
        if value is not None and value.denominator == 1 and 1 <= value <= 1000:
            return {"target": int(value), "numbers": nums}, text


def _think(rng: random.Random) -> str:
    return "<think>" + " ".join(rng.choice(_WORDS) for _ in range(rng.randint(20, 150))) + "</think>\n"


def _wrap(rng: random.Random, expr: str) -> str:
    return f"{_think(rng)}<answer>{rng.choice(('', ' '))}{expr}{rng.choice(('', ' '))}</answer>"


def make_responses(n: int, seed: int = 0) -> list[tuple[str, dict[str, Any]]]:
    """``n`` (response, ground truth) pairs; the mix is fixed by ``seed``."""
    rng = random.Random(seed)
    out: list[tuple[str, dict[str, Any]]] = []
    kinds = (
        ("correct", 30),
        ("wrong_value", 22),
        ("wrong_numbers", 12),
        ("equals", 5),
        ("malformed", 6),
        ("no_answer", 5),
        ("multi", 5),
        ("multiline", 3),
        ("loophole", 1),
        ("div_zero", 2),
        ("tolerance", 0.5),
        ("adversarial", 3),
    )
    names = [k for k, _ in kinds]
    weights = [w for _, w in kinds]
    for _ in range(n):
        kind = rng.choices(names, weights)[0]
        gt, solution = _problem(rng)
        nums = gt["numbers"]
        if kind == "correct":
            expr = solution if rng.random() < 0.8 else f"({solution})"
            out.append((_wrap(rng, expr), gt))
        elif kind == "wrong_value":
            order = nums[:]
            rng.shuffle(order)
            out.append((_wrap(rng, _random_tree(rng, order)[0]), gt))
        elif kind == "wrong_numbers":
            order = nums[:]
            rng.shuffle(order)
            change = rng.choice(("drop", "dup", "replace", "extra"))
            if change == "drop":
                order.pop()
            elif change == "dup":
                order.append(order[0])
            elif change == "replace":
                order[0] = order[0] % 99 + 1
            else:
                order.append(rng.randint(1, 99))
            out.append((_wrap(rng, _random_tree(rng, order)[0]), gt))
        elif kind == "equals":
            out.append((_wrap(rng, f"{solution} = {gt['target']}"), gt))
        elif kind == "malformed":
            bad = rng.choice(
                (
                    solution + " +",
                    "(" + solution,
                    solution + ")",
                    solution.replace("(", "", 1),
                    " ".join(str(x) for x in nums),
                    f"{solution} x",
                    "",
                    "()",
                    solution.replace("*", "x"),
                    f"(0{nums[0]})" + solution[len(str(nums[0])) :] if solution.startswith(str(nums[0])) else "05",
                )
            )
            out.append((_wrap(rng, bad), gt))
        elif kind == "no_answer":
            text = rng.choice((f"The answer is {solution}.", f"<answer>{solution}", f"{solution}</answer>", ""))
            out.append((_think(rng) + text, gt))
        elif kind == "multi":
            first = _random_tree(rng, nums[::-1])[0]
            last = solution if rng.random() < 0.5 else first
            out.append((f"{_think(rng)}<answer>{first}</answer> wait, no: <answer>{last}</answer>", gt))
        elif kind == "multiline":
            if rng.random() < 0.5:
                expr = f"\n({solution.replace(' ', chr(10), 1)})\n"
            else:
                expr = solution.replace(" ", "\n", 1)
            out.append((_wrap(rng, expr), gt))
        elif kind == "loophole":
            a, b = rng.randint(2, 9), rng.randint(1, 9)
            c = rng.randint(10, 99)
            if rng.random() < 0.5:
                gt = {"target": a // 2 + c, "numbers": [a, 2, c]}
                out.append((_wrap(rng, f"{a}//2 + {c}"), gt))
            else:  # "a.5*2" glues digits with a decimal point: a.5*2 == 2a+1
                gt = {"target": 2 * a + 1 + c, "numbers": [a, 5, 2, c]}
                out.append((_wrap(rng, f"{a}.5*2 + {c}"), gt))
            _ = b
        elif kind == "div_zero":
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            gt = {"target": rng.randint(1, 99), "numbers": [a, a, b]}
            out.append((_wrap(rng, f"{b}/({a}-{a})"), gt))
        elif kind == "tolerance":
            a, b, c = rng.randint(60, 99), rng.randint(60, 99), rng.randint(60, 99)
            gt = {"target": 0, "numbers": [1, a, b, c]}
            out.append((_wrap(rng, f"1/{a}/{b}/{c}"), gt))
        else:
            out.append((_adversarial(rng, gt, solution), gt))
    return out


def _adversarial(rng: random.Random, gt: dict[str, Any], solution: str) -> str:
    nums = gt["numbers"]
    choice = rng.randrange(11)
    if choice == 0:  # exponent tower: hangs eval, never given to it
        return _wrap(rng, "**".join(["9"] * 4))
    if choice == 1:  # nesting Python accepts and the verifier accepts
        return _wrap(rng, "(" * 40 + solution + ")" * 40)
    if choice == 2:  # nesting both reject (Python's limit is 200)
        return _wrap(rng, "(" * 250 + solution + ")" * 250)
    if choice == 3:  # nesting over the verifier's cap that Python still accepts
        return _wrap(rng, "(" * 150 + solution + ")" * 150)
    if choice == 4:  # a literal with 5,000 digits (over Python's int-string limit)
        return _wrap(rng, "9" * 5000 + "+" + solution)
    if choice == 5:  # whitespace padding beyond the length cap
        return _wrap(rng, solution + " " * 1500)
    if choice == 6:  # non-ASCII digits pass TinyZero's \d filter but not Python's parser
        return _wrap(rng, solution.replace(str(nums[0]), "".join(chr(0x660 + int(d)) for d in str(nums[0])), 1))
    if choice == 7:  # a long response with the answer at the end
        return "<think>" + "x" * 200_000 + "</think><answer>" + solution + "</answer>"
    if choice == 8:  # many unary signs
        return _wrap(rng, "-" * 120 + "(" + solution + ")")
    if choice == 9:  # sign games Python allows
        return _wrap(rng, "- -(" + solution + ")")
    return _wrap(rng, "\x00" + solution)


# ---------------------------------------------------------------------------------------------- comparison
def classify(response: str, gt: dict[str, Any], ours_passed: bool, category: str, detail: str) -> str:
    """Why the two rules disagree on one input, or 'UNEXPLAINED'."""
    answer = (extract_answer(response) or "").strip()
    if "." in answer:
        return "decimal point (TinyZero admits it; not one of + - * /)"
    if "//" in answer:
        return "floor division (TinyZero admits it; not one of + - * /)"
    if category == ANSWER_TOO_LONG:
        return "over the answer length cap"
    if category == MALFORMED_EXPRESSION and ("nested deeper" in detail or "unary signs" in detail):
        return "over the nesting / unary-sign cap"
    if category == WRONG_TARGET:
        try:
            value = evaluate_expression(answer)
        except (ValueError, ZeroDivisionError):
            return "UNEXPLAINED"
        if value != gt["target"] and abs(value - gt["target"]) < Fraction(1, 100_000):
            return "1e-5 tolerance (exact value differs from the target)"
    product = 1.0
    for number in gt["numbers"]:
        product *= max(number, 1)
    if "/" in answer and product >= 1e9:
        return "float rounding at large magnitudes"
    return "UNEXPLAINED"


def _time_pair(first: Callable[[], Any], second: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Best-of-``repeat`` wall time of each, interleaved so that machine noise hits both alike."""
    best = [float("inf"), float("inf")]
    for _ in range(repeat):
        for i, fn in enumerate((first, second)):
            start = time.perf_counter()
            fn()
            best[i] = min(best[i], time.perf_counter() - start)
    return best[0], best[1]


def adversarial_worst_case() -> tuple[float, str]:
    """Slowest single call of the verifier over hostile inputs: (seconds, case name)."""
    gt4 = {"target": 1, "numbers": [9, 9, 9, 9]}
    cases = {
        "exponent tower 9**9**9**9": ("<answer>9**9**9**9</answer>", gt4),
        "1 MB of text before the answer": ("x" * 2**20 + "<answer>9*9/9/9</answer>", gt4),
        "1 MB of <answer> tags": ("<answer>" * 2**17 + "</answer>" * 2**17, gt4),
        "1 MB of </answer> tags": ("</answer>" * 2**17, gt4),
        "a 1,000,000-digit number": ("<answer>" + "9" * 10**6 + "</answer>", gt4),
        "100,000 nested parentheses": ("<answer>" + "(" * 10**5 + "9" + ")" * 10**5 + "</answer>", gt4),
        "20 32-digit factors": (
            "<answer>" + "*".join(["9" * 32] * 20) + "</answer>",
            {"target": 1, "numbers": [int("9" * 32)] * 20},
        ),
        "division by zero": ("<answer>9/(9-9)*9</answer>", gt4),
    }
    worst, worst_name = 0.0, ""
    for name, (response, gt) in cases.items():
        start = time.perf_counter()
        countdown_verify(response, gt)
        elapsed = time.perf_counter() - start
        if elapsed > worst:
            worst, worst_name = elapsed, name
    return worst, worst_name


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--n", type=int, default=100_000, help="number of responses (default 100000)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the synthetic responses (default 0)")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats, best is reported (default 3)")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", SyntaxWarning)  # eval on "(1)(2)" warns; the rule ignores it
    if args.n < 1:
        parser.error("--n must be at least 1")

    print(f"generating {args.n} responses (seed {args.seed}) ...", flush=True)
    data = make_responses(args.n, args.seed)
    compared = [(r, gt) for r, gt in data if tinyzero_decides(r)]
    excluded = len(data) - len(compared)

    ours = [countdown_verify(r, gt) for r, gt in compared]
    theirs = [tinyzero_score(r, gt) for r, gt in compared]

    t_ours, t_theirs = _time_pair(
        lambda: [countdown_verify(r, gt) for r, gt in compared],
        lambda: [tinyzero_score(r, gt) for r, gt in compared],
        args.repeat,
    )
    start = time.perf_counter()
    for r, gt in data:
        countdown_verify(r, gt)
    t_all = time.perf_counter() - start

    agree = 0
    reasons: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for (response, gt), mine, tz in zip(compared, ours, theirs, strict=True):
        if mine.passed == (tz == 1.0):
            agree += 1
            continue
        why = classify(response, gt, mine.passed, mine.category, mine.detail)
        reasons[why] += 1
        examples.setdefault(why, f"{(extract_answer(response) or '')[:80]!r} gt={gt} ours={mine.category} tz={tz}")

    n = len(compared)
    print(f"responses: {len(data)}  compared: {n}  excluded from the eval rule ('**'): {excluded}")
    print(
        f"pass rate: r3_plugin {sum(m.passed for m in ours) / n:.4f}  eval rule {sum(t == 1.0 for t in theirs) / n:.4f}"
    )
    print(f"r3_plugin verifier : {n / t_ours:12,.0f} responses/s  ({t_ours / n * 1e6:.2f} us each)")
    print(f"TinyZero eval rule : {n / t_theirs:12,.0f} responses/s  ({t_theirs / n * 1e6:.2f} us each)")
    print(f"speed ratio (r3_plugin / eval rule): {t_theirs / t_ours:.2f}x")
    print(f"r3_plugin on all {len(data)} inputs incl. excluded: {len(data) / t_all:,.0f} responses/s")
    print(f"agreement: {agree}/{n} ({agree / n:.2%}); disagreements: {n - agree}")
    for why, count in reasons.most_common():
        print(f"  {count:6d}  {why}\n          e.g. {examples[why]}")
    categories = Counter(m.category for m in ours)
    print("r3_plugin categories: " + ", ".join(f"{c}={k}" for c, k in categories.most_common()))
    worst, worst_name = adversarial_worst_case()
    print(f"slowest hostile input for r3_plugin: {worst * 1e3:.2f} ms ({worst_name})")
    unexplained = reasons.get("UNEXPLAINED", 0)
    edges = sum(reasons.values()) - unexplained
    print(
        f"agreement outside the documented edges: {agree}/{n - edges} "
        f"({agree / max(n - edges, 1):.2%}); documented-edge inputs: {edges}"
    )
    print(f"unexplained disagreements: {unexplained}")
    return 1 if unexplained else 0


if __name__ == "__main__":
    sys.exit(main())
