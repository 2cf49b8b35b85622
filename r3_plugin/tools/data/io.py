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
"""Reading builder inputs and writing verl parquet files safely.

Inputs are local JSON / JSONL / parquet files or Hugging Face dataset names; every row keeps its
number so a bad row can be reported as ``file, row N``. Outputs are written to temporary files and
moved into place only when every split has been written, so a crash never leaves a half-written
``train.parquet`` that verl would happily train on.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from r3_plugin.tools.arg_types import looks_like_local_file

LOCAL_SUFFIXES = (".parquet", ".json", ".jsonl")


class DataBuildError(ValueError):
    """A builder input or option is wrong; the message says which file, row or option."""


@dataclass(frozen=True)
class SourceRow:
    """One input row and where it came from (``row`` counts from 1; for JSONL it is the line number)."""

    row: int
    data: Mapping[str, Any]


def where(origin: str, row: int) -> str:
    """The ``file, row N`` prefix used by every row-level error."""
    return f"{origin}, row {row}"


def is_local_source(source: str) -> bool:
    """A source is a local file when it is one or looks like a path or a file name.

    A missing ``my_tasks.parqet`` must fail at once naming the file, not spend half a minute retrying
    the Hub. Directories (a cloned Hub dataset repository, say) go to ``datasets.load_dataset`` like
    Hub names.
    """
    path = os.path.expanduser(source)
    if os.path.isfile(path):
        return True
    return not os.path.isdir(path) and looks_like_local_file(source)


def load_rows(source: str, *, split: str = "train", max_rows: int | None = None, hf_hint: str = "") -> list[SourceRow]:
    """Load rows from a local .parquet/.json/.jsonl file or a Hugging Face dataset name.

    ``max_rows`` keeps only the first N rows (quick local subsets). ``hf_hint`` is appended to the
    error raised when a Hub dataset cannot be loaded (for example: "use --source synthetic").
    """
    if max_rows is not None and max_rows <= 0:
        raise DataBuildError(f"--max-rows must be positive, got {max_rows}")
    if is_local_source(source):
        path = os.path.expanduser(source)
        if not os.path.isfile(path):
            raise DataBuildError(
                f"--source {source}: input file not found ({os.path.abspath(path)}); a local source must be an "
                f"existing {'/'.join(LOCAL_SUFFIXES)} file (a Hugging Face dataset is named org/name, without a "
                "file extension)"
            )
        rows = list(_iter_local(path, max_rows))
    else:
        name = os.path.expanduser(source) if os.path.isdir(os.path.expanduser(source)) else source
        rows = _load_hf(name, split, max_rows, hf_hint)
    if not rows:
        raise DataBuildError(f"{source}: no rows found")
    return rows


def _iter_local(path: str, max_rows: int | None) -> Iterator[SourceRow]:
    lower = path.lower()
    if lower.endswith(".parquet"):
        yield from _iter_parquet(path, max_rows)
    elif lower.endswith(".jsonl"):
        yield from _iter_jsonl(path, max_rows)
    elif lower.endswith(".json"):
        yield from _iter_json(path, max_rows)
    else:
        raise DataBuildError(f"{path}: unsupported file type; use .parquet, .json (a list of objects) or .jsonl")


def _iter_parquet(path: str, max_rows: int | None) -> Iterator[SourceRow]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:
        raise DataBuildError(f"{path}: not a readable parquet file ({type(exc).__name__}: {exc})") from exc
    n = 0
    for batch in pf.iter_batches(batch_size=8192):
        for record in batch.to_pylist():
            n += 1
            yield SourceRow(n, record)
            if max_rows is not None and n >= max_rows:
                return


def _iter_jsonl(path: str, max_rows: int | None) -> Iterator[SourceRow]:
    n = 0
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataBuildError(f"{where(path, line_no)}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
            if not isinstance(record, dict):
                raise DataBuildError(f"{where(path, line_no)}: expected a JSON object, got {type(record).__name__}")
            yield SourceRow(line_no, record)
            n += 1
            if max_rows is not None and n >= max_rows:
                return


def _iter_json(path: str, max_rows: int | None) -> Iterator[SourceRow]:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        if exc.msg == "Extra data":  # a .json file that is really JSON Lines
            yield from _iter_jsonl(path, max_rows)
            return
        raise DataBuildError(f"{path}: invalid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    if isinstance(data, dict):
        # {"train": [...]} or {"data": [...]}: one list-valued key holds the rows
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataBuildError(f"{path}: expected a JSON list of objects (or JSON Lines)")
        data = lists[0]
    if not isinstance(data, list):
        raise DataBuildError(f"{path}: expected a JSON list of objects, got {type(data).__name__}")
    for i, record in enumerate(data, start=1):
        if not isinstance(record, dict):
            raise DataBuildError(f"{where(path, i)}: expected a JSON object, got {type(record).__name__}")
        yield SourceRow(i, record)
        if max_rows is not None and i >= max_rows:
            return


def _load_hf(name: str, split: str, max_rows: int | None, hint: str) -> list[SourceRow]:
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - verl depends on datasets
        raise DataBuildError(
            f"loading {name!r} from the Hugging Face Hub needs the `datasets` package. {hint}"
        ) from exc
    try:
        ds = datasets.load_dataset(name, split=split)
    except Exception as exc:
        raise DataBuildError(
            f"could not load Hugging Face dataset {name!r} (split {split!r}): {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}. Without network access to the Hub, pass a local "
            f".parquet/.json/.jsonl file instead. {hint}".rstrip()
        ) from exc
    if max_rows is not None:
        ds = ds.select(range(min(max_rows, len(ds))))
    return [SourceRow(i, record) for i, record in enumerate(ds, start=1)]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def split_indices(
    n: int, test_size: int, train_size: int | None, seed: int, origin: str
) -> tuple[list[int], list[int]]:
    """Seeded shuffle of ``range(n)``; the first ``test_size`` are the held-out test split.

    ``train_size`` None takes every remaining row. Asking for more rows than exist is an error rather
    than a silently smaller dataset.
    """
    if test_size < 0:
        raise DataBuildError(f"--test-size must be >= 0, got {test_size}")
    if train_size is not None and train_size <= 0:
        raise DataBuildError(f"--train-size must be positive, got {train_size}")
    if test_size >= n:
        raise DataBuildError(
            f"{origin} has {n} usable rows, not enough for a test split of {test_size} plus a training split; "
            "lower --test-size"
        )
    if train_size is not None and train_size + test_size > n:
        raise DataBuildError(
            f"{origin} has {n} usable rows, fewer than --train-size {train_size} + --test-size {test_size}; "
            "lower the sizes (or leave --train-size out to use every remaining row)"
        )
    order = list(range(n))
    random.Random(seed).shuffle(order)
    test = order[:test_size]
    train = order[test_size : test_size + train_size] if train_size is not None else order[test_size:]
    return train, test


#: The splits the builders write and the recipes read (``data.train_files`` / ``data.val_files``).
SPLITS = ("train", "test")


def write_splits(
    output_dir: str | os.PathLike,
    splits: Mapping[str, Sequence[Mapping[str, Any]]],
    known_splits: Sequence[str] = (),
) -> dict[str, Path]:
    """Write ``{split: rows}`` as ``<output_dir>/<split>.parquet``, all or nothing.

    Every split is written to a temporary file in ``output_dir`` first; only when all of them are
    complete are they moved into place with ``os.replace`` (atomic on one filesystem). On any error
    the temporary files are removed and existing outputs are left untouched. After a success, a
    ``known_splits`` file this run did not write (an older ``test.parquet`` after ``--test-size 0``)
    is removed: the recipes would read it as this dataset's validation set.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    out = Path(os.path.expanduser(os.fspath(output_dir)))
    out.mkdir(parents=True, exist_ok=True)
    temps: dict[str, Path] = {}
    try:
        for split, rows in splits.items():
            if not rows:
                raise DataBuildError(f"refusing to write an empty {split} split")
            fd, tmp = tempfile.mkstemp(prefix=f".{split}.", suffix=".parquet.tmp", dir=out)
            os.close(fd)
            temps[split] = Path(tmp)
            table = pa.Table.from_pylist(list(rows))
            pq.write_table(table, tmp)
            os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; outputs get normal permissions
        final: dict[str, Path] = {}
        for split, tmp in temps.items():
            target = out / f"{split}.parquet"
            os.replace(tmp, target)
            final[split] = target
        temps.clear()
        remove_stale_splits(out, [s for s in known_splits if s not in final])
        return final
    finally:
        for tmp in temps.values():
            try:
                tmp.unlink()
            except FileNotFoundError:
                pass


def remove_stale_splits(output_dir: Path, splits: Sequence[str]) -> list[Path]:
    """Delete ``<output_dir>/<split>.parquet`` for each of ``splits``; returns the files removed."""
    removed = []
    for split in splits:
        path = output_dir / f"{split}.parquet"
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed
