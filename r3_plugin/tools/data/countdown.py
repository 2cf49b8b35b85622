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
"""Countdown data: TinyZero's Countdown-Tasks-3to4 (or a local copy), or a seeded synthetic generator.

The synthetic generator draws 3 or 4 numbers in 1..100, combines them with a random expression
tree evaluated exactly (fractions), and keeps the task when the value is an integer target in
1..100. Every synthetic task is therefore solvable by construction; the witness equation is
re-checked by an independent parser (:func:`check_solution`) and stored in
``extra_info["solution"]``. The distribution matches the Hub dataset's ranges (3 or 4 numbers,
numbers and targets in 1..100), not its exact frequencies.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from r3_plugin.policy.config import AGENT_NAME
from r3_plugin.policy.verifiers.countdown import countdown_verify
from r3_plugin.tools.data.io import SPLITS, DataBuildError, load_rows, split_indices, where, write_splits
from r3_plugin.tools.data.prompts import countdown_messages

DATA_SOURCE = "countdown"
ABILITY = "math"
HF_DATASET = "Jiayi-Pan/Countdown-Tasks-3to4"
SYNTHETIC = "synthetic"
DEFAULT_OUTPUT_DIR = "~/data/r3/countdown"
DEFAULT_TEST_SIZE = 15_000  # the paper's countdown test set
DEFAULT_SYNTHETIC_TRAIN_SIZE = 100_000
MIN_NUMBER, MAX_NUMBER = 1, 100
MIN_TARGET, MAX_TARGET = 1, 100
OPERAND_COUNTS = (3, 4)

# operator precedence for printing with the fewest parentheses
_PREC = {"+": 1, "-": 1, "*": 2, "/": 2}
_LEAF = 3


@dataclass(frozen=True)
class CountdownTask:
    """One countdown problem; ``solution`` is a witness equation (synthetic tasks only)."""

    target: int
    numbers: tuple[int, ...]
    solution: str | None = None
    source_row: int | None = None


# --------------------------------------------------------------------------- synthetic generator


def _combine(a: tuple[Fraction, str, int], b: tuple[Fraction, str, int], op: str) -> tuple[Fraction, str, int] | None:
    (va, ta, pa), (vb, tb, pb) = a, b
    if op == "+":
        value = va + vb
    elif op == "-":
        value = va - vb
    elif op == "*":
        value = va * vb
    else:
        if vb == 0:
            return None
        value = va / vb
    prec = _PREC[op]
    left = f"({ta})" if pa < prec else ta
    right = f"({tb})" if pb < prec or (pb == prec and op in "-/") else tb
    return value, f"{left} {op} {right}", prec


def random_equation(numbers: Sequence[int], rng: random.Random) -> tuple[Fraction, str] | None:
    """A random expression using every number once: repeatedly merge two random sub-expressions.

    Values are kept as integer (numerator, denominator) pairs rather than Fractions: the generator
    draws about a dozen candidates per kept task, and this is its hot loop.
    """
    pool = [(n, 1, str(n), _LEAF) for n in numbers]
    randrange = rng.randrange
    while len(pool) > 1:
        size = len(pool)
        i = randrange(size)
        j = randrange(size - 1)
        if j >= i:
            j += 1
        op = "+-*/"[randrange(4)]
        na, da, ta, pa = pool[i]
        nb, db, tb, pb = pool[j]
        if op == "+":
            num, den = na * db + nb * da, da * db
        elif op == "-":
            num, den = na * db - nb * da, da * db
        elif op == "*":
            num, den = na * nb, da * db
        else:
            if nb == 0:
                return None
            num, den = na * db, da * nb
            if den < 0:
                num, den = -num, -den
        prec = _PREC[op]
        left = f"({ta})" if pa < prec else ta
        right = f"({tb})" if pb < prec or (pb == prec and op in "-/") else tb
        pool = [p for k, p in enumerate(pool) if k != i and k != j]
        pool.append((num, den, f"{left} {op} {right}", prec))
    num, den, text, _ = pool[0]
    return Fraction(num, den), text


def generate_task(
    rng: random.Random,
    *,
    operand_counts: Sequence[int] = OPERAND_COUNTS,
    number_range: tuple[int, int] = (MIN_NUMBER, MAX_NUMBER),
    target_range: tuple[int, int] = (MIN_TARGET, MAX_TARGET),
    max_tries: int = 10_000,
) -> CountdownTask:
    """Draw one solvable task: random numbers, a random equation over them, its value as the target."""
    lo, hi = number_range
    tlo, thi = target_range
    count = rng.choice(operand_counts)  # drawn once, so rejections do not skew the 3-vs-4 mix
    for _ in range(max_tries):
        numbers = tuple(rng.randint(lo, hi) for _ in range(count))
        result = random_equation(numbers, rng)
        if result is None:
            continue
        value, text = result
        if value.denominator != 1 or not tlo <= value <= thi:
            continue
        target = int(value)
        if not check_solution(text, numbers, target):  # the proof, checked independently of the generator
            raise AssertionError(f"generator produced a wrong witness {text!r} for {numbers} -> {target}")
        return CountdownTask(target, numbers, text)
    raise DataBuildError(f"no solvable task found in {max_tries} draws; check the number and target ranges")


def generate_tasks(
    n: int,
    seed: int,
    *,
    operand_counts: Sequence[int] = OPERAND_COUNTS,
    progress: bool | None = None,
    **kwargs: Any,
) -> list[CountdownTask]:
    """``n`` distinct solvable tasks, deterministic for ``seed``.

    Duplicates are redrawn (so the held-out test split never repeats a training task) with the same
    count of numbers, so that the smaller 3-number space, which collides more often, keeps its share.
    """
    rng = random.Random(seed)
    seen: set[tuple[int, tuple[int, ...]]] = set()
    tasks: list[CountdownTask] = []
    misses = 0
    with tqdm(total=n, desc="generating countdown tasks", unit="task", disable=_disable(progress)) as bar:
        while len(tasks) < n:
            count = (rng.choice(operand_counts),)
            while True:
                task = generate_task(rng, operand_counts=count, **kwargs)
                key = (task.target, tuple(sorted(task.numbers)))
                if key not in seen:
                    break
                misses += 1
                if misses > 100 * n + 10_000:
                    raise DataBuildError(
                        f"could not draw {n} distinct tasks; the number and target ranges are too small"
                    )
            seen.add(key)
            tasks.append(task)
            bar.update(1)
    return tasks


# --------------------------------------------------------------------------- solvability checker


def check_solution(equation: str, numbers: Sequence[int], target: int) -> bool:
    """True when ``equation`` is a correct answer to the task, judged by the countdown verifier itself
    (one rule for data, rewards and evaluation)."""
    if not isinstance(equation, str):
        return False
    result = countdown_verify(f"<answer>{equation}</answer>", {"target": target, "numbers": list(numbers)})
    return result.passed


def solve(numbers: Sequence[int], target: int) -> str | None:
    """Exhaustive search for an equation over ``numbers`` that equals ``target``; None if there is none.

    Fine for 3-4 numbers (a few thousand expressions); used to check tasks from outside sources.
    """
    goal = Fraction(target)

    def search(pool: list[tuple[Fraction, str, int]]) -> str | None:
        if len(pool) == 1:
            return pool[0][1] if pool[0][0] == goal else None
        for i in range(len(pool)):
            for j in range(len(pool)):
                if i == j:
                    continue
                rest = [p for k, p in enumerate(pool) if k not in (i, j)]
                for op in "+-*/":
                    if op in "+*" and i > j:  # commutative: one order is enough
                        continue
                    merged = _combine(pool[i], pool[j], op)
                    if merged is not None:
                        found = search(rest + [merged])
                        if found is not None:
                            return found
        return None

    return search([(Fraction(n), str(n), _LEAF) for n in numbers])


# --------------------------------------------------------------------------- loading sources


def _as_int(value: Any) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if hasattr(value, "item") and not isinstance(value, str | bytes):  # numpy scalars
        return _as_int(value.item())
    return None


def parse_task(record: Any, origin: str, row: int) -> CountdownTask:
    """Validate one input row (``target`` and ``nums``, as in Countdown-Tasks-3to4)."""
    at = where(origin, row)
    if not isinstance(record, dict):
        raise DataBuildError(f"{at}: expected an object with 'target' and 'nums', got {type(record).__name__}")
    if "target" not in record:
        raise DataBuildError(f"{at}: missing 'target' (keys: {sorted(record)})")
    nums = record.get("nums", record.get("numbers"))
    if nums is None:
        raise DataBuildError(f"{at}: missing 'nums' (keys: {sorted(record)})")
    target = _as_int(record["target"])
    if target is None:
        raise DataBuildError(f"{at}: 'target' must be an integer, got {record['target']!r}")
    if isinstance(nums, str | bytes) or not hasattr(nums, "__iter__"):
        raise DataBuildError(f"{at}: 'nums' must be a list of integers, got {nums!r}")
    numbers = [_as_int(n) for n in nums]
    if len(numbers) < 2 or any(n is None for n in numbers):
        raise DataBuildError(f"{at}: 'nums' must be a list of at least 2 integers, got {list(nums)!r}")
    return CountdownTask(target, tuple(numbers), None, row)  # type: ignore[arg-type]


def load_tasks(source: str, *, max_rows: int | None = None, progress: bool | None = None) -> list[CountdownTask]:
    """Tasks from a local file or a Hub dataset, each validated (errors name the file and row)."""
    rows = load_rows(
        source,
        max_rows=max_rows,
        hf_hint="For offline use, pass --source synthetic (a seeded generator with the same ranges).",
    )
    it = tqdm(rows, desc=f"reading {os.path.basename(source) or source}", unit="row", disable=_disable(progress))
    return [parse_task(r.data, source, r.row) for r in it]


# --------------------------------------------------------------------------- building


def task_row(task: CountdownTask, split: str, index: int, system_prompt: str | None = None) -> dict[str, Any]:
    """One parquet row in the layout verl's RLHFDataset and R3's countdown verifier read."""
    numbers = list(task.numbers)
    extra: dict[str, Any] = {"index": index, "split": split}
    if task.solution is not None:
        extra["solution"] = task.solution
    if task.source_row is not None:
        extra["source_row"] = task.source_row
    return {
        "data_source": DATA_SOURCE,
        "prompt": countdown_messages(task.target, numbers, system_prompt),
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": {"target": task.target, "numbers": numbers}},
        "extra_info": extra,
        "agent_name": AGENT_NAME,
    }


def build_countdown(
    output_dir: str | os.PathLike | None = None,
    *,
    source: str = SYNTHETIC,
    train_size: int | None = None,
    test_size: int = DEFAULT_TEST_SIZE,
    seed: int = 0,
    max_rows: int | None = None,
    system_prompt: str | None = None,
    progress: bool | None = None,
    distribution: Mapping[str, Any] | None = None,
) -> dict[str, Path]:
    """Write ``train.parquet`` and ``test.parquet`` for countdown; returns ``{"train": path, "test": path}``.

    ``source``: ``"synthetic"``, a local .parquet/.json/.jsonl file, or a Hub dataset name. The test
    split is a seeded random hold-out of ``test_size`` rows; ``train_size`` None uses every other row
    (synthetic: generates ``DEFAULT_SYNTHETIC_TRAIN_SIZE``). ``max_rows`` caps the rows read (or, for
    synthetic, the total generated). ``distribution`` (synthetic only): :func:`generate_task`'s
    ``operand_counts``, ``number_range`` and ``target_range``, e.g. a model's training distribution
    (:func:`model_distribution`). Same arguments, same files.
    """
    output_dir = output_dir if output_dir is not None else DEFAULT_OUTPUT_DIR
    if source == SYNTHETIC:
        if max_rows is not None:
            total = max_rows
        else:
            total = (train_size if train_size is not None else DEFAULT_SYNTHETIC_TRAIN_SIZE) + test_size
        if total <= 0:
            raise DataBuildError(f"nothing to generate (total {total})")
        tasks = generate_tasks(total, seed, progress=progress, **_distribution_kwargs(distribution))
        origin = f"the synthetic generator (--max-rows {max_rows})" if max_rows is not None else "synthetic"
    else:
        tasks = load_tasks(source, max_rows=max_rows, progress=progress)
        origin = source
    train_idx, test_idx = split_indices(len(tasks), test_size, train_size, seed, origin)
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "test": []}
    for split, indices in (("train", train_idx), ("test", test_idx)):
        if not indices:
            continue
        it = tqdm(indices, desc=f"building {split}", unit="row", disable=_disable(progress))
        splits[split] = [task_row(tasks[k], split, i, system_prompt) for i, k in enumerate(it)]
    if not splits["test"]:
        del splits["test"]
    return write_splits(output_dir, splits, known_splits=SPLITS)


_DISTRIBUTION_KEYS = ("operand_counts", "number_range", "target_range")


def _distribution_kwargs(distribution: Mapping[str, Any] | None) -> dict[str, Any]:
    if not distribution:
        return {}
    unknown = set(distribution) - set(_DISTRIBUTION_KEYS)
    if unknown:
        raise DataBuildError(f"distribution: unknown keys {sorted(unknown)}; known: {', '.join(_DISTRIBUTION_KEYS)}")
    return {k: tuple(v) for k, v in distribution.items()}


def model_distribution(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The task distribution a model was trained on, from the ``r3_evidence.json`` that
    ``r3_plugin.evidence.sft`` saves beside it; None for any other model. A model trained on 2 numbers
    in 1..50 gets all-zero rewards on the default 3-4 numbers in 1..100, so the demo asks it for its own."""
    path = Path(model_dir) / "r3_evidence.json"
    if not path.is_file():
        return None
    try:
        recorded = json.loads(path.read_text(encoding="utf-8")).get("distribution") or {}
    except (OSError, ValueError) as exc:
        raise DataBuildError(f"{path}: not readable JSON ({exc})") from None
    picked = {k: recorded[k] for k in _DISTRIBUTION_KEYS if k in recorded}
    return picked or None


