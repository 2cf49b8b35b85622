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
"""Where things go in verl's tree, and where the plugin sources are read from.

The target is verl's repository layout at tag v0.9.1: the ``verl/`` package (what the wheel
installs) plus the top-level ``examples/``, ``docs/`` and ``tests/`` directories of the repository.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

VERL_VERSION = "0.9.1"

#: Fixed identity and date for every commit of the series, so regeneration is byte-stable.
AUTHOR_NAME = "r3-plugin"
AUTHOR_EMAIL = "r3-plugin@users.noreply.github.com"
COMMIT_DATE = "2026-01-01T00:00:00+00:00"

AGENT_PKG = "verl.experimental.agent_loop.r3"
SCORER_MODULE = "verl.utils.reward_score.countdown"
VERDICT_MODULE = "verl.utils.reward_score.verdict"
TEST_UTILS_MODULE = "tests.experimental.agent_loop.r3_test_utils"

#: Plugin module -> verl module. Used for imports and for module names in docstrings alike.
MODULE_MAP = {
    "r3_plugin.policy.tasks": f"{AGENT_PKG}.tasks",
    "r3_plugin.policy.config": f"{AGENT_PKG}.config",
    "r3_plugin.policy.episode": f"{AGENT_PKG}.episode",
    "r3_plugin.policy.episode_info": f"{AGENT_PKG}.episode_info",
    "r3_plugin.integration.session": f"{AGENT_PKG}.session",
    "r3_plugin.integration.agent_loop": f"{AGENT_PKG}.r3_agent_loop",
    "r3_plugin.policy.verifiers": f"{AGENT_PKG}.builtin_tasks",
    "r3_plugin.policy.verifiers.countdown": SCORER_MODULE,
    "r3_plugin.local.local_server": TEST_UTILS_MODULE,
    "r3_plugin.local.local_rollout": TEST_UTILS_MODULE,
    "r3_plugin.local.tiny_model": TEST_UTILS_MODULE,
}


def module_path(module: str, *, package: bool = False) -> str:
    """Repository path of a verl-side module (``a.b.c`` -> ``a/b/c.py`` or ``a/b/c/__init__.py``)."""
    base = module.replace(".", "/")
    return f"{base}/__init__.py" if package else f"{base}.py"


# Files of the series (repository paths).
SCORER_PATH = module_path(SCORER_MODULE)
VERDICT_PATH = module_path(VERDICT_MODULE)
REWARD_INIT_PATH = "verl/utils/reward_score/__init__.py"
AGENT_LOOP_INIT_PATH = "verl/experimental/agent_loop/__init__.py"
AGENT_PKG_INIT_PATH = module_path(AGENT_PKG, package=True)
EXAMPLE_CONFIG_PATH = "examples/r3_trainer/config/r3_countdown.yaml"
RUN_SCRIPT_PATH = "examples/r3_trainer/run_qwen2_5_1.5b_countdown.sh"
PREPROCESS_PATH = "examples/data_preprocess/countdown.py"
DOCS_PATH = "docs/algo/r3.md"
TEST_UTILS_PATH = module_path(TEST_UTILS_MODULE)
SCORER_TEST_PATH = "tests/utils/reward_score/test_countdown_on_cpu.py"
AGENT_LOOP_TEST_PATH = "tests/experimental/agent_loop/test_r3_agent_loop_on_cpu.py"
EPISODE_TEST_PATH = "tests/experimental/agent_loop/test_r3_episode_on_cpu.py"
CONFIG_TEST_PATH = "tests/experimental/agent_loop/test_r3_config_on_cpu.py"

#: Packages the series modifies; verl's own ``*_on_cpu.py`` tests importing them are re-run on the patched tree.
TOUCHED_PACKAGES = ("verl.utils.reward_score", "verl.experimental.agent_loop")


_CHECKOUT_MARKERS = ("r3_plugin/policy/tasks.py", "tests/test_agent_loop.py", "recipes/recipe/r3_countdown.yaml")


class SourceError(RuntimeError):
    """A plugin source file the generator needs is missing."""


@dataclass(frozen=True)
class Sources:
    """The plugin checkout the series is generated from."""

    root: Path

    @classmethod
    def locate(cls, root: str | Path | None = None) -> Sources:
        """The r3-plugin source checkout: ``root``, else the current directory, else the checkout this
        package was imported from (an editable install).

        Generation reads the plugin's tests and recipes too, which only a source checkout has.
        """
        candidates = [Path(root)] if root is not None else [Path.cwd(), Path(__file__).resolve().parents[2]]
        missing = ""
        for candidate in candidates:
            candidate = candidate.resolve()
            missing = next((rel for rel in _CHECKOUT_MARKERS if not (candidate / rel).is_file()), "")
            if not missing:
                return cls(candidate)
        raise SourceError(
            f"{candidates[-1].resolve()} is not an r3-plugin source checkout ({missing} is missing); "
            "run `r3 patches` from a git clone of r3-plugin, or pass --repo"
        )

    def read(self, rel: str) -> str:
        path = self.root / rel
        if not path.is_file():
            raise SourceError(f"plugin source {path} is missing; the patch series is generated from it")
        return path.read_text(encoding="utf-8")


def installed_verl_root() -> Path:
    """Directory that holds the installed ``verl`` package (site-packages), without importing verl.

    Importing verl would run its plugin loader; the series only needs its files.
    """
    spec = importlib.util.find_spec("verl")
    if spec is None or not spec.submodule_search_locations:
        raise SourceError("verl is not installed; the series is generated against verl's own files")
    return Path(next(iter(spec.submodule_search_locations))).resolve().parent


def installed_verl_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("verl")
    except PackageNotFoundError:
        return "unknown"
