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
"""Read a verl parquet (the data builders' output) into plain-Python task rows.

pandas/pyarrow return lists as numpy arrays and nested structs as dicts of arrays; verifiers and
chat templates want plain lists and dicts, so everything is converted once here, for the miner, the
evaluator and anything else that replays dataset rows outside verl.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from r3_plugin.policy.tasks import to_plain

REQUIRED_COLUMNS = ("data_source", "prompt", "reward_model")


class DatasetError(ValueError):
    """A parquet file does not follow the R3 data contract (the message names file, row and key)."""


@dataclass
class TaskRow:
    """One dataset row, ready for :func:`r3_plugin.policy.episode.run_episode`."""

    row_index: int  # position in the parquet file
    data_source: str
    prompt: list[dict]
    ground_truth: Any
    extra_info: dict = field(default_factory=dict)
    #: tool schemas for the chat template (None when tools are already in the prompt or absent)
    tools: list | None = None

    @property
    def index(self) -> Any:
        """The builder's stable ``extra_info["index"]`` (falls back to the row position)."""
        return self.extra_info.get("index", self.row_index)


def _parse_tools(raw: Any, where: str) -> list | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        if not raw.strip():
            return None
        try:
            raw = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{where}: extra_info['tools'] is not valid JSON: {exc}") from exc
    if not isinstance(raw, list):
        raise DatasetError(f"{where}: extra_info['tools'] must be a JSON list, got {type(raw).__name__}")
    return raw


def row_from_record(record: dict, row_index: int, path: str = "<memory>") -> TaskRow:
    """Validate one plain record (a dict of the parquet's columns) and build a :class:`TaskRow`."""
    where = f"{path}, row {row_index}"
    missing = [c for c in REQUIRED_COLUMNS if c not in record or record[c] is None]
    if missing:
        raise DatasetError(
            f"{where}: missing column(s) {', '.join(missing)} (the R3 data contract needs {REQUIRED_COLUMNS})"
        )
    prompt = record["prompt"]
    if not isinstance(prompt, list) or not prompt:
        raise DatasetError(f"{where}: 'prompt' must be a non-empty list of chat messages, got {type(prompt).__name__}")
    for i, msg in enumerate(prompt):
        if not isinstance(msg, dict) or "role" not in msg or "content" not in msg:
            raise DatasetError(f"{where}: prompt[{i}] must be a dict with 'role' and 'content', got {msg!r:.200}")
    reward_model = record["reward_model"]
    if not isinstance(reward_model, dict) or "ground_truth" not in reward_model:
        raise DatasetError(f"{where}: 'reward_model' must be a dict with a 'ground_truth' key")
    extra_info = record.get("extra_info") or {}
    if not isinstance(extra_info, dict):
        raise DatasetError(f"{where}: 'extra_info' must be a dict, got {type(extra_info).__name__}")
    tools = None
    if extra_info.get("tools_in_chat_template"):
        tools = _parse_tools(extra_info.get("tools"), where)
    return TaskRow(
        row_index=row_index,
        data_source=str(record["data_source"]),
        prompt=[{k: v for k, v in m.items() if v is not None} for m in prompt],
        ground_truth=reward_model["ground_truth"],
        extra_info=extra_info,
        tools=tools,
    )


def read_records(path: str | os.PathLike) -> list[dict]:
    """All rows of a parquet file as plain-Python dicts."""
    import pyarrow.parquet as pq

    path = os.fspath(path)
    if not os.path.exists(path):
        raise DatasetError(f"{path}: no such file (build one with 'r3 data ...')")
    try:
        table = pq.read_table(path)
    except Exception as exc:
        raise DatasetError(f"{path}: not a readable parquet file: {exc}") from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in table.column_names]
    if missing:
        raise DatasetError(
            f"{path}: missing column(s) {', '.join(missing)}; columns present: {', '.join(table.column_names)}"
        )
    return [to_plain(r) for r in table.to_pylist()]


def read_task_rows(path: str | os.PathLike, limit: int | None = None) -> list[TaskRow]:
    """Read and validate a verl parquet into :class:`TaskRow` objects (first ``limit`` rows)."""
    records = read_records(path)
    if limit is not None:
        records = records[:limit]
    return [row_from_record(r, i, os.fspath(path)) for i, r in enumerate(records)]
