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
"""Turn the logs and dumps of ``e2e.sh`` into ``scripts/gpu/REPORT.md``.

Reads, from one folder (the files a device call returned):
  r3.log, toy.log, base.log   verl's console step lines (``step:N - key:value - ...``, printed by
                              ``verl.utils.logger.LocalLogger``) and vLLM's stats lines
                              (``Prefix cache hit rate: X%``)
  toy_dump/r3_tokens/step_N.jsonl[.gz]   r3-plugin's token-level dump (trainer.rollout_data_dir)
  tools/throughput.json, tools/eval/summary.json, tools/failures.summary.json, tools.log
and writes a Markdown report: step times of R3 and single-turn GRPO, tokens per trajectory, the
token-normalised cost ratio, the R3 step metrics, the prefix-cache hit rate, a check that only
reflection tokens carry advantage, and mine/evaluate throughput next to raw vLLM.

Usage: python3 scripts/gpu/report.py --logs DIR [--output scripts/gpu/REPORT.md]
"""

from __future__ import annotations

import argparse
import gzip
import json
import math
import os
import re
import statistics
import sys
from collections.abc import Iterable, Sequence
from typing import Any

STEP_LINE = re.compile(r"step:(\d+) - (.*)$")
NUMPY_SCALAR = re.compile(r"^np\.\w+\((.*)\)$")
PREFIX_HIT = re.compile(r"Prefix cache hit rate: ([\d.]+)%")
GEN_THROUGHPUT = re.compile(r"Avg generation throughput: ([\d.]+) tokens/s")
STAGE_END = re.compile(r"stage (\w+): exit (\d+) after (\d+) s")
GOAL_COST_RATIO = 1.1
GOAL_THROUGHPUT = 0.9


# -- verl console lines -------------------------------------------------------------------------


def parse_value(text: str) -> float | None:
    """A value as ``pprint.pformat`` wrote it (``0.5``, ``3``, ``nan``, ``True``, ``np.float64(0.5)``)."""
    text = text.strip()
    match = NUMPY_SCALAR.match(text)
    if match:
        text = match.group(1)
    if text in ("True", "False"):
        return float(text == "True")
    try:
        return float(text)
    except ValueError:
        return None


def parse_step_lines(lines: Iterable[str]) -> dict[int, dict[str, float]]:
    """``{step: {key: value}}`` from verl's console logger lines (any prefix such as Ray's is skipped)."""
    steps: dict[int, dict[str, float]] = {}
    for line in lines:
        match = STEP_LINE.search(line.rstrip("\n"))
        if not match:
            continue
        metrics = steps.setdefault(int(match.group(1)), {})
        for item in match.group(2).split(" - "):
            key, sep, raw = item.partition(":")
            value = parse_value(raw) if sep else None
            if value is not None:
                metrics[key.strip()] = value
    return steps


def parse_vllm_stats(lines: Iterable[str]) -> dict[str, list[float]]:
    """Prefix-cache hit rates (%) and generation throughputs (tokens/s) from vLLM's periodic stats lines."""
    hits, gen = [], []
    for line in lines:
        if m := PREFIX_HIT.search(line):
            hits.append(float(m.group(1)))
        if m := GEN_THROUGHPUT.search(line):
            gen.append(float(m.group(1)))
    return {"prefix_cache_hit_rate": hits, "generation_throughput": gen}


def steady(steps: dict[int, dict[str, float]], key: str) -> float | None:
    """Mean of ``key`` over the steps after the first (warm-up) one, or over all if there is one."""
    ordered = sorted(steps)
    chosen = ordered[1:] if len(ordered) > 1 else ordered
    values = [steps[s][key] for s in chosen if key in steps[s] and not math.isnan(steps[s][key])]
    return statistics.fmean(values) if values else None


# -- token-level dump ---------------------------------------------------------------------------


def assistant_spans(ids: Sequence[int], header: Sequence[int], end_of_turn: int | None) -> list[tuple[int, int]]:
    """``(start, end)`` of every assistant turn's content in a response (the first starts at 0).

    ``end`` is the position of the end-of-turn token (or the response's end); the next turn starts
    after the next assistant header. Turn 0 is the attempt, 1 the reflection, 2 the retry.
    """
    ids, header = list(ids), list(header)
    spans, start = [], 0
    while start <= len(ids):
        end = next((i for i in range(start, len(ids)) if ids[i] == end_of_turn), len(ids))
        spans.append((start, end))
        nxt = next(
            (i for i in range(end, len(ids) - len(header) + 1) if header and ids[i : i + len(header)] == header), None
        )
        if nxt is None:
            break
        start = nxt + len(header)
    return spans


