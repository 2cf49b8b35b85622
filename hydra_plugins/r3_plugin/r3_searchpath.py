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
"""Put R3's recipes on Hydra's config search path, for every Hydra app (verl's ``main_ppo`` included).

The wheel ships ``r3_plugin/recipe/*.yaml`` (task recipes, ``+recipe=r3_countdown``),
``r3_plugin/r3_model/*.yaml`` (model presets, ``+r3_model=qwen2.5-7b``) and ``r3_plugin/r3_scale/*.yaml``
(``+r3_scale=1gpu``). In a regular install that directory is ``pkg://r3_plugin``. In the repository (and
so in an editable install) the groups live under ``recipes/`` and are mapped into the package by
setuptools, which ``pkg://r3_plugin`` cannot see: Hydra resolves ``pkg://`` with importlib.resources on
the parent package's directory. So the plugin asks the import system where the group packages really
are and appends that directory (``file://...``); both layouts then behave the same. Appending (not
prepending) keeps verl's own configs first, so R3 can never shadow one of verl's groups.
"""

from __future__ import annotations

import importlib.util
import os

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

#: The provider name shown by ``--info searchpath``; tests look for it.
PROVIDER = "r3-plugin"
#: The packages that hold R3's config groups (group name = last component).
GROUP_PACKAGES = ("r3_plugin.recipe", "r3_plugin.r3_model", "r3_plugin.r3_scale")
#: Used when the group packages cannot be located (should not happen in an install).
FALLBACK_SEARCH_PATH = "pkg://r3_plugin"


def search_paths() -> list[str]:
    """Directories containing R3's group folders, as Hydra search-path URLs (one per distinct parent)."""
    paths: list[str] = []
    for name in GROUP_PACKAGES:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        if not locations:
            locations = _source_tree_location(name)
        for location in locations:
            url = "file://" + os.path.dirname(os.path.abspath(location))
            if url not in paths:
                paths.append(url)
    return paths or [FALLBACK_SEARCH_PATH]


def _source_tree_location(name: str) -> list[str]:
    """``recipes/<group>`` of a source checkout whose ``r3_plugin`` shadows the install (``python -m`` in the repo)."""
    try:
        spec = importlib.util.find_spec("r3_plugin")
    except (ImportError, ValueError):
        return []
    if spec is None or not spec.origin:
        return []
    candidate = os.path.join(os.path.dirname(os.path.dirname(spec.origin)), "recipes", name.rsplit(".", 1)[-1])
    return [candidate] if os.path.isdir(candidate) else []


class R3SearchPathPlugin(SearchPathPlugin):
    """Appends the directory of R3's recipe groups so ``+recipe=NAME`` and ``+r3_model=NAME`` resolve."""

    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        for path in search_paths():
            search_path.append(provider=PROVIDER, path=path)


def register_with_hydra() -> bool:
    """Register the plugin with Hydra directly; returns True when this call added it.

    Hydra finds plugins by walking the ``hydra_plugins`` namespace package with ``pkgutil``, which
    cannot see into setuptools' *editable* installs (their namespace path is an import-hook
    placeholder). ``r3_plugin.integration.guard.install()`` calls this from the ``verl.plugins`` entry point, which
    runs during ``import verl``, before ``main_ppo`` composes its config, so ``+recipe=...`` resolves
    with editable and regular installs alike. Registering twice is avoided by class name.
    """
    from hydra.core.plugins import Plugins

    plugins = Plugins.instance()
    name = f"{R3SearchPathPlugin.__module__}.{R3SearchPathPlugin.__name__}"
    if name in plugins.class_name_to_class:
        return False
    plugins.register(R3SearchPathPlugin)
    return True
