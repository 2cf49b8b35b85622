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
"""The data-builder hook for a task of your own: (prompt, ground truth) records -> verl parquet.

Writes the same columns as ``r3 data countdown`` (``data_source``, ``prompt``, ``ability``,
``reward_model``, ``extra_info``, ``agent_name``), so the recipes, ``r3 mine``, ``r3 evaluate``
and verl's reward entry point read the files as they read the built-in tasks'. See
docs/adding-a-task.md.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from r3_plugin.policy.config import AGENT_NAME
from r3_plugin.policy.tasks import get_task, to_plain
from r3_plugin.tools.data.io import SPLITS, DataBuildError, split_indices, write_splits

__all__ = ["task_row", "write_task_data"]


def task_row(
    data_source: str,
    prompt: str | list[Mapping[str, str]],
    ground_truth: Any,
    *,
    index: int = 0,
    split: str = "train",
    ability: str = "",
    system_prompt: str | None = None,
    extra_info: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """One verl row: ``prompt`` is the user's text (or ready chat messages), ``ground_truth`` what the verifier gets."""
    if isinstance(prompt, str):
        messages = [{"role": "user", "content": prompt}]
        if system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
    else:
        messages = [dict(m) for m in prompt]
    return {
        "data_source": data_source,
        "prompt": messages,
        "ability": ability or data_source,
        "reward_model": {"style": "rule", "ground_truth": to_plain(ground_truth)},
        "extra_info": {"index": index, "split": split, **dict(extra_info or {})},
        "agent_name": AGENT_NAME,
    }


def write_task_data(
    data_source: str,
    records: Iterable[tuple[Any, Any]],
    output_dir: str | os.PathLike,
    *,
    test_size: int = 0,
    seed: int = 0,
    system_prompt: str | None = None,
) -> dict[str, Path]:
    """Write ``(prompt, ground_truth)`` records as ``<output_dir>/train.parquet`` (and ``test.parquet``
    when ``test_size`` > 0, a seeded hold-out); returns ``{split: path}``.

    ``data_source`` must be a registered task (:func:`r3_plugin.register_task`), so a typo fails here
    rather than at the first reward.
    """
    get_task(data_source)  # UnknownTaskError names the registered tasks
    records = list(records)
    if not records:
        raise DataBuildError(f"{data_source}: no records to write")
    train, test = split_indices(len(records), test_size, None, seed, origin=f"{data_source} records")
    splits = {"train": train, "test": test} if test_size else {"train": train}
    rows = {
        split: [
            task_row(data_source, records[i][0], records[i][1], index=i, split=split, system_prompt=system_prompt)
            for i in indices
        ]
        for split, indices in splits.items()
    }
    return write_splits(output_dir, rows, known_splits=SPLITS)