def analyze_dump(records: Sequence[dict], meta: dict) -> dict[str, Any]:
    """Where advantage and mask sit relative to the reflection turn, per trajectory, plus token counts."""
    header, eot = meta.get("assistant_header_ids") or [], meta.get("end_of_turn_id")
    out = {
        "trajectories": len(records),
        "with_nonzero_advantage": 0,
        "nonzero_advantage_tokens": 0,
        "nonzero_advantage_outside_reflection": 0,
        "masked_tokens_outside_reflection": 0,
        "reflection_tokens_without_advantage_in_varied": 0,
        "full_episodes": 0,
        "rewards": [],
    }
    generated, inserted, response = [], [], []
    for rec in records:
        ids, mask, adv = rec["response_ids"], rec["response_mask"], rec["advantages"]
        spans = assistant_spans(ids, header, eot)
        allowed: set[int] = set()
        if len(spans) > 1:
            s, e = spans[1]
            allowed = set(range(s, min(e + 1, len(ids))))  # the reflection, and its end-of-turn if generated
        nonzero = [i for i, a in enumerate(adv) if a != 0.0]
        out["nonzero_advantage_tokens"] += len(nonzero)
        out["nonzero_advantage_outside_reflection"] += sum(1 for i in nonzero if i not in allowed)
        out["masked_tokens_outside_reflection"] += sum(1 for i, m in enumerate(mask) if m and i not in allowed)
        if nonzero:
            out["with_nonzero_advantage"] += 1
            s, e = spans[1] if len(spans) > 1 else (0, 0)
            out["reflection_tokens_without_advantage_in_varied"] += sum(1 for i in range(s, e) if adv[i] == 0.0)
        out["rewards"].append(rec.get("reward", 0.0))
        content = sum(e - s for s, e in spans)
        used = min(len(ids), spans[-1][1] + 1)  # padding after the last end-of-turn is not the episode's
        response.append(used)
        if len(spans) >= 3:
            out["full_episodes"] += 1
            generated.append(content)
            inserted.append(used - content)
    out["rewards"] = sorted(set(out["rewards"]))
    out["generated_tokens_full_episode"] = statistics.fmean(generated) if generated else None
    out["inserted_tokens_full_episode"] = statistics.fmean(inserted) if inserted else None
    out["response_tokens"] = statistics.fmean(response) if response else None
    out["only_reflection_has_advantage"] = (
        out["with_nonzero_advantage"] > 0 and out["nonzero_advantage_outside_reflection"] == 0
    )
    return out


def read_dump(folder: str) -> tuple[list[dict], dict]:
    """Records and the meta line of every ``step_N.jsonl[.gz]`` under ``folder``."""
    records: list[dict] = []
    meta: dict = {}
    if not os.path.isdir(folder):
        return records, meta
    for name in sorted(os.listdir(folder)):
        if not re.match(r"step_\d+\.jsonl(\.gz)?$", name):
            continue
        opener = gzip.open if name.endswith(".gz") else open
        with opener(os.path.join(folder, name), "rt") as fh:
            for line in fh:
                item = json.loads(line)
                if "meta" in item:
                    meta = item["meta"]
                else:
                    records.append(item)
    return records, meta


# -- report -------------------------------------------------------------------------------------


def _read_lines(path: str) -> list[str]:
    if not os.path.exists(path):
        return []
    with open(path, errors="replace") as fh:
        return fh.readlines()


