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
"""Small pieces the miner and the evaluator share: seeds, task lookup, progress bars, fingerprints."""

from __future__ import annotations

import os
import sys
from typing import Any

from r3_plugin.dataset_rows import TaskRow
from r3_plugin.tasks import Task, get_task


def episode_seed(base: int | None, row_index: int, sample: int, stream: int = 0) -> int | None:
    """A distinct, reproducible seed per (row, sample, stream); turns add their index to it.

    Streams keep e.g. the evaluator's control episode from reusing the reflect episode's seeds.
    """
    if base is None:
        return None
    return ((base * 1_000_003 + row_index) * 4_099 + sample * 16 + stream * 4) % (2**31 - 1)


def resolve_tasks(rows: list[TaskRow], path: str) -> dict[str, Task]:
    """Look up every data_source before any model loads, so a typo fails in a second, not an hour."""
    tasks: dict[str, Task] = {}
    for row in rows:
        if row.data_source not in tasks:
            try:
                tasks[row.data_source] = get_task(row.data_source)
            except KeyError as exc:
                raise SystemExit(f"{path}, row {row.row_index}: {exc}") from exc
    return tasks


def progress_bar(total: int, initial: int, desc: str, unit: str, enabled: bool = True) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        total=total,
        initial=initial,
        desc=desc,
        unit=unit,
        disable=not enabled,
        file=sys.stderr,
        dynamic_ncols=True,
    )


def data_fingerprint(path: str) -> dict[str, Any]:
    from r3_plugin.journal import file_digest

    return {"data": os.path.abspath(path), "data_sha256": file_digest(path)}