#: Episode prompts a model of ``r3_plugin.evidence`` may have been trained with other than the task's
#: (the ``r3.*`` keys training accepts; the corpus records ``retry_prompt``).
_PROMPT_KEYS = ("reflection_prompt", "retry_prompt")


def model_prompts(model_dir: str | os.PathLike) -> dict[str, str]:
    """The episode prompts a model was trained with where they differ from the task's, from the
    ``corpus_config`` of its ``r3_evidence.json`` (e.g. ``{"retry_prompt": ""}``: the retry follows
    the reflection at once); ``{}`` for any other model. Training (``r3.<key>``) and evaluation
    (``--retry-prompt`` ...) must pose the episode the way the model learnt it."""
    path = Path(model_dir) / "r3_evidence.json"
    if not path.is_file():
        return {}
    try:
        corpus = json.loads(path.read_text(encoding="utf-8")).get("corpus_config") or {}
    except (OSError, ValueError) as exc:
        raise DataBuildError(f"{path}: not readable JSON ({exc})") from None
    return {k: corpus[k] for k in _PROMPT_KEYS if isinstance(corpus.get(k), str)}


def describe_distribution(distribution: Mapping[str, Any] | None = None) -> str:
    """``"2 numbers in 1..50, targets in 1..100"``: the synthetic generator's tasks, in words."""
    d = _distribution_kwargs(distribution)
    counts = d.get("operand_counts", OPERAND_COUNTS)
    lo, hi = d.get("number_range", (MIN_NUMBER, MAX_NUMBER))
    tlo, thi = d.get("target_range", (MIN_TARGET, MAX_TARGET))
    return f"{' or '.join(map(str, counts))} numbers in {lo}..{hi}, targets in {tlo}..{thi}"


def _disable(progress: bool | None) -> bool | None:
    """tqdm's ``disable``: None shows bars only on a terminal."""
    return None if progress is None else not progress
