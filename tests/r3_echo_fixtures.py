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
"""Test helpers shared by the backend, miner and evaluator tests: a tiny "echo_test" task and parquet writer.

The echo task passes when the response contains the ground-truth string, so scripted responses
decide every verdict exactly. (Named r3_echo_fixtures, not tests.*, because verl installs a
top-level ``tests`` package.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from r3_plugin.policy.tasks import NO_ANSWER, VerifyResult, register_task, unregister_task

ECHO = "echo_test"


def echo_verify(response: str, ground_truth: Any, extra_info: Any = None) -> VerifyResult:
    if not response.strip():
        return VerifyResult(False, NO_ANSWER, None, "empty")
    if str(ground_truth) in response:
        return VerifyResult(True, "correct", str(ground_truth))
    return VerifyResult(False, "wrong", response.strip()[:50], "ground truth not in response")


def register_echo() -> None:
    register_task(ECHO, echo_verify, replace_existing=True)


def unregister_echo() -> None:
    unregister_task(ECHO)


def echo_rows(n: int) -> list[dict]:
    return [
        {
            "data_source": ECHO,
            "prompt": [{"role": "user", "content": f"say {i:03d}"}],
            "ability": "echo",
            "reward_model": {"style": "rule", "ground_truth": f"{i:03d}"},
            "extra_info": {"index": i, "split": "test"},
            "agent_name": "r3_agent",
        }
        for i in range(n)
    ]


def write_parquet(rows: list[dict], path: Path) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path
