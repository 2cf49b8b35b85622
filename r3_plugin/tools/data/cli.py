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
"""Build the paper's datasets as verl parquet files (train.parquet + test.parquet).

  r3 data countdown                      # synthetic, seeded: 100,000 train + 15,000 test
  r3 data countdown --source Jiayi-Pan/Countdown-Tasks-3to4
  r3 data function-calling --source xlam_function_calling_60k.json --tokenizer /models/Qwen2.5-1.5B-Instruct

Outputs go to ~/data/r3/<task>/ by default, where the recipes look for them. The same arguments
always give the same rows. Run `r3 data countdown --help` or `r3 data function-calling --help`.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from r3_plugin.tools.arg_types import non_negative_int, positive_int
from r3_plugin.tools.data import countdown as cd
from r3_plugin.tools.data import function_calling as fc

_EPILOG_OUTPUT = (
    "output: <output-dir>/train.parquet and <output-dir>/test.parquet, columns data_source, prompt (chat "
    "messages), ability, reward_model ({style: rule, ground_truth}), extra_info (index, split, ...) and "
    "agent_name (r3_agent): the layout verl's RLHFDataset reads. Files are written to temporary names and "
    "moved into place only when both are complete. The test split is a seeded random hold-out of "
    "--test-size rows. Bad input rows stop the build with an error naming the file and row (rows count from 1; "
    "for JSONL the row is the line number)."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET")
    sub.required = True

    p = sub.add_parser(
        "countdown",
        help="countdown equations (TinyZero's Countdown-Tasks-3to4, a local copy, or synthetic)",
        description=(
            "Countdown: reach a target number with 3 or 4 given numbers, each used once, and + - * /. "
            "The prompt is TinyZero's instruction (answer inside <answer> </answer>); the ground truth is "
            "{target, numbers}."
        ),
        epilog=_EPILOG_OUTPUT,
    )
    p.add_argument(
        "--source",
        default=cd.SYNTHETIC,
        help=(
            "'synthetic' (default: seeded generator, no network; 3 or 4 numbers in 1..100, integer targets in "
            "1..100, every task solvable by construction with its witness equation in extra_info.solution), "
            "a local .parquet/.json/.jsonl file with columns target and nums, or a Hugging Face dataset name "
            f"such as {cd.HF_DATASET} (needs network access to the Hub)"
        ),
    )
    p.add_argument("--output-dir", default=cd.DEFAULT_OUTPUT_DIR, help="where to write (default: %(default)s)")
    p.add_argument(
        "--train-size",
        type=positive_int,
        default=None,
        help=(
            "training rows (default: every row not held out; synthetic: "
            f"{cd.DEFAULT_SYNTHETIC_TRAIN_SIZE:,}). More rows than the source has is an error"
        ),
    )
    p.add_argument(
        "--test-size",
        type=non_negative_int,
        default=cd.DEFAULT_TEST_SIZE,
        help="held-out test rows (default: %(default)s, the paper's)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for generation and the split (default: %(default)s)")
    p.add_argument(
        "--max-rows",
        type=positive_int,
        default=None,
        help="read only the first N source rows (synthetic: generate N in total) for a quick subset",
    )
    p.add_argument("--system-prompt", default=None, help="optional system message put before the task")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(_build=_run_countdown)

    p = sub.add_parser(
        "function-calling",
        help="function calling (Salesforce/xlam-function-calling-60k or a local file in its layout)",
        description=(
            "Function calling (APIGen / xlam): answer a query with the exact tool call(s). Input rows have "
            "query (text), tools and answers (JSON strings or lists). xlam tools are converted to OpenAI "
            "function schemas (kept in extra_info.tools; the originals in extra_info.xlam_tools); the ground "
            "truth is the JSON list of gold calls [{name, arguments}]."
        ),
        epilog=(
            "tool placement (decided once, at build time): with --tool-placement auto (default) and --tokenizer, "
            "the tokenizer's chat template is rendered with a probe tool; if the tool shows up, the prompt holds "
            "only the query, extra_info.tools_in_chat_template is true, and the agent loop passes "
            "tools=json.loads(extra_info.tools) to apply_chat_template. Otherwise (no tokenizer, or a template "
            "that ignores tools) the tools are written as JSON into a system message that asks for a JSON list "
            "of calls inside <tool_call> </tool_call>. Build one dataset per chat-template family. " + _EPILOG_OUTPUT
        ),
    )
    p.add_argument(
        "--source",
        default=fc.HF_DATASET,
        help=(
            "a local .json/.jsonl/.parquet file with query, tools, answers, or a Hugging Face dataset name "
            "(default: %(default)s; gated, needs a Hub login and network)"
        ),
    )
    p.add_argument("--output-dir", default=fc.DEFAULT_OUTPUT_DIR, help="where to write (default: %(default)s)")
    p.add_argument(
        "--train-size", type=positive_int, default=None, help="training rows (default: every row not held out)"
    )
    p.add_argument(
        "--test-size",
        type=non_negative_int,
        default=fc.DEFAULT_TEST_SIZE,
        help="held-out test rows (default: %(default)s, the paper's)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed for the split (default: %(default)s)")
    p.add_argument(
        "--max-rows", type=positive_int, default=None, help="read only the first N source rows (quick subsets)"
    )
    p.add_argument(
        "--tokenizer",
        default=None,
        help="the policy model's tokenizer (local directory) whose chat template decides the tool placement",
    )
    p.add_argument(
        "--tool-placement",
        choices=fc.TOOL_PLACEMENTS,
        default="auto",
        help="auto: ask --tokenizer (system prompt without one); or force chat-template / system-prompt",
    )
    p.add_argument(
        "--skip-invalid", action="store_true", help="skip bad rows with a warning instead of stopping at the first"
    )
    p.add_argument("--system-prompt", default=None, help="optional system message text put before the task")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(_build=_run_function_calling)


def _run_countdown(args: argparse.Namespace) -> dict:
    return cd.build_countdown(
        args.output_dir,
        source=args.source,
        train_size=args.train_size,
        test_size=args.test_size,
        seed=args.seed,
        max_rows=args.max_rows,
        system_prompt=args.system_prompt,
        progress=False if args.no_progress else None,
    )


def _run_function_calling(args: argparse.Namespace) -> dict:
    return fc.build_function_calling(
        args.output_dir,
        source=args.source,
        train_size=args.train_size,
        test_size=args.test_size,
        seed=args.seed,
        tokenizer=args.tokenizer,
        tool_placement=args.tool_placement,
        max_rows=args.max_rows,
        skip_invalid=args.skip_invalid,
        system_prompt=args.system_prompt,
        progress=False if args.no_progress else None,
    )


def run(args: argparse.Namespace) -> int:
    from r3_plugin.tools.data.io import SPLITS, DataBuildError

    split_files = {s: Path(os.path.expanduser(args.output_dir)) / f"{s}.parquet" for s in SPLITS}
    existed = {s for s, path in split_files.items() if path.is_file()}
    try:
        paths = args._build(args)
    except DataBuildError as exc:
        print(f"r3 data {args.dataset}: error: {exc}", file=sys.stderr)
        return 1
    print(summarize(paths))
    for split in sorted(existed - set(paths)):
        if not split_files[split].exists():
            print(
                f"removed {split_files[split]}: left from an earlier build, and this run wrote no {split} split "
                f"(--{split}-size 0); the recipes would have read it as this dataset's {split} data"
            )
    return 0


def summarize(paths: dict) -> str:
    """A few lines saying what was written: rows per split and one example prompt."""
    import pyarrow.parquet as pq

    lines = []
    for split, path in paths.items():
        n = pq.ParquetFile(path).metadata.num_rows
        lines.append(f"{split:>5}: {n:>7,} rows -> {path}")
    first = pq.ParquetFile(next(iter(paths.values()))).read_row_group(0).slice(0, 1).to_pylist()
    if first:
        row = first[0]
        content = row["prompt"][-1]["content"]
        lines.append(f"example ({row['data_source']}): {content[:200]}{'...' if len(content) > 200 else ''}")
        info = row.get("extra_info") or {}
        if "tools_in_chat_template" in info:
            where_ = "chat template (tools=...)" if info["tools_in_chat_template"] else "system message"
            lines.append(f"tools are given through the {where_}")
    return "\n".join(lines)