def _read_json(path: str) -> dict | None:
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def cost_summary(r3: dict[int, dict], base: dict[int, dict], dump: dict | None) -> dict[str, Any]:
    """Steady step times, tokens per trajectory and the token-normalised R3 / single-turn ratio."""
    t_r3, t_st = steady(r3, "timing_s/step"), steady(base, "timing_s/step")
    resp_r3, resp_st = steady(r3, "response_length/mean"), steady(base, "response_length/mean")
    inserted = dump.get("inserted_tokens_full_episode") if dump else None
    gen_r3 = resp_r3 - inserted if resp_r3 is not None and inserted is not None else None
    out: dict[str, Any] = {
        "step_s_r3": t_r3,
        "step_s_single_turn": t_st,
        "gen_s_r3": steady(r3, "timing_s/gen"),
        "gen_s_single_turn": steady(base, "timing_s/gen"),
        "response_tokens_r3": resp_r3,
        "response_tokens_single_turn": resp_st,
        "generated_tokens_r3": gen_r3,
        "generated_tokens_single_turn": resp_st,
        "inserted_tokens_r3": inserted,
    }
    if t_r3 and t_st and resp_r3 and resp_st:
        out["step_ratio"] = t_r3 / t_st
        out["ratio_per_response_token"] = (t_r3 / resp_r3) / (t_st / resp_st)
        if gen_r3:
            out["ratio_per_generated_token"] = (t_r3 / gen_r3) / (t_st / resp_st)
    return out


