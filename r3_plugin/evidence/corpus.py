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
"""Synthetic R3 countdown conversations for supervised pre-training of a small model.

Each conversation is what the agent loop would produce: the task prompt, a first attempt, and when
that attempt fails, either the task's reflection prompt, a reflection and (after the retry prompt) a
retry, or (the evaluation control "retry without reflection") the task's plain retry prompt and a
retry.
First attempts are right or wrong in the ways small models are wrong (a number not in the list, a
number left out, a number reused, all numbers used but a different value); reflections are an
accurate diagnosis computed from the actual error, a vague one, or a wrong one; a retry after an
accurate diagnosis is right more often than after a vague or wrong one. That correlation is planted
on purpose: it is the mechanism R3 is meant to find and strengthen, and the corpus mix sets how
strong it starts. A plain retry succeeds as often as a retry after a vague reflection by default
(neither carries information about the error), so the control is fair.

``reflection_style`` changes what accurate and wrong reflections say: ``restate`` (the evidence
run's second SFT stage) restates the task's numbers, right or miscopied, and the retry uses the
numbers its reflection wrote; ``propose`` adds an equation that the retry carries out. With
``retry_prompt=""`` the retry follows the reflection without a user turn in between.

By default the loss skips wrong first attempts (they stay in the context of their reflection): a
model trained on them learns to make those errors on purpose (the first from-scratch runs reused a
number, as a quarter of the corpus's wrong attempts do); its own mistakes come from lack of skill.

Every attempt is labelled by the real countdown verifier (never a re-implementation of the rule);
an attempt the verifier does not label as intended is redrawn.

``python -m r3_plugin.evidence.corpus --help`` writes a corpus and prints its speed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from r3_plugin.policy.tasks import CORRECT, get_task
from r3_plugin.policy.verifiers.countdown import WRONG_NUMBERS, WRONG_TARGET, countdown_verify, evaluate_expression
from r3_plugin.tools.data.countdown import CountdownTask, generate_tasks, random_equation, task_row
from r3_plugin.tools.data.io import write_splits
from r3_plugin.tools.data.prompts import countdown_messages

RIGHT = "right"
NOT_IN_LIST = "not_in_list"
LEFT_OUT = "left_out"
REUSED = "reused"
WRONG_VALUE = "wrong_target"
ERROR_KINDS = (NOT_IN_LIST, LEFT_OUT, REUSED, WRONG_VALUE)
#: The verifier category each kind of attempt must get.
EXPECTED_CATEGORY = {
    RIGHT: CORRECT,
    NOT_IN_LIST: WRONG_NUMBERS,
    LEFT_OUT: WRONG_NUMBERS,
    REUSED: WRONG_NUMBERS,
    WRONG_VALUE: WRONG_TARGET,
}
ACCURATE, VAGUE, WRONG = "accurate", "vague", "wrong"
DIAGNOSES = (ACCURATE, VAGUE, WRONG)
DEFAULT_OPERAND_COUNTS = (3,)
THINK_FORMATS = ("equation", "steps")
REFLECTION_STYLES = ("diagnose", "restate", "propose")
SOLUTIONS = ("witness", "canonical")
_MAX_REDRAWS = 50
_LITERAL = re.compile(r"\d+")

_VAGUE = (
    "I made a mistake somewhere. I should check my work more carefully next time.",
    "My answer was wrong. I need to think again step by step.",
    "Something in my equation was not right. I will be more careful.",
    "I was too quick. Next time I should double-check the equation before answering.",
    "The answer did not work. I should try a different approach.",
)


@dataclass(frozen=True)
class CorpusConfig:
    """The conversation mix. Weights need not sum to 1; probabilities must lie in [0, 1]."""

    first_right: float = 0.35
    error_weights: Mapping[str, float] = field(default_factory=lambda: dict.fromkeys(ERROR_KINDS, 1.0))
    #: Accurate diagnoses are a minority by default, so that the greedy reflection of the trained model
    #: is usually not the accurate one: the headroom R3 is meant to use.
    diagnosis_weights: Mapping[str, float] = field(default_factory=lambda: {ACCURATE: 0.3, VAGUE: 0.35, WRONG: 0.35})
    #: Probability that the retry is right, by the kind of reflection before it.
    retry_success: Mapping[str, float] = field(default_factory=lambda: {ACCURATE: 0.85, VAGUE: 0.35, WRONG: 0.15})
    #: Probability that a failed retry repeats the first attempt's kind of error.
    repeat_error: float = 0.5
    #: Share of failed first attempts followed by the plain retry prompt (no reflection).
    plain_retry: float = 0.25
    #: Probability that a plain retry is right (default: that of a retry after a vague reflection).
    plain_retry_success: float = 0.35
    #: Train on wrong first attempts too (False: they are context only, see the module docstring).
    train_wrong_first: bool = False
    #: What an attempt's <think> holds: the equation and its value, or its operations one by one.
    think: str = "equation"
    #: The right answer shown: the generator's random witness, or :func:`canonical_solution`.
    solution: str = "witness"
    #: What accurate and wrong reflections say: ``diagnose`` names an error (the actual one, or one
    #: that did not happen) and the retry is a fresh attempt, right with ``retry_success``;
    #: ``restate`` restates the task ("I must use each of [a, b] exactly once to make t."), with the
    #: task's numbers (accurate) or a wrong list (wrong), and the retry uses the restated numbers;
    #: ``propose`` restates the task and proposes an equation, right (accurate) or missing the target
    #: (wrong), and the retry carries it out. With ``restate`` and ``propose`` what the reflection says
    #: decides the retry through copying from a near-fixed offset, which a small model learns; a vague
    #: reflection says nothing and its retry is a fresh attempt (right with ``retry_success["vague"]``).
    reflection_style: str = "diagnose"
    #: How many of the vague reflections' wordings are used (the first N).
    vague_variants: int = len(_VAGUE)
    #: The user message between the reflection and the retry: None, the task's; "" none, so the retry
    #: follows the reflection at once (``r3.retry_prompt`` must then be "" in training and evaluation).
    retry_prompt: str | None = None
    #: Train on wrong retries too (False: a wrong retry is context only, so the model never learns to
    #: fail a retry on purpose; its retries are its best attempt, as its first attempts are). A retry
    #: that carries out a ``restate``/``propose`` reflection is trained either way.
    train_wrong_retry: bool = True
    #: Train on wrong reflections too (False: a wrong diagnosis or a miscopied restatement is context
    #: only, like a wrong first attempt, so the model's wrong reflections are its own mistakes, never
    #: ones it learnt to make on purpose; the retry that carries one out is still trained, so the retry
    #: still learns to follow what its reflection says).
    train_wrong_reflection: bool = True

    def __post_init__(self) -> None:
        for name in ("first_right", "repeat_error", "plain_retry", "plain_retry_success"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"CorpusConfig.{name} must be in [0, 1], got {getattr(self, name)}")
        if self.solution not in SOLUTIONS:
            raise ValueError(f"CorpusConfig.solution must be one of {SOLUTIONS}, got {self.solution!r}")
        if self.think not in THINK_FORMATS:
            raise ValueError(f"CorpusConfig.think must be one of {THINK_FORMATS}, got {self.think!r}")
        _check_weights("error_weights", self.error_weights, ERROR_KINDS)
        _check_weights("diagnosis_weights", self.diagnosis_weights, DIAGNOSES)
        for key, p in self.retry_success.items():
            if key not in DIAGNOSES or not 0.0 <= p <= 1.0:
                raise ValueError(
                    f"CorpusConfig.retry_success[{key!r}] must be a diagnosis in {DIAGNOSES} with p in [0, 1]"
                )
        if self.reflection_style not in REFLECTION_STYLES:
            raise ValueError(
                f"CorpusConfig.reflection_style must be one of {REFLECTION_STYLES}, got {self.reflection_style!r}"
            )
        if self.reflection_style == "propose" and self.think != "steps":
            raise ValueError('CorpusConfig.reflection_style="propose" needs think="steps" (the retry copies the steps)')
        if not 1 <= self.vague_variants <= len(_VAGUE):
            raise ValueError(f"CorpusConfig.vague_variants must be in 1..{len(_VAGUE)}, got {self.vague_variants}")


def parse_mix(text: str, known: Sequence[str], what: str) -> dict[str, float]:
    """``"accurate=0.3,vague=0.35"`` -> ``{"accurate": 0.3, "vague": 0.35}`` (for command lines)."""
    out: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or key not in known:
            raise ValueError(f"{what}: expected KEY=NUMBER with KEY in {list(known)}, got {item!r}")
        try:
            out[key] = float(value)
        except ValueError:
            raise ValueError(f"{what}: {value!r} is not a number (in {item!r})") from None
    return out


def add_mix_arguments(parser: argparse.ArgumentParser) -> None:
    """The corpus-mix options shared by the corpus and SFT command lines."""
    d = CorpusConfig()
    parser.add_argument(
        "--first-right", type=float, default=d.first_right, help="share of right first attempts (default: %(default)s)"
    )
    parser.add_argument(
        "--error-weights",
        default=",".join(f"{k}={v}" for k, v in d.error_weights.items()),
        help="relative frequency of each wrong first attempt (default: %(default)s)",
    )
    parser.add_argument(
        "--diagnosis-weights",
        default=",".join(f"{k}={v}" for k, v in d.diagnosis_weights.items()),
        help="relative frequency of accurate, vague and wrong reflections (default: %(default)s)",
    )
    parser.add_argument(
        "--retry-success",
        default=",".join(f"{k}={v}" for k, v in d.retry_success.items()),
        help="probability that the retry is right after each kind of reflection (default: %(default)s)",
    )
    parser.add_argument(
        "--plain-retry",
        type=float,
        default=d.plain_retry,
        help="share of failed first attempts retried after the plain retry prompt, without reflection "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--plain-retry-success",
        type=float,
        default=d.plain_retry_success,
        help="probability that a plain retry is right (default: %(default)s)",
    )
    parser.add_argument(
        "--think",
        choices=THINK_FORMATS,
        default=d.think,
        help="an attempt's <think>: the equation and its value, or its operations one by one (default: %(default)s)",
    )
    parser.add_argument(
        "--solution",
        choices=SOLUTIONS,
        default=d.solution,
        help="the right answer shown: the generator's random witness, or the first solution in a fixed search "
        "order (numbers in the order given when possible) (default: %(default)s)",
    )
    parser.add_argument(
        "--train-wrong-first",
        action="store_true",
        default=d.train_wrong_first,
        help="also train on wrong first attempts (default: they are context only)",
    )
    parser.add_argument(
        "--reflection-style",
        choices=REFLECTION_STYLES,
        default=d.reflection_style,
        help="what accurate and wrong reflections say: diagnose an error (the retry is a fresh attempt), "
        "restate the task's numbers (the retry uses them), or propose an equation (the retry carries it "
        "out; needs --think steps) (default: %(default)s)",
    )
    parser.add_argument(
        "--vague-variants",
        type=int,
        default=d.vague_variants,
        help=f"how many wordings of the vague reflection to use, 1..{len(_VAGUE)} (default: %(default)s)",
    )
    parser.add_argument(
        "--retry-prompt",
        default=d.retry_prompt,
        help="user message between the reflection and the retry (default: the task's; '' for none, so that "
        "the retry follows the reflection at once)",
    )
    parser.add_argument(
        "--train-wrong-retry",
        action=argparse.BooleanOptionalAction,
        default=d.train_wrong_retry,
        help="train on wrong retries too (--no-train-wrong-retry: they are context only) (default: %(default)s)",
    )
    parser.add_argument(
        "--train-wrong-reflection",
        action=argparse.BooleanOptionalAction,
        default=d.train_wrong_reflection,
        help="train on wrong reflections too (--no-train-wrong-reflection: they are context only, the retry "
        "that carries one out is still trained) (default: %(default)s)",
    )


def mix_from_args(args: argparse.Namespace) -> CorpusConfig:
    """A CorpusConfig from :func:`add_mix_arguments`'s options; exits with the problem on bad input."""
    try:
        return CorpusConfig(
            first_right=args.first_right,
            error_weights=parse_mix(args.error_weights, ERROR_KINDS, "--error-weights"),
            diagnosis_weights=parse_mix(args.diagnosis_weights, DIAGNOSES, "--diagnosis-weights"),
            retry_success=parse_mix(args.retry_success, DIAGNOSES, "--retry-success"),
            plain_retry=args.plain_retry,
            plain_retry_success=args.plain_retry_success,
            train_wrong_first=args.train_wrong_first,
            reflection_style=args.reflection_style,
            vague_variants=args.vague_variants,
            train_wrong_retry=args.train_wrong_retry,
            train_wrong_reflection=args.train_wrong_reflection,
            retry_prompt=args.retry_prompt,
            think=args.think,
            solution=args.solution,
        )
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


