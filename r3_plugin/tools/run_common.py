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
"""Small pieces the miner and the evaluator share: seeds, task lookup, progress bars, fingerprints,
and the resumable worker pool that runs every unfinished row."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from r3_plugin.policy.tasks import VERIFIER_ERROR, Task, VerifyResult, get_task
from r3_plugin.tools.dataset_rows import TaskRow

if TYPE_CHECKING:
    from r3_plugin.tools.journal import Journal


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


#: The record key that marks a broken row: its verifier raised (bad data, not a model failure).
BROKEN_KEY = "broken"


def quiet_verifier(task: Task) -> Task:
    """The task with a verifier that turns its own exception into a ``verifier_error`` result.

    ``Task.verify`` would log a warning per call, i.e. per sample and without the row; the runs
    here report a broken row once, naming it (:func:`broken_detail`, :func:`row_label`).
    """
    verifier = task.verifier

    def verify(response: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None) -> Any:
        try:
            return verifier(response, ground_truth, extra_info)
        except Exception as exc:
            return VerifyResult(False, VERIFIER_ERROR, None, f"{type(exc).__name__}: {exc}")

    return dataclasses.replace(task, verifier=verify)


def broken_detail(results: Iterable[Any]) -> str | None:
    """The detail of the first ``verifier_error`` among verifier results (None: the row is fine)."""
    for result in results:
        if result is not None and result.category == VERIFIER_ERROR:
            return result.detail or VERIFIER_ERROR
    return None


def row_label(row: TaskRow, source: str) -> str:
    """``file, row N (extra_info.index I)``: where a user finds the row."""
    label = f"{source}, row {row.row_index}"
    return label if row.index == row.row_index else f"{label} (extra_info.index {row.index})"


def run_on_backend(start_backend: Callable[[], Any], journal: Journal, work: Callable[[Any], Awaitable[Any]]) -> Any:
    """Start a backend, run ``work(backend)`` in a fresh event loop and always close the backend.

    A backend that fails to start (a wrong --model, say) leaves no empty journal behind: it would
    make the corrected rerun refuse to start.
    """
    from r3_plugin.tools.backends.base import close_backend

    try:
        backend = start_backend()
    except BaseException:
        journal.discard_if_empty()
        raise

    async def _main() -> Any:
        try:
            return await work(backend)
        finally:
            await close_backend(backend)

    return asyncio.run(_main())


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
    from r3_plugin.tools.journal import file_digest

    return {"data": os.path.abspath(path), "data_sha256": file_digest(path)}


async def drain_pending(
    rows: list[TaskRow],
    journal: Journal,
    handle_row: Callable[[TaskRow, Task], Awaitable[dict[str, Any]]],
    *,
    concurrency: int,
    desc: str,
    unit: str,
    progress: bool = True,
    tasks: Mapping[str, Task] | None = None,
    on_record: Callable[[dict[str, Any], float], Mapping[str, Any] | None] | None = None,
    source: str = "<rows>",
) -> float:
    """Run ``handle_row`` on every row the journal has not finished; returns the wall time spent.

    ``concurrency`` workers (at least one, at most one per pending row) drain a queue of the
    pending rows. Each finished record is appended to the journal before anything else happens,
    so a crash loses only the rows still in flight and a rerun resumes from there.
    ``on_record(record, elapsed_s)`` may return the progress bar's postfix (the caller's own stats).
    A record marked ``broken`` (the row's verifier raised) is reported once, naming the row of ``source``.
    """
    tasks = {name: quiet_verifier(task) for name, task in (tasks or resolve_tasks(rows, source)).items()}
    todo = [r for r in rows if not journal.done(r.row_index)]
    bar = progress_bar(len(rows), len(rows) - len(todo), desc, unit, progress)
    queue: asyncio.Queue = asyncio.Queue()
    for r in todo:
        queue.put_nowait(r)
    start = time.perf_counter()

    async def worker() -> None:
        while True:
            try:
                row = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            record = await handle_row(row, tasks[row.data_source])
            journal.append(record)
            if record.get(BROKEN_KEY):
                bar.write(
                    f"warning: {row_label(row, source)}: the verifier for {row.data_source!r} failed "
                    f"({record[BROKEN_KEY]}); broken row, kept out of the results (counted in broken_rows)",
                    file=sys.stderr,
                )
            if on_record is not None:
                postfix = on_record(record, max(time.perf_counter() - start, 1e-9))
                if postfix:
                    bar.set_postfix(**postfix, refresh=False)
            bar.update(1)

    workers = [asyncio.create_task(worker()) for _ in range(max(1, min(concurrency, len(todo))))]
    try:
        await asyncio.gather(*workers)
    finally:
        for w in workers:
            w.cancel()
        bar.close()
    return time.perf_counter() - start
