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
"""Which reflections an evidence model writes, and how often the retry after each kind passes.

    python -m r3_plugin.evidence.reflections runs/evidence/rl-reflection          # verl's rollout dumps
    python -m r3_plugin.evidence.reflections runs/evidence/eval-sft/episodes.jsonl  # r3 evaluate run

R3 can only raise reflect-then-retry accuracy if some reflections lead to passing retries more often
than others. This counts, per training step (from the ``rollout/N.jsonl`` files verl's trainer writes
with ``trainer.rollout_data_dir``) or for one evaluation, the failed episodes by the kind of their
reflection (the corpus's: a restatement of the task with the right numbers and target, one with
wrong ones, the vague wording, anything else) and how many of each kind had a passing retry.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

KINDS = ("restate-right", "restate-wrong", "vague", "other")
_RESTATED = re.compile(r"\[([^\]]*)\][^\[]*?to make (\d+)")
_VAGUE_OPENINGS = (
    "I made a mistake",
    "My answer was wrong",
    "Something in my equation",
    "I was too quick",
    "The answer did not work",
)
_TURN = "\nassistant\n"


def reflection_kind(reflection: str, numbers: Sequence[int], target: int) -> str:
    """``restate-right`` when the reflection restates the task's numbers (any order) and target,
    ``restate-wrong`` when it restates others, ``vague`` for the corpus's vague wordings, else ``other``."""
    match = _RESTATED.search(reflection)
    if match:
        shown = sorted(int(v) for v in re.findall(r"\d+", match.group(1)))
        right = shown == sorted(int(v) for v in numbers) and int(match.group(2)) == int(target)
        return "restate-right" if right else "restate-wrong"
    if reflection.strip().startswith(_VAGUE_OPENINGS):
        return "vague"
    return "other"


def rollout_reflections(path: Path) -> Iterable[tuple[str, bool]]:
    """(reflection kind, retry passed) for each failed episode of one verl rollout dump.

    verl writes each trajectory's decoded response (``output``; chat-template markers stripped, so
    turns are separated by ``\\nassistant\\n``) with its score and ground truth (``gts``).
    """
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        turns = row["output"].split(_TURN)
        if len(turns) < 3:  # the first attempt passed (or the episode ended early): nothing reflected
            continue
        reflection = turns[1].split("\nuser\n", 1)[0]
        gts = row["gts"]
        yield reflection_kind(reflection, gts["numbers"], gts["target"]), float(row["score"]) > 0


def evaluation_reflections(path: Path) -> Iterable[tuple[str, bool]]:
    """(reflection kind, retry passed) for each failed episode of an ``r3 evaluate run`` episodes.jsonl."""
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        row = json.loads(line)
        ep = row["reflect"]
        if ep["first_try_passed"] or not ep["rounds"]:
            continue
        reflection = ep["rounds"][0].get("reflection") or {}
        text = reflection.get("text", "") if isinstance(reflection, Mapping) else str(reflection)
        gt = row["ground_truth"]
        yield reflection_kind(text, gt["numbers"], gt["target"]), bool(ep["second_try_passed"])


def tally(pairs: Iterable[tuple[str, bool]]) -> dict[str, dict[str, int]]:
    """``{kind: {"n": episodes, "passed": retries that passed}}`` for every kind."""
    n: Counter[str] = Counter()
    passed: Counter[str] = Counter()
    for kind, ok in pairs:
        n[kind] += 1
        passed[kind] += ok
    return {k: {"n": n[k], "passed": passed[k]} for k in KINDS}


def by_step(run_dir: Path) -> dict[int, dict[str, dict[str, int]]]:
    """Per training step, the tally of a verl run directory's ``rollout/N.jsonl`` dumps."""
    files = {int(p.stem): p for p in (run_dir / "rollout").glob("*.jsonl") if p.stem.isdigit()}
    if not files:
        raise FileNotFoundError(f"{run_dir / 'rollout'}: no N.jsonl rollout dumps (trainer.rollout_data_dir)")
    return {step: tally(rollout_reflections(files[step])) for step in sorted(files)}


def _cell(t: Mapping[str, int]) -> str:
    return f"{t['n']} ({t['passed']})" if t["n"] else "0"


def render(rows: Mapping[Any, Mapping[str, Mapping[str, int]]], first: str) -> str:
    """A Markdown table: one row per step (or run), ``episodes (retries passed)`` per kind."""
    lines = [f"| {first} | " + " | ".join(KINDS) + " |", "|---|" + "---:|" * len(KINDS)]
    for key, t in rows.items():
        lines.append(f"| {key} | " + " | ".join(_cell(t[k]) for k in KINDS) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m r3_plugin.evidence.reflections",
        description=__doc__.split("\n\n")[0]
        + " Prints a Markdown table: failed episodes per kind of reflection, (in brackets) those whose "
        "retry passed.",
    )
    p.add_argument("source", help="a verl run directory (with rollout/N.jsonl) or an r3 evaluate episodes.jsonl")
    p.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    args = p.parse_args(argv)
    source = Path(args.source)
    try:
        if source.is_dir():
            rows: dict[Any, dict[str, dict[str, int]]] = by_step(source)
            first = "step"
        elif source.is_file():
            rows = {source.parent.name: tally(evaluation_reflections(source))}
            first = "run"
        else:
            raise FileNotFoundError(f"{source}: no such file or directory")
    except (FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(rows, indent=2) if args.json else render(rows, first))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