@dataclass(frozen=True)
class Distribution:
    """Which countdown tasks are drawn: how many numbers, their range and the targets' (inclusive)."""

    operand_counts: tuple[int, ...] = DEFAULT_OPERAND_COUNTS
    number_range: tuple[int, int] = (1, 100)
    target_range: tuple[int, int] = (1, 100)

    def __post_init__(self) -> None:
        for name in ("number_range", "target_range"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise ValueError(f"Distribution.{name} must be LO-HI with 0 <= LO <= HI, got {lo}-{hi}")
        if not self.operand_counts or min(self.operand_counts) < 2:
            raise ValueError(f"Distribution.operand_counts must be counts >= 2, got {self.operand_counts}")

    def describe(self) -> str:
        counts = " or ".join(map(str, self.operand_counts))
        (lo, hi), (tlo, thi) = self.number_range, self.target_range
        return f"{counts} numbers in {lo}..{hi}, integer targets in {tlo}..{thi}"

    def split(self, n_test: int, n_rl_train: int, n_sft: int, seed: int, *, n_dev: int = 0) -> TaskSplits:
        return split_tasks(
            n_test,
            n_rl_train,
            n_sft,
            seed,
            self.operand_counts,
            n_dev=n_dev,
            number_range=self.number_range,
            target_range=self.target_range,
        )


def parse_range(text: str) -> tuple[int, int]:
    """``"1-20"`` -> ``(1, 20)``."""
    lo, sep, hi = text.partition("-")
    try:
        if not sep:
            raise ValueError
        return int(lo), int(hi)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LO-HI (e.g. 1-20), got {text!r}") from None


def add_distribution_arguments(parser: argparse.ArgumentParser, default: Distribution = Distribution()) -> None:
    """The task-distribution options shared by the corpus and SFT command lines."""
    parser.add_argument(
        "--operand-counts",
        type=lambda t: tuple(int(x) for x in t.split(",")),
        default=default.operand_counts,
        help="how many numbers a task has, comma-separated (default: %(default)s)",
    )
    parser.add_argument(
        "--number-range", type=parse_range, default=default.number_range, help="numbers, LO-HI (default: %(default)s)"
    )
    parser.add_argument(
        "--target-range", type=parse_range, default=default.target_range, help="targets, LO-HI (default: %(default)s)"
    )


def distribution_from_args(args: argparse.Namespace) -> Distribution:
    try:
        return Distribution(tuple(args.operand_counts), tuple(args.number_range), tuple(args.target_range))
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from None


def _check_weights(name: str, weights: Mapping[str, float], known: Sequence[str]) -> None:
    unknown = set(weights) - set(known)
    if unknown:
        raise ValueError(f"CorpusConfig.{name}: unknown keys {sorted(unknown)}; known: {list(known)}")
    if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
        raise ValueError(f"CorpusConfig.{name} must be non-negative with a positive sum, got {dict(weights)}")


@dataclass(frozen=True)
class Attempt:
    """One assistant answer and the verifier's verdict on it."""

    text: str
    expression: str
    kind: str
    category: str
    passed: bool


@dataclass
class R3Conversation:
    """One synthetic episode as chat messages plus the labels it was built from."""

    task: CountdownTask
    messages: list[dict[str, str]]
    first: Attempt
    diagnosis: str | None = None
    reflection: str | None = None
    retry: Attempt | None = None
    #: True: the retry followed the plain retry prompt, without a reflection.
    plain_retry: bool = False
    #: True: the retry carries out what the reflection said (``restate``/``propose`` styles).
    carried: bool = False

    def trained_turns(
        self, train_wrong_first: bool = False, train_wrong_retry: bool = True, train_wrong_reflection: bool = True
    ) -> list[bool]:
        """Per message: whether its tokens are trained (assistant turns; a wrong first attempt only
        with ``train_wrong_first``; a wrong reflection only with ``train_wrong_reflection``; a wrong
        retry only with ``train_wrong_retry`` or when it carries out its reflection, which teaches the
        retry to follow what the reflection says)."""
        out = [m["role"] == "assistant" for m in self.messages]
        assistant = [i for i, m in enumerate(self.messages) if m["role"] == "assistant"]
        if not (train_wrong_first or self.first.passed):
            out[assistant[0]] = False
        if self.reflection is not None and self.diagnosis == WRONG and not train_wrong_reflection:
            out[assistant[1]] = False
        if self.retry is not None and not (train_wrong_retry or self.retry.passed or self.carried):
            out[assistant[-1]] = False
        return out

    def trained_by(self, config: CorpusConfig) -> list[bool]:
        """:meth:`trained_turns` with the flags of ``config``."""
        return self.trained_turns(config.train_wrong_first, config.train_wrong_retry, config.train_wrong_reflection)

    def record(self) -> dict[str, Any]:
        """A flat row for parquet/JSONL (without tokens)."""
        return {
            "messages": self.messages,
            "target": self.task.target,
            "numbers": list(self.task.numbers),
            "first_kind": self.first.kind,
            "first_category": self.first.category,
            "first_passed": self.first.passed,
            "diagnosis": self.diagnosis,
            "plain_retry": self.plain_retry,
            "retry_kind": self.retry.kind if self.retry else None,
            "retry_category": self.retry.category if self.retry else None,
            "retry_passed": self.retry.passed if self.retry else None,
        }


# ----------------------------------------------------------------------------------------- attempts


def _ground_truth(task: CountdownTask) -> dict[str, Any]:
    return {"target": task.target, "numbers": list(task.numbers)}


def _value_text(value: Fraction) -> str:
    return str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"


def _replace_literal(expr: str, index: int, value: int) -> str:
    spans = [m.span() for m in _LITERAL.finditer(expr)]
    start, end = spans[index]
    return f"{expr[:start]}{value}{expr[end:]}"


def _wrong_expression(task: CountdownTask, kind: str, rng: random.Random) -> str | None:
    """One candidate expression with the error ``kind`` (None: this draw failed, redraw)."""
    numbers = list(task.numbers)
    if kind == WRONG_VALUE:
        result = random_equation(numbers, rng)
        return None if result is None or result[0] == task.target else result[1]
    if kind == LEFT_OUT:
        # Small models drop a number when the others already reach the target: look for that first.
        drop = rng.randrange(len(numbers))
        rest = numbers[:drop] + numbers[drop + 1 :]
        last = None
        for _ in range(8):
            result = random_equation(rest, rng)
            if result is not None:
                last = result[1]
                if result[0] == task.target:
                    break
        return last
    base = task.solution or random_equation(numbers, rng)
    if base is None:
        return None
    base = base if isinstance(base, str) else base[1]
    literals = [int(m.group()) for m in _LITERAL.finditer(base)]
    i = rng.randrange(len(literals))
    if kind == REUSED:
        others = [v for v in literals if v != literals[i]]
        return _replace_literal(base, i, rng.choice(others)) if others else None
    if kind == NOT_IN_LIST:
        # A number near the task's own (1..100 for the default tasks), not one from a wider range.
        outside = rng.randint(1, min(100, max(max(numbers), task.target) + 10))
        return None if outside in numbers else _replace_literal(base, i, outside)
    raise ValueError(f"unknown error kind {kind!r}; known: {ERROR_KINDS}")


_TOKEN = re.compile(r"\s*(\d+|[-+*/()])")
_OPS = {"+": 1, "-": 1, "*": 2, "/": 2}


def _parse(expr: str) -> Any:
    """``expr`` as a tree: an int leaf or ``(op, left, right)`` (left-associative, usual precedence)."""
    tokens = _TOKEN.findall(expr)
    pos = 0

    def atom() -> Any:
        nonlocal pos
        tok = tokens[pos]
        pos += 1
        if tok == "(":
            node = binary(1)
            pos += 1  # ")"
            return node
        return int(tok)

    def binary(level: int) -> Any:
        nonlocal pos
        node = atom() if level > 2 else binary(level + 1)
        while pos < len(tokens) and _OPS.get(tokens[pos]) == level:
            op = tokens[pos]
            pos += 1
            node = (op, node, atom() if level == 2 else binary(level + 1))
        return node

    return binary(1)


def equation_steps(expr: str) -> list[tuple[str, Fraction]]:
    """The operations of ``expr`` in evaluation order: ``"20 / 10 = 2"``-style texts and their values."""
    steps: list[tuple[str, Fraction]] = []

    def walk(node: Any) -> tuple[str, Fraction]:
        if isinstance(node, int):
            return str(node), Fraction(node)
        op, left, right = node
        (lt, lv), (rt, rv) = walk(left), walk(right)
        value = evaluate_expression(f"{lv} {op} ({rv})")
        steps.append((f"{lt} {op} {rt} = {_value_text(value)}", value))
        return _value_text(value), value

    walk(_parse(expr))
    return steps


def _attempt_text(expr: str, think_value: str, think: str = "equation") -> str:
    """An answer whose ``<think>`` is the equation and its value (``think="equation"``) or the
    equation's operations one by one (``"steps"``: ``20 / 10 = 2, 5 + 2 = 7``); either way the
    last value written is ``think_value`` (a slip when it is not the equation's value)."""
    if think == "equation":
        return f"<think> {expr} = {think_value} </think> <answer> {expr} </answer>"
    if think != "steps":
        raise ValueError(f"unknown think format {think!r}; known: {THINK_FORMATS}")
    texts = [text for text, _ in equation_steps(expr)]
    if texts:
        texts[-1] = texts[-1].rsplit(" = ", 1)[0] + f" = {think_value}"
    else:
        texts = [f"{expr} = {think_value}"]
    return f"<think> {', '.join(texts)} </think> <answer> {expr} </answer>"


def _label(task: CountdownTask, text: str, expr: str, kind: str) -> Attempt:
    result = countdown_verify(text, _ground_truth(task))
    return Attempt(text=text, expression=expr, kind=kind, category=result.category, passed=result.passed)


def right_attempt(task: CountdownTask, think: str = "equation") -> Attempt:
    """The task's witness equation as an answer (synthetic tasks carry one)."""
    if task.solution is None:
        raise ValueError(f"task {task.target} from {list(task.numbers)} has no witness solution (synthetic tasks do)")
    attempt = _label(task, _attempt_text(task.solution, str(task.target), think), task.solution, RIGHT)
    if not attempt.passed:
        raise AssertionError(f"witness {task.solution!r} failed the verifier: {attempt.category}")
    return attempt


def wrong_attempt(task: CountdownTask, kind: str, rng: random.Random, think: str = "equation") -> Attempt | None:
    """An attempt with the error ``kind`` that the verifier labels as such; None if none was found."""
    for _ in range(_MAX_REDRAWS):
        expr = _wrong_expression(task, kind, rng)
        if expr is None:
            continue
        try:
            value = evaluate_expression(expr)
        except ZeroDivisionError:
            continue
        # A wrong-value attempt usually believes it reached the target (an arithmetic slip).
        claimed = str(task.target) if kind == WRONG_VALUE and rng.random() < 0.5 else _value_text(value)
        attempt = _label(task, _attempt_text(expr, claimed, think), expr, kind)
        if attempt.category == EXPECTED_CATEGORY[kind]:
            return attempt
    return None


# ----------------------------------------------------------------------------------------- reflections


def _number_errors(task: CountdownTask, expr: str) -> tuple[list[int], list[int], list[int]]:
    """(numbers not in the list, numbers used too often, numbers left out) of an answer."""
    used = Counter(int(m.group()) for m in _LITERAL.finditer(expr))
    given = Counter(task.numbers)
    extra = used - given
    outside = sorted(v for v in extra if v not in given)
    repeated = sorted(v for v in extra if v in given)
    missing = sorted((given - used).elements())
    return outside, repeated, missing


def accurate_diagnosis(task: CountdownTask, attempt: Attempt) -> str:
    """A reflection that names what is actually wrong with ``attempt`` (computed from its expression)."""
    numbers = list(task.numbers)
    outside, repeated, missing = _number_errors(task, attempt.expression)
    parts = [f"I used {v}, which is not in {numbers}." for v in outside]
    parts += [f"I used {v} more than once." for v in repeated]
    if missing:
        parts.append(f"I left out {', '.join(map(str, missing))}.")
    if parts:
        parts.append(f"I must use each of {numbers} exactly once.")
    else:
        value = _value_text(evaluate_expression(attempt.expression))
        parts.append(f"My equation {attempt.expression} equals {value}, not {task.target}.")
        parts.append("I should check the arithmetic and try another combination.")
    return " ".join(parts)


def wrong_diagnosis(task: CountdownTask, attempt: Attempt, rng: random.Random) -> str:
    """A confident reflection that blames something that did not go wrong."""
    numbers = list(task.numbers)
    outside, repeated, missing = _number_errors(task, attempt.expression)
    used_ok = [v for v in dict.fromkeys(numbers) if v not in missing and v not in repeated]
    claims = []
    if outside or repeated or missing:  # the numbers were wrong: blame the arithmetic instead
        fake = task.target + rng.choice((-3, -2, -1, 1, 2, 3))
        claims.append(f"My equation {attempt.expression} equals {fake}, not {task.target}. I added wrong.")
    if used_ok:
        v = rng.choice(used_ok)
        claims.append(f"I left out {v}. I must use each of {numbers} exactly once.")
    if not (outside or repeated or missing) and used_ok:
        v = rng.choice(used_ok)
        claims.append(f"I used {v} more than once. I must use each of {numbers} exactly once.")
    if not claims:
        claims.append(f"The target was {task.target + 1}, so I should aim lower.")
    return rng.choice(claims)


def fix_text(task: CountdownTask, expr: str) -> str:
    """The reflection of the ``propose`` style: the task restated and the operations of ``expr``
    one by one, as a retry's ``<think>`` writes them."""
    steps = ", ".join(text for text, _ in equation_steps(expr)) or expr
    return f"Using {list(task.numbers)} to make {task.target}: {steps}."


def wrong_fix(task: CountdownTask, rng: random.Random) -> str | None:
    """An equation with the task's numbers that does not reach the target (None: none found)."""
    for _ in range(_MAX_REDRAWS):
        expr = _wrong_expression(task, WRONG_VALUE, rng)
        if expr is None:
            continue
        try:
            evaluate_expression(expr)
        except ZeroDivisionError:
            continue
        return expr
    return None


#: The ``restate`` reflection as an ``r3 evaluate run --given-reflection`` template (ground-truth fields).
RESTATEMENT = "I must use each of {numbers} exactly once to make {target}."


def restate_text(numbers: Sequence[int], target: int) -> str:
    """The reflection of the ``restate`` style: the numbers and target restated, last, so that the
    retry copies them from a near-fixed offset."""
    return RESTATEMENT.format(numbers=list(numbers), target=target)


def wrong_numbers(task: CountdownTask, rng: random.Random) -> list[int]:
    """The task's numbers with one miscopied: another of them (reused) or a number not in the list."""
    numbers = list(task.numbers)
    i = rng.randrange(len(numbers))
    others = [v for j, v in enumerate(numbers) if j != i and v != numbers[i]]
    if others and rng.random() < 0.5:
        numbers[i] = rng.choice(others)
        return numbers
    choices = [v for v in range(1, max(numbers) + 11) if v not in task.numbers]
    numbers[i] = rng.choice(choices)
    return numbers


def _with_numbers(expr: str, given: Sequence[int], shown: Sequence[int]) -> str:
    """``expr`` with each literal that is one of ``given`` replaced by its counterpart in ``shown``."""
    pool = list(zip(given, shown, strict=True))
    out, last = [], 0
    for m in _LITERAL.finditer(expr):
        value = int(m.group())
        for k, (g, v) in enumerate(pool):
            if g == value:
                out.append(expr[last : m.start()] + str(v))
                last = m.end()
                del pool[k]
                break
    return "".join(out) + expr[last:]


def _numbers_kind(task: CountdownTask, expr: str) -> str:
    outside, _, _ = _number_errors(task, expr)
    return NOT_IN_LIST if outside else REUSED


def reflection_text(task: CountdownTask, attempt: Attempt, diagnosis: str, rng: random.Random) -> str:
    if diagnosis == ACCURATE:
        return accurate_diagnosis(task, attempt)
    if diagnosis == VAGUE:
        return rng.choice(_VAGUE)
    if diagnosis == WRONG:
        return wrong_diagnosis(task, attempt, rng)
    raise ValueError(f"unknown diagnosis {diagnosis!r}; known: {DIAGNOSES}")


# ----------------------------------------------------------------------------------------- conversations


def _pick(weights: Mapping[str, float], rng: random.Random) -> str:
    keys = [k for k, w in weights.items() if w > 0]
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}


