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
"""The ``verl.plugins`` entry point and the Hydra plugin work in a fresh process, as in every Ray worker."""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest

PROBE = r"""
import json, sys
import verl
from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
import verl.utils.config as vc
from verl.plugin.platform.platform_manager import PlatformRegistry
from hydra.core.plugins import Plugins
from hydra.plugins.search_path_plugin import SearchPathPlugin
print(json.dumps({
    "agent": "r3_agent" in _agent_loop_registry,
    "cpu_platform": "cpu" in PlatformRegistry.registered_names(),
    "guard": bool(getattr(vc.validate_config, "_r3_guarded", False)),
    "searchpath": [c.__name__ for c in Plugins.instance().discover(SearchPathPlugin)],
}))
"""


def _run(code: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300)


def test_entry_point_is_declared_and_loads():
    eps = [ep for ep in entry_points(group="verl.plugins") if ep.name == "r3"]
    assert len(eps) == 1 and eps[0].value == "r3_plugin.plugin"
    module = eps[0].load()
    assert module.__name__ == "r3_plugin.integration.plugin"


def test_fresh_process_registers_everything(tmp_path):
    proc = _run(PROBE, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["agent"], "r3_agent is not in verl's agent loop registry after `import verl`"
    assert facts["cpu_platform"], "no accelerator here, so the CPU platform must be in verl's PlatformRegistry"
    assert facts["guard"], "verl.utils.config.validate_config is not wrapped by the R3 guard"
    assert "R3SearchPathPlugin" in facts["searchpath"]
    assert "r3-plugin: could not register" not in proc.stderr, proc.stderr[-3000:]


def _editable_install() -> bool:
    """setuptools' editable finder puts a placeholder, not a directory, on the namespace path."""
    import hydra_plugins

    return any("__editable__" in str(entry) for entry in hydra_plugins.__path__)


def test_hydra_scanner_finds_the_plugin_without_verl(tmp_path):
    """A regular install exposes hydra_plugins/r3_plugin to Hydra's own scan (any Hydra app, no verl import)."""
    if _editable_install():
        pytest.skip("setuptools editable installs hide namespace packages from pkgutil; the entry point covers it")
    code = (
        "from hydra.core.plugins import Plugins\n"
        "from hydra.plugins.search_path_plugin import SearchPathPlugin\n"
        "print([c.__name__ for c in Plugins.instance().discover(SearchPathPlugin)])\n"
    )
    proc = _run(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "R3SearchPathPlugin" in proc.stdout


def test_hydra_plugins_has_no_init():
    """``hydra_plugins`` must stay a namespace package shared with other Hydra plugins."""
    import hydra_plugins

    assert getattr(hydra_plugins, "__file__", None) is None
    import hydra_plugins.r3_plugin.r3_searchpath as sp

    paths = sp.search_paths()
    assert paths and all(p.startswith("file://") for p in paths)


def test_every_package_ships_in_the_wheel():
    """pyproject lists packages explicitly; a new subpackage left out is missing from a regular install."""
    import tomllib

    root = Path(__file__).resolve().parents[1]
    listed = set(tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {".".join(p.parent.relative_to(root).parts) for p in (root / "r3_plugin").rglob("__init__.py")}
    assert on_disk <= listed, f"add to [tool.setuptools] packages: {sorted(on_disk - listed)}"


_NOISY_START = """
import warnings
import verl, verl.workers.engine
warnings.warn("Disabled critic as algorithm.adv_estimator != gae. If it is not intended, please set critic.enable=True")
warnings.warn("a warning r3 must not hide")
"""


@pytest.mark.parametrize("shown", [False, True])
def test_verl_start_up_noise_is_hidden_unless_asked_for(shown):
    import os

    env = {**os.environ, "R3_VERL_WARNINGS": "1" if shown else "0"}
    proc = subprocess.run(
        [sys.executable, "-W", "default", "-c", _NOISY_START], capture_output=True, text=True, timeout=120, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "a warning r3 must not hide" in proc.stderr
    assert ("engine is not available" in proc.stderr) is shown
    assert ("Disabled critic" in proc.stderr) is shown
