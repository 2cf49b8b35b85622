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
"""Write the data folders of the GPU end-to-end runs from one countdown folder.

  ROOT/countdown    as written by ``r3 data countdown`` (rows carry agent_name=r3_agent)
  ROOT/toy          the same prompts as the task r3_toy_parity (``r3_toy_task``)
  ROOT/single_turn  the same countdown rows without the agent_name column: verl uses a row's
                    agent_name when the column exists and ``rollout.agent.default_agent_loop``
                    only when it does not, so the single-turn baseline needs the column gone

Usage: python3 scripts/gpu/prepare_data.py ROOT   (after ``r3 data countdown --output-dir ROOT/countdown``)
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

SPLITS = ("train.parquet", "test.parquet")


def write_single_turn(src: str, dst: str) -> int:
    """Copy ``src`` to ``dst`` (atomically) without the agent_name column; returns the row count."""
    import pandas as pd

    frame = pd.read_parquet(src)
    frame = frame.drop(columns=[c for c in ("agent_name",) if c in frame.columns])
    os.makedirs(os.path.dirname(os.path.abspath(dst)) or ".", exist_ok=True)
    tmp = f"{dst}.tmp-{os.getpid()}"
    frame.to_parquet(tmp)
    os.replace(tmp, dst)
    return len(frame)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "root", help="folder holding countdown/ (from r3 data countdown); toy/ and single_turn/ go here"
    )
    args = parser.parse_args(argv)
    import r3_toy_task

    for name in SPLITS:
        src = os.path.join(args.root, "countdown", name)
        if not os.path.exists(src):
            print(
                f"prepare_data: {src} is missing; run `r3 data countdown --output-dir {args.root}/countdown`",
                file=sys.stderr,
            )
            return 2
        n_toy = r3_toy_task.build_toy_parquet(src, os.path.join(args.root, "toy", name))
        n_st = write_single_turn(src, os.path.join(args.root, "single_turn", name))
        print(f"{name}: {n_toy} toy rows, {n_st} single-turn rows")
    return 0


if __name__ == "__main__":
    sys.exit(main())