def _apply(op: str, a: Fraction, b: Fraction) -> Fraction | None:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return None if b == 0 else a / b


def _print(op: str, left: str, left_prec: int, right: str, right_prec: int) -> str:
    """``left op right`` with the fewest parentheses (leaves have precedence 3)."""
    prec = _PRECEDENCE[op]
    if left_prec < prec:
        left = f"({left})"
    if right_prec < prec or (right_prec == prec and op in "-/"):
        right = f"({right})"
    return f"{left} {op} {right}"


def canonical_solution(numbers: Sequence[int], target: int) -> str | None:
    """The first solution in a fixed search order, or None when there is none.

    Two-operation equations ``(x op y) op z`` come first, with ``x, y, z`` in the order the numbers
    are given before other orders, operators in the order + - * /; then ``x op (y op z)``;
    non-negative integer intermediate values before negative ones, integers before fractions. A
    small model learns one such rule far sooner than the generator's random witness, whose operand
    order it cannot predict. Any count of numbers: the same order, recursively over the first merge.
    """
    return _canonical(tuple(numbers), target)


@lru_cache(maxsize=65536)
def _canonical(numbers: tuple[int, ...], target: int) -> str | None:
    goal = Fraction(target)
    leaves = [(Fraction(n), str(n), 3) for n in numbers]
    for level in (0, 1, 2):  # 0: non-negative integers, 1: integers, 2: any intermediate value
        found = _search(leaves, goal, level)
        if found is not None:
            return found
    return None