def render(logs: str) -> str:
    """The whole report as Markdown."""
    stages = {name: _read_lines(os.path.join(logs, f"{name}.log")) for name in ("r3", "toy", "base")}
    steps = {name: parse_step_lines(lines) for name, lines in stages.items()}
    vllm = {name: parse_vllm_stats(lines) for name, lines in stages.items()}
    records, meta = read_dump(os.path.join(logs, "toy_dump", "r3_tokens"))
    dump = analyze_dump(records, meta) if records else None
    gpu = "".join(_read_lines(os.path.join(logs, "gpu.txt"))).strip() or "unknown GPU"
    lines = [
        "# r3-plugin on a GPU: end-to-end check and cost",
        "",
        f"Device: {gpu}. Produced by `scripts/gpu/report.py`.",
        "",
    ]

    lines += ["## Runs", "", "| stage | exit | wall s | steps logged | command |", "|---|---|---|---|---|"]
    for name, text in stages.items():
        ends = [STAGE_END.search(x) for x in text]
        end = next((m for m in reversed(ends) if m), None)
        cmd = os.path.join(logs, f"{name}.cmd")
        lines.append(
            f"| {name} | {end.group(2) if end else 'n/a'} | {end.group(3) if end else 'n/a'} | "
            f"{len(steps[name])} | {'`' + name + '.cmd`' if os.path.exists(cmd) else 'n/a'} |"
        )

    cost = cost_summary(steps["r3"], steps["base"], dump)
    lines += [
        "",
        "## Cost: R3 vs single-turn GRPO (same prompts, same sizes, steps after the first)",
        "",
        "| | R3 | single-turn |",
        "|---|---|---|",
        f"| timing_s/step | {_fmt(cost['step_s_r3'])} | {_fmt(cost['step_s_single_turn'])} |",
        f"| timing_s/gen | {_fmt(cost['gen_s_r3'])} | {_fmt(cost['gen_s_single_turn'])} |",
        f"| response tokens / trajectory | {_fmt(cost['response_tokens_r3'], 1)} | "
        f"{_fmt(cost['response_tokens_single_turn'], 1)} |",
        f"| generated tokens / trajectory | {_fmt(cost['generated_tokens_r3'], 1)} | "
        f"{_fmt(cost['generated_tokens_single_turn'], 1)} |",
        "",
        f"Step-time ratio R3 / single-turn: {_fmt(cost.get('step_ratio'), 3)}. Normalised by response tokens: "
        f"{_fmt(cost.get('ratio_per_response_token'), 3)}; by generated tokens: "
        f"{_fmt(cost.get('ratio_per_generated_token'), 3)} (goal <= {GOAL_COST_RATIO}).",
        f"R3 generated tokens = response tokens - {_fmt(cost['inserted_tokens_r3'], 1)} inserted prompt tokens per "
        "full episode (measured in the toy dump, same prompts and reflection/retry messages).",
    ]
    hits = vllm["r3"]["prefix_cache_hit_rate"]
    lines += [
        "",
        "Prefix cache (vLLM stats log, `rollout.disable_log_stats=False`): "
        + (
            f"R3 hit rate max {max(hits):.1f}%, last {hits[-1]:.1f}% ({len(hits)} readings); single-turn "
            f"max {max(vllm['base']['prefix_cache_hit_rate'] or [0.0]):.1f}%."
            if hits
            else "no `Prefix cache hit rate` line found."
        ),
    ]

    lines += [
        "",
        "## R3 step metrics (countdown run)",
        "",
        "| key | " + " | ".join(f"step {s}" for s in sorted(steps["r3"])) + " |",
    ]
    lines.append("|---|" + "---|" * len(steps["r3"]))
    keys = sorted({k for m in steps["r3"].values() for k in m if k.startswith("r3/")})
    for key in keys:
        lines.append(f"| {key} | " + " | ".join(_fmt(steps["r3"][s].get(key), 3) for s in sorted(steps["r3"])) + " |")
    if not keys:
        lines.append("| (no r3/ metrics found) |")

    lines += ["", "## Toy task r3_toy_parity: rewards vary, advantage only on reflection tokens", ""]
    toy_keys = ("critic/score/mean", "critic/advantages/max", "critic/advantages/min", "r3/retry_success_rate")
    for s in sorted(steps["toy"]):
        lines.append(f"- step {s}: " + ", ".join(f"{k}={_fmt(steps['toy'][s].get(k), 3)}" for k in toy_keys))
    if dump:
        lines += [
            "",
            f"Dump: {dump['trajectories']} trajectories, {dump['full_episodes']} with attempt, reflection and retry; "
            f"rewards seen {dump['rewards']}; {dump['with_nonzero_advantage']} trajectories with non-zero advantage "
            f"({dump['nonzero_advantage_tokens']} tokens), of which outside the reflection turn: "
            f"{dump['nonzero_advantage_outside_reflection']}; response-mask tokens outside the reflection: "
            f"{dump['masked_tokens_outside_reflection']}. Only reflection tokens carry advantage: "
            f"**{'yes' if dump['only_reflection_has_advantage'] else 'NO'}**.",
        ]
    else:
        lines.append("No token dump found (toy_dump/r3_tokens).")

    lines += ["", "## r3 mine / r3 evaluate with vLLM vs raw vLLM generate (same prompts, one process)", ""]
    tp = _read_json(os.path.join(logs, "tools", "throughput.json"))
    if tp:
        lines += [
            "| run | requests | generated tokens | wall s | tokens/s |",
            "|---|---|---|---|---|",
        ]
        for key in ("raw_mine", "mine", "raw_eval", "evaluate"):
            r = tp.get(key) or {}
            lines.append(
                f"| {key} | {r.get('requests', 'n/a')} | {r.get('generated_tokens', 'n/a')} | "
                f"{_fmt(r.get('wall_s'))} | {_fmt(r.get('tokens_per_s'), 0)} |"
            )
        lines.append(
            f"\nmine / raw = {_fmt(tp.get('mine_vs_raw'), 3)}, evaluate / raw = {_fmt(tp.get('evaluate_vs_raw'), 3)} "
            f"(goal >= {GOAL_THROUGHPUT})."
        )
    else:
        lines.append("No tools/throughput.json found.")
    ev = _read_json(os.path.join(logs, "tools", "eval", "summary.json"))
    mine = _read_json(os.path.join(logs, "tools", "failures.summary.json"))
    if ev:
        run = ev.get("run", {})
        lines.append(
            f"\nCLI `r3 evaluate run --backend vllm`: {run.get('rows')} rows, "
            f"{_fmt(run.get('generated_tokens_per_s'), 0)} generated tokens/s over "
            f"{_fmt(run.get('elapsed_s'))} s (model load excluded)."
        )
    if mine:
        lines.append(
            f"CLI `r3 mine --backend vllm`: {mine.get('queries_seen')} queries, {mine.get('samples_spent')} samples, "
            f"failure rate {_fmt(mine.get('failure_rate'), 3)}, {_fmt(mine.get('elapsed_s'))} s including model load."
        )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", required=True, help="folder with r3.log, toy.log, base.log, toy_dump/, tools/")
    parser.add_argument("--output", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "REPORT.md"))
    args = parser.parse_args(argv)
    if not os.path.isdir(args.logs):
        print(f"report: {args.logs} is not a folder", file=sys.stderr)
        return 2
    text = render(args.logs)
    tmp = f"{args.output}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(text)
    os.replace(tmp, args.output)
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
