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
"""A toy R3 task a random tiny model sometimes passes: a user's own task package.

Used by the tests that run verl's real trainer on CPU (``tests/test_trainer_cpu.py``). A random
model never solves countdown, so every reward is 0 and GRPO advantages are 0. This task, ``r3_toy_parity``, passes
when the response has an even number of characters: about half of random texts do, so rewards vary
within a GRPO group and the reflection tokens get non-zero advantages. It is registered through
r3-plugin's public registry (``r3_plugin.register_task``) with countdown's reflection and retry
prompts, so an episode's inserted messages are the same as in the countdown runs.

verl loads this module in every process it starts, as it would a user's: through its own
``verl.plugins`` entry point once installed (``pyproject.toml`` next to it), or, as the tests do,
with verl's ``VERL_USE_EXTERNAL_MODULES=r3_toy_task`` and the folder on ``PYTHONPATH``.
``python -m r3_toy_task SRC_DIR DST_DIR`` turns countdown parquet
files (``r3 data countdown``) into toy-task parquet files with the same prompts.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from r3_plugin import VerifyResult, register_task
from r3_plugin.policy.tasks import get_task

logger = logging.getLogger(__name__)

DATA_SOURCE = "r3_toy_parity"

_countdown = get_task("countdown")


@register_task(
    DATA_SOURCE,
    reflection_prompt=_countdown.reflection_prompt,
    retry_prompt=_countdown.retry_prompt,
    plain_retry_prompt=_countdown.plain_retry_prompt,
    description="passes when the response has an even number of characters (a test task)",
    replace_existing=True,
)
def verify_parity(response: str, ground_truth: Any, extra_info: Any = None) -> VerifyResult:
    """Pass when ``len(response)`` is even (``ground_truth`` "even") or odd ("odd")."""
    want_even = str(ground_truth or "even").strip().lower() != "odd"
    ok = (len(response) % 2 == 0) == want_even
    return VerifyResult(ok, "correct" if ok else "wrong_parity", answer=str(len(response)))


def toy_rows(frame: Any) -> Any:
    """Countdown rows (verl format) turned into toy-task rows with the same prompts."""
    out = frame.copy()
    out["data_source"] = DATA_SOURCE
    out["reward_model"] = [{"style": "rule", "ground_truth": "even"} for _ in range(len(out))]
    out["agent_name"] = "r3_agent"
    return out


def build_toy_parquet(src: str, dst: str) -> int:
    """Write ``dst`` (atomically) from the countdown parquet ``src``; returns the row count."""
    import pandas as pd

    rows = toy_rows(pd.read_parquet(src))
    os.makedirs(os.path.dirname(os.path.abspath(dst)) or ".", exist_ok=True)
    tmp = f"{dst}.tmp-{os.getpid()}"
    rows.to_parquet(tmp)
    os.replace(tmp, dst)
    return len(rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m r3_toy_task",
        description="Turn countdown parquet files (train.parquet, test.parquet) into r3_toy_parity files.",
    )
    parser.add_argument("src_dir", help="folder with countdown train.parquet / test.parquet (r3 data countdown)")
    parser.add_argument("dst_dir", help="where the toy-task train.parquet / test.parquet go")
    args = parser.parse_args(argv)
    for name in ("train.parquet", "test.parquet"):
        src = os.path.join(args.src_dir, name)
        if not os.path.exists(src):
            print(f"python -m r3_toy_task: {src} does not exist (run `r3 data countdown` first)", file=sys.stderr)
            return 2
        n = build_toy_parquet(src, os.path.join(args.dst_dir, name))
        print(f"{n} rows -> {os.path.join(args.dst_dir, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