def _search(pool: list[tuple[Fraction, str, int]], goal: Fraction, level: int) -> str | None:
    if len(pool) == 1:
        return pool[0][1] if pool[0][0] == goal else None
    n = len(pool)
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    # Merging the first two in order first; "x op (y op z)" shapes come from merging a later pair first.
    for i, j in sorted(pairs, key=lambda ij: (min(ij) != 0 or max(ij) != 1, ij[0] > ij[1], ij)):
        for op in "+-*/":
            (va, ta, pa), (vb, tb, pb) = pool[i], pool[j]
            value = _apply(op, va, vb)
            if value is None:
                continue
            if len(pool) > 2 and ((level < 2 and value.denominator != 1) or (level < 1 and value < 0)):
                continue
            rest = [p for k, p in enumerate(pool) if k not in (i, j)]
            merged = (value, _print(op, ta, pa, tb, pb), _PRECEDENCE[op])
            found = _search([merged, *rest] if min(i, j) == 0 else [*rest, merged], goal, level)
            if found is not None:
                return found
    return None


def build_conversation(
    task: CountdownTask, rng: random.Random, config: CorpusConfig = CorpusConfig()
) -> R3Conversation:
    """One episode for ``task``: a right first attempt, or wrong -> reflection -> retry, or (the
    control) wrong -> plain retry prompt -> retry."""
    if config.solution == "canonical":
        canonical = canonical_solution(task.numbers, task.target)
        if canonical is not None:
            task = replace(task, solution=canonical)
    registered = get_task("countdown")
    messages = countdown_messages(task.target, task.numbers)
    first: Attempt | None = None
    if rng.random() >= config.first_right:
        kind = _pick(config.error_weights, rng)
        first = wrong_attempt(task, kind, rng, config.think)
    if first is None:  # a right first attempt (or no error of that kind exists for this task)
        first = right_attempt(task, config.think)
        messages.append({"role": "assistant", "content": first.text})
        return R3Conversation(task, messages, first)
    messages.append({"role": "assistant", "content": first.text})
    plain = rng.random() < config.plain_retry
    diagnosis: str | None = None
    reflection: str | None = None
    if plain:  # the control: the plain retry prompt straight after the failed attempt
        messages.append({"role": "user", "content": registered.plain_retry_prompt})
        success = config.plain_retry_success
    else:
        diagnosis = _pick(config.diagnosis_weights, rng)
        style = config.reflection_style
        if diagnosis == VAGUE:
            reflection = rng.choice(_VAGUE[: config.vague_variants])
        elif style == "diagnose":
            reflection = reflection_text(task, first, diagnosis, rng)
        success = config.retry_success.get(diagnosis, 0.0)
        carried: str | None = None  # the retry's equation when the reflection decides it
        if diagnosis != VAGUE and style == "propose":
            carried = task.solution if diagnosis == ACCURATE else wrong_fix(task, rng)
            if carried is not None:
                reflection = fix_text(task, carried)
        elif diagnosis != VAGUE and style == "restate" and task.solution is not None:
            shown = list(task.numbers) if diagnosis == ACCURATE else wrong_numbers(task, rng)
            reflection = restate_text(shown, task.target)
            carried = _with_numbers(task.solution, task.numbers, shown)
        if reflection is None:  # nothing to propose for this task (no witness): diagnose instead
            reflection = reflection_text(task, first, diagnosis, rng)
        messages.append({"role": "user", "content": registered.reflection_prompt})
        messages.append({"role": "assistant", "content": reflection})
        retry_prompt = registered.retry_prompt if config.retry_prompt is None else config.retry_prompt
        if retry_prompt:
            messages.append({"role": "user", "content": retry_prompt})
        if carried is not None:  # the retry follows the reflection, right or wrong
            value = _value_text(evaluate_expression(carried))
            if diagnosis == ACCURATE:
                kind = RIGHT
            else:
                kind = WRONG_VALUE if style == "propose" else _numbers_kind(task, carried)
            retry = _label(task, _attempt_text(carried, value, config.think), carried, kind)
            messages.append({"role": "assistant", "content": retry.text})
            return R3Conversation(task, messages, first, diagnosis, reflection, retry, carried=True)
    retry: Attempt | None = None
    if rng.random() >= success:
        kind = first.kind if rng.random() < config.repeat_error else _pick(config.error_weights, rng)
        retry = wrong_attempt(task, kind, rng, config.think)
    if retry is None:
        retry = right_attempt(task, config.think)
    messages.append({"role": "assistant", "content": retry.text})
    return R3Conversation(task, messages, first, diagnosis, reflection, retry, plain_retry=plain)


