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
"""argparse types and path heuristics the subcommands share, so a user's slip gets a message naming it.

argparse reports a type error as ``argument --limit: <message>``, so the message only has to say
what was wrong with the value; the flag is named for free.
"""

from __future__ import annotations

import argparse
import os
import re

#: A last suffix that reads as a file extension (.parquet, .parqet, .jsonl, .csv, ...).
_FILE_SUFFIX = re.compile(r"\.[A-Za-z]{3,8}$")


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None


def positive_int(text: str) -> int:
    """An integer >= 1 (sizes, counts, concurrency)."""
    value = _int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer (>= 1), got {value}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a split that may be empty, a count that may be zero)."""
    value = _int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def looks_like_path(text: str) -> bool:
    """True when ``text`` can only be meant as a local path, never a Hub name (``org/name``).

    Hub ids have at most one ``/`` and never start with ``/``, ``.`` or ``~``.
    """
    if text.startswith(("/", "./", "../", "~", ".\\", "..\\")) or os.path.isabs(text):
        return True
    if os.sep != "/" and os.sep in text:
        return True
    return text.count("/") >= 2


def looks_like_local_file(text: str) -> bool:
    """A data source meant as a local file: a path (see :func:`looks_like_path`) or a name with a file
    extension (``my_tasks.parqet`` is a typo of a file, not a Hub dataset)."""
    return looks_like_path(text) or bool(_FILE_SUFFIX.search(text))
