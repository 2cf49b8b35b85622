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
"""Regenerate or check the upstream patch series for verl 0.9.1 (patches/*.patch).

The series adds R3 to verl itself: a countdown scorer (verl/utils/reward_score/countdown.py), the
r3_agent loop (verl/experimental/agent_loop/r3/), examples, docs/algo/r3.md and CPU tests. It is
generated from this package's own code, so it cannot drift from the plugin:

  r3 patches generate            write patches/*.patch (from a source checkout of r3-plugin)
  r3 patches check               exit 1, with a diff summary, if patches/ differ from what
                                 the current code generates

A verl maintainer applies it with `git am` on a verl checkout at v0.9.1:

  git checkout v0.9.1 && git am /path/to/r3-plugin/patches/*.patch

Generation needs git and the installed verl 0.9.1 (its unmodified files are the patches' base).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="patches_command", metavar="ACTION")
    gen = sub.add_parser("generate", help="write the patch series (replaces *.patch in --out)")
    chk = sub.add_parser("check", help="fail if the committed series differs from a fresh generation")
    for p in (gen, chk):
        p.add_argument(
            "--repo",
            default=None,
            help="r3-plugin source checkout to generate from (default: the one r3_plugin is imported from)",
        )
    gen.add_argument("--out", default=None, help="output directory (default: <repo>/patches)")
    chk.add_argument("--dir", default=None, help="directory of the committed series (default: <repo>/patches)")


def run(args: argparse.Namespace) -> int:
    from r3_plugin.upstream.layout import SourceError, Sources
    from r3_plugin.upstream.series import SeriesError, check_series, generate_series, write_series
    from r3_plugin.upstream.transform import TransformError

    action = getattr(args, "patches_command", None)
    if action is None:
        print("usage: r3 patches {generate,check} [--repo DIR] (see r3 patches --help)", file=sys.stderr)
        return 2
    try:
        sources = Sources.locate(args.repo)
        series = generate_series(sources)
        if action == "generate":
            out = Path(args.out) if args.out else sources.root / "patches"
            for path in write_series(out, series):
                print(path)
            return 0
        committed = Path(args.dir) if args.dir else sources.root / "patches"
        problems = check_series(committed, series)
    except (SourceError, SeriesError, TransformError) as exc:
        print(f"r3 patches {action}: {exc}", file=sys.stderr)
        return 2
    if problems:
        print(f"{committed}: the patch series is out of date ({len(problems)} file(s)):", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
        print("regenerate with: r3 patches generate", file=sys.stderr)
        return 1
    print(f"{committed}: up to date ({len(series)} patches)")
    return 0
