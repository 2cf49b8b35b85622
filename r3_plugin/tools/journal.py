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
"""An append-only JSONL journal that makes long runs resumable (the miner and the evaluator).

Every finished unit of work (a mined query, an evaluated row) is appended as one JSON line,
flushed and fsync'd before the next one is reported done, so a run killed at any point (even
with SIGKILL) loses at most the units in flight, never a finished one. A torn last line from a
crash mid-write is dropped on reopen. A sidecar ``<journal>.meta.json`` holds the run's
fingerprint (data, model, parameters): resuming with different parameters is refused, because
mixing two configurations in one output would be silently wrong.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from typing import Any


class JournalMismatch(RuntimeError):
    """The journal on disk was written by a run with different parameters."""


def file_digest(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes (identifies the data a journal was written for)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write a file so readers see the old or the new content, never half of it."""
    path = os.fspath(path)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class Journal:
    """Records keyed by ``record[key_field]``; open with :meth:`open`, then :meth:`append`."""

    def __init__(self, path: str, fingerprint: dict[str, Any], key_field: str = "key") -> None:
        self.path = path
        self.meta_path = path + ".meta.json"
        self.fingerprint = fingerprint
        self.key_field = key_field
        self.records: dict[Any, dict] = {}
        self.resumed = False
        self._fh: Any = None

    @classmethod
    def open(
        cls,
        path: str | os.PathLike,
        fingerprint: dict[str, Any],
        *,
        key_field: str = "key",
        restart: bool = False,
        force: bool = False,
    ) -> Journal:
        """Open (or create) a journal.

        ``restart`` discards an existing journal; ``force`` keeps its records even though the
        fingerprint differs (the new fingerprint is recorded).
        """
        path = os.fspath(path)
        journal = cls(path, json.loads(json.dumps(fingerprint, default=str)), key_field)
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        if restart:
            for p in (path, journal.meta_path):
                if os.path.exists(p):
                    os.remove(p)
        if os.path.exists(path) and os.path.exists(journal.meta_path):
            with open(journal.meta_path, encoding="utf-8") as f:
                old = json.load(f).get("fingerprint", {})
            journal._load()
            # An empty journal (a run that failed to start) holds nothing to mix up: never block a rerun.
            if journal.records and old != journal.fingerprint and not force:
                diff = sorted(
                    k for k in set(old) | set(journal.fingerprint) if old.get(k) != journal.fingerprint.get(k)
                )
                details = "; ".join(f"{k}: {old.get(k)!r} -> {journal.fingerprint.get(k)!r}" for k in diff[:6])
                raise JournalMismatch(
                    f"{path} was written by a run with different parameters ({details}). "
                    "Pass --restart to start over, --force to keep its records anyway, or choose another output."
                )
            journal.resumed = bool(journal.records)
        elif os.path.exists(path):
            journal._load()  # a journal without metadata: trust it only with --force
            if journal.records and not force:
                raise JournalMismatch(f"{path} has no {journal.meta_path}; pass --restart or --force")
            journal.resumed = bool(journal.records)
        atomic_write_text(journal.meta_path, json.dumps({"fingerprint": journal.fingerprint}, indent=2) + "\n")
        journal._fh = open(path, "a", encoding="utf-8")
        return journal

    def _load(self) -> None:
        good_bytes = 0
        with open(self.path, "rb") as f:
            data = f.read()
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # torn last write from a crash
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                break
            good_bytes += len(line)
            self.records[record[self.key_field]] = record
        if good_bytes < len(data):
            with open(self.path, "r+b") as f:
                f.truncate(good_bytes)

    def discard_if_empty(self) -> bool:
        """Close, and delete the journal and its metadata when no record was ever written.

        A run that fails before its first record (a wrong --model, say) then leaves nothing behind.
        """
        self.close()
        if self.records or (os.path.exists(self.path) and os.path.getsize(self.path) > 0):
            return False
        for p in (self.path, self.meta_path):
            if os.path.exists(p):
                os.remove(p)
        return True

    def done(self, key: Any) -> bool:
        return key in self.records

    def append(self, record: dict) -> None:
        """Durably add one finished record (flush + fsync before returning)."""
        if self._fh is None:
            raise RuntimeError(f"{self.path}: journal is closed")
        line = json.dumps(record, ensure_ascii=False, default=str)
        self._fh.write(line + "\n")
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.records[record[self.key_field]] = record

    def __iter__(self) -> Iterator[dict]:
        return iter(self.records.values())

    def __len__(self) -> int:
        return len(self.records)

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None

    def __enter__(self) -> Journal:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