def build_conversations(
    tasks: Sequence[CountdownTask],
    seed: int,
    config: CorpusConfig = CorpusConfig(),
    *,
    per_task: int = 1,
    progress: bool | None = None,
) -> list[R3Conversation]:
    """``per_task`` conversations for every task, deterministic for ``seed``."""
    rng = random.Random(seed)
    out: list[R3Conversation] = []
    disable = None if progress is None else not progress
    for task in tqdm(tasks, desc="building conversations", unit="task", disable=disable):
        for _ in range(per_task):
            out.append(build_conversation(task, rng, config))
    return out


@dataclass(frozen=True)
class TaskSplits:
    """Disjoint task sets: held-out test tasks, RL training tasks, SFT corpus tasks, and dev tasks
    (for choosing and stopping, so that nothing is tuned on the test tasks)."""

    test: list[CountdownTask]
    rl_train: list[CountdownTask]
    sft: list[CountdownTask]
    dev: list[CountdownTask] = field(default_factory=list)


def split_tasks(
    n_test: int,
    n_rl_train: int,
    n_sft: int,
    seed: int,
    operand_counts: Sequence[int] = DEFAULT_OPERAND_COUNTS,
    *,
    n_dev: int = 0,
    number_range: tuple[int, int] | None = None,
    target_range: tuple[int, int] | None = None,
) -> TaskSplits:
    """Draw all tasks in one call, so no test task appears in the dev set, the SFT corpus or the RL data.

    ``number_range`` and ``target_range`` (inclusive) default to the generator's 1..100. The draw
    order is test, dev, RL, SFT, so ``n_dev=0`` gives the splits of earlier versions.
    """
    if min(n_test, n_rl_train, n_sft, n_dev) < 0:
        raise ValueError(f"split sizes must be >= 0, got test={n_test} dev={n_dev} rl_train={n_rl_train} sft={n_sft}")
    ranges: dict[str, tuple[int, int]] = {}
    if number_range is not None:
        ranges["number_range"] = tuple(number_range)
    if target_range is not None:
        ranges["target_range"] = tuple(target_range)
    total = n_test + n_dev + n_rl_train + n_sft
    tasks = generate_tasks(total, seed, operand_counts=operand_counts, progress=False, **ranges)
    a, b, c = n_test, n_test + n_dev, n_test + n_dev + n_rl_train
    return TaskSplits(test=tasks[:a], rl_train=tasks[b:c], sft=tasks[c:], dev=tasks[a:b])


