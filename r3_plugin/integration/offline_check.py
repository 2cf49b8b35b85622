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
"""Check an offline-mode training file before Ray starts: every row has a stored attempt that fits.

In offline mode the stored failed attempt opens the response (the prompt is the task), so it must
leave room for the reflection, the retry and the inserted messages within
``data.max_response_length``; a row that does not would be dropped as out of budget every time it
is drawn. Rows are read with pyarrow and stored attempts counted with the model's own tokenizer.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

#: Rows named in one error message; the rest are counted.
SHOWN = 5


def _files(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [str(v) for v in value] if isinstance(value, Iterable) else []


def check_offline_rows(train_files: Any, *, tokenizer: Any | None, room: int, overhead: int, errors: list[str]) -> None:
    """Append an error per problem found (missing stored attempts, attempts longer than ``room - overhead``)."""
    import pyarrow.parquet as pq

    from r3_plugin.integration.agent_loop import FAILED_ATTEMPT_KEY

    for path in _files(train_files):
        if not os.path.isfile(path):
            continue  # verl reports missing files itself
        extra = pq.read_table(path, columns=["extra_info"]).column("extra_info").to_pylist()
        missing = [i for i, info in enumerate(extra) if not (info or {}).get(FAILED_ATTEMPT_KEY)]
        if missing:
            shown = ", ".join(str(i) for i in missing[:SHOWN])
            errors.append(
                f"{path}: r3.mode=offline but {len(missing)} of {len(extra)} rows have no extra_info."
                f"{FAILED_ATTEMPT_KEY} (rows {shown}{', ...' if len(missing) > SHOWN else ''}); train on the "
                "failures parquet written by `r3 mine`"
            )
        if tokenizer is None:
            continue
        limit = room - overhead
        too_long = []
        for i, info in enumerate(extra):
            text = (info or {}).get(FAILED_ATTEMPT_KEY)
            if text:
                n = len(tokenizer(text, add_special_tokens=False)["input_ids"])
                if n > limit:
                    too_long.append((i, (info or {}).get("index"), n))
        if too_long:
            shown = "; ".join(f"row {i} (extra_info.index {idx}): {n} tokens" for i, idx, n in too_long[:SHOWN])
            errors.append(
                f"{path}: {len(too_long)} stored attempts are longer than the {limit} tokens an offline episode "
                f"leaves them (data.max_response_length minus reflection, retry and ~{overhead} tokens of inserted "
                f"messages): {shown}{'; ...' if len(too_long) > SHOWN else ''}. Raise data.max_response_length, "
                "or mine with a smaller --attempt-max-tokens"
            )


def load_tokenizer(model_path: Any) -> Any | None:
    """The model's tokenizer when ``model_path`` is a local folder (no download is attempted)."""
    if not isinstance(model_path, str) or not os.path.isdir(model_path):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_path)
