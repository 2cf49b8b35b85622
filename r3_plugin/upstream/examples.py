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
"""Patch 3: ``examples/data_preprocess/countdown.py`` and the R3 run script, in verl's examples style.

The preprocessing script writes the same rows as the plugin's data builder (``r3 data
countdown``): its prompt template, data_source, agent name and test-split size are read from the
plugin's modules, so the two cannot disagree.
"""

from __future__ import annotations

import json

from r3_plugin.upstream import config, layout
from r3_plugin.upstream.transform import literal, top_level, with_header

PROMPTS_SRC = "r3_plugin/tools/data/prompts.py"
BUILDER_SRC = "r3_plugin/tools/data/countdown.py"
CONFIG_SRC = "r3_plugin/policy/config.py"

PREPROCESS = '''"""
Preprocess the Countdown dataset (TinyZero's Countdown-Tasks-3to4) to parquet format for R3.

Rows carry ``agent_name={agent_name}`` so the R3 agent loop runs them, and are scored by
verl.utils.reward_score.countdown (``data_source={data_source}``).
"""

import argparse
import os

import datasets

from verl.utils.hdfs_io import copy, makedirs

PROMPT_TEMPLATE = (
{template}
)


def make_map_fn(split, data_source):
    def process_fn(example, idx):
        target = int(example["target"])
        numbers = [int(n) for n in example["nums"]]
        return {{
            "data_source": data_source,
            "prompt": [{{"role": "user", "content": PROMPT_TEMPLATE.format(numbers=numbers, target=target)}}],
            "ability": {ability},
            "reward_model": {{"style": "rule", "ground_truth": {{"target": target, "numbers": numbers}}}},
            "extra_info": {{"split": split, "index": idx}},
            "agent_name": {agent_name},
        }}

    return process_fn


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--local_dataset_path", default=None, help="The local path to the raw dataset, if it exists.")
    parser.add_argument(
        "--local_save_dir", default="~/data/countdown", help="The save directory for the preprocessed dataset."
    )
    parser.add_argument("--hdfs_dir", default=None)
    parser.add_argument("--test_size", type=int, default={test_size}, help="Held-out rows (R3 paper: {test_size:,}).")
    parser.add_argument("--train_size", type=int, default=None, help="Training rows (default: all the others).")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the train/test split.")

    args = parser.parse_args()
    data_source = {data_source}

    dataset = datasets.load_dataset(args.local_dataset_path or {hf_dataset}, split="train")
    split = dataset.train_test_split(test_size=args.test_size, train_size=args.train_size, seed=args.seed)
    train_dataset = split["train"].map(
        function=make_map_fn("train", data_source), with_indices=True, remove_columns=dataset.column_names
    )
    test_dataset = split["test"].map(
        function=make_map_fn("test", data_source), with_indices=True, remove_columns=dataset.column_names
    )

    local_save_dir = os.path.expanduser(args.local_save_dir)
    os.makedirs(local_save_dir, exist_ok=True)
    train_dataset.to_parquet(os.path.join(local_save_dir, "train.parquet"))
    test_dataset.to_parquet(os.path.join(local_save_dir, "test.parquet"))

    if args.hdfs_dir is not None:
        makedirs(args.hdfs_dir)
        copy(src=local_save_dir, dst=args.hdfs_dir)
'''


def _wrap_string(text: str, indent: str = "    ", width: int = 100) -> str:
    """A long string literal as implicitly concatenated pieces, split after spaces."""
    pieces, current = [], ""
    for word in text.split(" "):
        candidate = f"{current} {word}" if current else word
        if len(repr(candidate)) > width and current:
            pieces.append(current + " ")
            current = word
        else:
            current = candidate
    pieces.append(current)
    return "\n".join(f'{indent}"{p}"' if '"' not in p else f"{indent}{p!r}" for p in pieces)


def preprocess_script(sources) -> str:
    _, prompt_nodes = top_level(sources.read(PROMPTS_SRC), where=PROMPTS_SRC)
    _, builder_nodes = top_level(sources.read(BUILDER_SRC), where=BUILDER_SRC)
    template = literal(prompt_nodes, "COUNTDOWN_USER_TEMPLATE", where=PROMPTS_SRC)
    _, config_nodes = top_level(sources.read(CONFIG_SRC), where=CONFIG_SRC)
    values = {
        name.lower(): literal(builder_nodes, name, where=BUILDER_SRC)
        for name in ("DATA_SOURCE", "ABILITY", "HF_DATASET", "DEFAULT_TEST_SIZE")
    }
    values["agent_name"] = literal(config_nodes, "AGENT_NAME", where=CONFIG_SRC)
    values = {k: json.dumps(v) if isinstance(v, str) else v for k, v in values.items()}
    body = PREPROCESS.format(
        template=_wrap_string(template),
        data_source=values["data_source"],
        ability=values["ability"],
        agent_name=values["agent_name"],
        hf_dataset=values["hf_dataset"],
        test_size=values["default_test_size"],
    )
    return with_header(body)


def files(sources) -> dict[str, str]:
    return {
        layout.PREPROCESS_PATH: preprocess_script(sources),
        layout.RUN_SCRIPT_PATH: config.run_script(sources),
    }
