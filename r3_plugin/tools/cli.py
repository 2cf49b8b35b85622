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
"""The ``r3`` command line (also ``python -m r3_plugin``).

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``.
Modules keep heavy imports (torch, verl, vllm) inside ``run`` so ``r3 --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "data": ("r3_plugin.tools.data.cli", "build countdown / function-calling parquet files for verl"),
    "mine": ("r3_plugin.tools.mine", "build the 'dataset of failures': sample each query until the model fails"),
    "evaluate": ("r3_plugin.tools.evaluate", "first-try / second-try accuracy of a model, and compare runs"),
    "demo": ("r3_plugin.tools.demo", "run R3 episodes on CPU with a tiny model and show what GRPO trains"),
    "config": ("r3_plugin.tools.show_config", "compose and print a recipe's verl config (no GPU needed)"),
    "patches": ("r3_plugin.upstream.patches", "regenerate or check the upstream patch series for verl"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="r3",
        description=(
            "Reflect, Retry, Reward (R3) for verl. Training itself runs through verl: "
            "python -m verl.trainer.main_ppo +recipe=r3_countdown"
        ),
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            # A subcommand whose module is missing must not break the others.
            p = sub.add_parser(name, help=f"{help_text} (unavailable: {exc})")
            p.set_defaults(_module=None, _error=str(exc))
            continue
        p = sub.add_parser(
            name,
            help=help_text,
            description=(module.__doc__ or help_text).strip(),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def _version() -> str:
    from r3_plugin import __version__

    return __version__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 0
    module = getattr(args, "_module", None)
    if module is None:
        print(f"r3 {args.command}: not available: {args._error}", file=sys.stderr)
        return 2
    try:
        return int(module.run(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