def write_rl_data(splits: TaskSplits, output_dir: str | os.PathLike) -> dict[str, Path]:
    """``train.parquet`` (RL tasks), ``test.parquet`` and, when there are dev tasks, ``dev.parquet``,
    in the layout of ``r3 data countdown``."""
    rows = {
        "train": [task_row(t, "train", i) for i, t in enumerate(splits.rl_train)],
        "test": [task_row(t, "test", i) for i, t in enumerate(splits.test)],
        "dev": [task_row(t, "dev", i) for i, t in enumerate(splits.dev)],
    }
    return write_splits(output_dir, {k: v for k, v in rows.items() if v})


# ----------------------------------------------------------------------------------------- tokens


@dataclass(frozen=True)
class ChatPieces:
    """The chat template split around each role's content, with the assistant's end-of-turn ids."""

    header: Mapping[str, list[int]]
    footer: Mapping[str, list[int]]
    #: How many leading footer ids of an assistant turn are trained (the end-of-turn token).
    trained_footer: int


_SENTINEL = "\x00R3SENTINEL\x00"


def chat_pieces(tokenizer: Any, roles: Sequence[str] = ("system", "user", "assistant")) -> ChatPieces:
    """Split the chat template around a sentinel content for each role, then tokenize the pieces."""
    header: dict[str, list[int]] = {}
    footer: dict[str, list[int]] = {}
    for role in roles:
        text = tokenizer.apply_chat_template([{"role": role, "content": _SENTINEL}], tokenize=False)
        if text.count(_SENTINEL) != 1:
            raise ValueError(f"the chat template does not render a lone {role!r} message verbatim; cannot split it")
        before, after = text.split(_SENTINEL)
        header[role] = tokenizer(before, add_special_tokens=False)["input_ids"]
        footer[role] = tokenizer(after, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    trained = footer["assistant"].index(eos) + 1 if eos in footer["assistant"] else 0
    return ChatPieces(header, footer, trained)


def tokenize_conversations(
    tokenizer: Any,
    conversations: Sequence[Sequence[Mapping[str, str]]],
    *,
    check: bool = True,
    trained: Sequence[Sequence[bool]] | None = None,
) -> tuple[list[list[int]], list[list[int]]]:
    """Token ids and loss masks (1 on assistant content and its end-of-turn token) for each chat.

    ``trained`` (one flag per message, e.g. :meth:`R3Conversation.trained_turns`) limits the loss to
    the flagged assistant turns; None trains every assistant turn.

    The ids equal ``apply_chat_template(messages)``: each distinct message text is tokenized once
    (one batched call to the fast tokenizer) between the template's fixed pieces. ``check`` renders
    the first conversation through the template and raises if the two disagree (a template or
    tokenizer whose pieces do not tokenize independently).
    """
    pieces = chat_pieces(tokenizer)
    unique: dict[str, int] = {}
    for messages in conversations:
        for m in messages:
            unique.setdefault(m["content"], len(unique))
    encoded = encode_texts(tokenizer, list(unique))
    all_ids: list[list[int]] = []
    all_masks: list[list[int]] = []
    if trained is not None and len(trained) != len(conversations):
        raise ValueError(f"trained: {len(trained)} flag lists for {len(conversations)} conversations")
    for k, messages in enumerate(conversations):
        ids: list[int] = []
        mask: list[int] = []
        flags = trained[k] if trained is not None else [True] * len(messages)
        if len(flags) != len(messages):
            raise ValueError(f"trained[{k}]: {len(flags)} flags for {len(messages)} messages")
        for m, flag in zip(messages, flags, strict=True):
            role = m["role"]
            if role not in pieces.header:
                raise ValueError(f"unknown role {role!r} in a conversation; known: {sorted(pieces.header)}")
            content = encoded[unique[m["content"]]]
            head, foot = pieces.header[role], pieces.footer[role]
            ids += head
            ids += content
            ids += foot
            if role == "assistant" and flag:
                n_train = pieces.trained_footer
                mask += [0] * len(head) + [1] * (len(content) + n_train) + [0] * (len(foot) - n_train)
            else:
                mask += [0] * (len(head) + len(content) + len(foot))
        all_ids.append(ids)
        all_masks.append(mask)
    if check:
        for k in range(min(len(conversations), 8)):
            if _template_ids(tokenizer, conversations[k]) != all_ids[k]:
                raise ValueError(
                    f"piecewise tokenization of conversation {k} disagrees with apply_chat_template for this "
                    "tokenizer; its pre-tokenizer merges across message boundaries"
                )
    return all_ids, all_masks


_DIGIT = re.compile(r"(\d)")


def isolates_digits(tokenizer: Any) -> bool:
    """True when the fast tokenizer's first pre-tokenization step splits every digit on its own."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return False
    pre = json.loads(backend.to_str()).get("pre_tokenizer") or {}
    first = pre["pretokenizers"][0] if pre.get("type") == "Sequence" and pre.get("pretokenizers") else pre
    return first.get("type") == "Digits" and bool(first.get("individual_digits"))


def encode_texts(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    """Token ids of each text without special tokens, as ``tokenizer(text)`` gives them.

    With a digit-isolating tokenizer (the countdown tokenizer) no token spans a digit boundary, so a
    text is the concatenation of its digits and the pieces between them; those pieces repeat across
    the corpus (the prompt template, operators, reflection phrases), so each is tokenized once and
    the corpus is assembled from a cache. Other tokenizers get one batched call.
    """
    if not texts:
        return []
    if not isolates_digits(tokenizer):
        return [list(x) for x in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]
    split = [_DIGIT.split(t) for t in texts]
    pieces = list(dict.fromkeys(p for parts in split for p in parts if p))
    piece_ids = dict(zip(pieces, tokenizer(pieces, add_special_tokens=False)["input_ids"], strict=True))
    out = []
    for parts in split:
        ids: list[int] = []
        for p in parts:
            if p:
                ids += piece_ids[p]
        out.append(ids)
    return out


def _template_ids(tokenizer: Any, messages: Sequence[Mapping[str, str]]) -> list[int]:
    text = tokenizer.apply_chat_template(list(messages), tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


# ----------------------------------------------------------------------------------------- writing


def write_corpus(
    path: str | os.PathLike,
    conversations: Sequence[R3Conversation],
    input_ids: Sequence[Sequence[int]] | None = None,
    loss_mask: Sequence[Sequence[int]] | None = None,
) -> Path:
    """Write conversations (and tokens, if given) to ``.parquet`` or ``.jsonl``, atomically."""
    path = Path(path).expanduser()
    rows = [c.record() for c in conversations]
    if input_ids is not None:
        if loss_mask is None or len(input_ids) != len(rows) or len(loss_mask) != len(rows):
            raise ValueError("input_ids and loss_mask must both be given, one per conversation")
        for row, ids, mask in zip(rows, input_ids, loss_mask, strict=True):
            row["input_ids"] = list(ids)
            row["loss_mask"] = list(mask)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        if path.suffix == ".parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            pq.write_table(pa.Table.from_pylist(rows), tmp)
        elif path.suffix == ".jsonl":
            with open(tmp, "w", encoding="utf-8") as f:
                for row in rows:
                    f.write(json.dumps(row) + "\n")
        else:
            raise ValueError(f"{path}: corpus files must end in .parquet or .jsonl")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def corpus_stats(conversations: Sequence[R3Conversation]) -> dict[str, Any]:
    """Mix actually produced: first-try accuracy, retry accuracy by diagnosis ("plain": no reflection),
    kinds."""
    n = len(conversations)
    failed = [c for c in conversations if not c.first.passed]
    by_diag: dict[str, list[bool]] = {}
    for c in failed:
        by_diag.setdefault("plain" if c.plain_retry else c.diagnosis or "", []).append(bool(c.retry and c.retry.passed))
    return {
        "conversations": n,
        "first_try_accuracy": sum(c.first.passed for c in conversations) / max(n, 1),
        "first_kinds": dict(Counter(c.first.kind for c in conversations)),
        "retry_accuracy_by_diagnosis": {k: sum(v) / len(v) for k, v in sorted(by_diag.items())},
        "second_try_accuracy": sum(c.first.passed or bool(c.retry and c.retry.passed) for c in conversations)
        / max(n, 1),
    }


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m r3_plugin.evidence.corpus",
        description=(
            "Write a synthetic corpus of R3 countdown conversations (attempt, reflection, retry), every attempt "
            "labelled by the countdown verifier, with token ids and an assistant-only loss mask, plus the RL "
            "train/test task parquets. Prints conversations/second."
        ),
    )
    p.add_argument("--output-dir", default="~/data/r3/evidence", help="where to write (default: %(default)s)")
    p.add_argument("--conversations", type=int, default=100_000, help="SFT conversations (default: %(default)s)")
    p.add_argument("--test-size", type=int, default=1000, help="held-out test tasks (default: %(default)s)")
    p.add_argument("--rl-train-size", type=int, default=20_000, help="RL training tasks (default: %(default)s)")
    p.add_argument("--per-task", type=int, default=1, help="conversations per SFT task (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="seed for tasks and conversations (default: %(default)s)")
    p.add_argument("--vocab-size", type=int, default=1024, help="tokenizer vocabulary (default: %(default)s)")
    p.add_argument(
        "--number-tokens", action="store_true", help="one token per frequent number (default: one per digit)"
    )
    add_distribution_arguments(p)
    add_mix_arguments(p)
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet", help="corpus file format")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    from r3_plugin.evidence.tokenizer import build_countdown_tokenizer

    args = _parse_args(argv)
    out = Path(args.output_dir).expanduser()
    config = mix_from_args(args)
    distribution = distribution_from_args(args)
    t0 = time.perf_counter()
    splits = distribution.split(args.test_size, args.rl_train_size, args.conversations, args.seed)
    t1 = time.perf_counter()
    convs = build_conversations(
        splits.sft, args.seed + 1, config, per_task=args.per_task, progress=False if args.no_progress else None
    )
    t2 = time.perf_counter()
    tokenizer = build_countdown_tokenizer(
        _tokenizer_texts(tokenizer_sample(convs)), args.vocab_size, split_digits=not args.number_tokens
    )
    t3 = time.perf_counter()
    ids, masks = tokenize_conversations(
        tokenizer,
        [c.messages for c in convs],
        trained=[c.trained_by(config) for c in convs],
    )
    t4 = time.perf_counter()
    write_rl_data(splits, out / "data")
    tokenizer.save_pretrained(out / "tokenizer")
    corpus_path = write_corpus(out / f"sft.{args.format}", convs, ids, masks)
    t5 = time.perf_counter()
    n = len(convs)
    report = {
        **corpus_stats(convs),
        "tokens": sum(map(len, ids)),
        "trained_tokens": sum(map(sum, masks)),
        "seconds": {
            "tasks": round(t1 - t0, 2),
            "conversations": round(t2 - t1, 2),
            "tokenizer_training": round(t3 - t2, 2),
            "tokenization": round(t4 - t3, 2),
            "writing": round(t5 - t4, 2),
        },
        "conversations_per_second_excluding_writing": round(n / max(t4 - t0, 1e-9)),
        "corpus": str(corpus_path),
    }
    json.dump(report, sys.stdout, indent=2)
    print()
    return 0


def tokenizer_sample(conversations: Sequence[R3Conversation], n: int = 5000) -> list[list[dict[str, str]]]:
    """The first ``n`` conversations' messages: enough text to learn the corpus's merges."""
    return [c.messages for c in conversations[:n]]


def _tokenizer_texts(conversations: Sequence[Sequence[Mapping[str, str]]]) -> list[str]:
    return [m["content"] for msgs in conversations for m in msgs]


def corpus_record_config(config: CorpusConfig) -> dict[str, Any]:
    """The mix as plain data (stored next to checkpoints)."""
    return {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in asdict(config).items()}


if __name__ == "__main__":
    raise SystemExit(main())
