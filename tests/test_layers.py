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
"""The package layout is a layering: a lower layer never imports a higher one (lazy imports included).

    policy        <- integration <- local <- tools
    cpu (platform) sits under integration; upstream (patch generator) and evidence stand apart.

Every module of ``r3_plugin`` is parsed with ``ast``; each ``import r3_plugin...`` and
``from r3_plugin... import ...`` anywhere in it (inside functions too) is checked against the table.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "r3_plugin"

#: Layer -> the layers its modules may import (besides their own). The root modules (``__init__``,
#: ``__main__``, ``_moved``) import only the public API, the CLI and the alias table.
MAY_IMPORT: dict[str, set[str]] = {
    "policy": set(),
    "cpu": set(),
    "integration": {"policy", "cpu"},
    "local": {"policy", "cpu", "integration"},
    "tools": {"policy", "cpu", "integration", "local"},
    "upstream": set(),
    "evidence": {"policy", "cpu", "integration", "local", "tools"},
    "root": {"policy", "tools"},
}
#: Modules any layer may import: the table of moved module paths (no imports of its own).
SHARED = {"r3_plugin._moved"}


def layer_of(module: str) -> str:
    """``r3_plugin.policy.tasks`` -> ``policy``; the package's own top-level modules are ``root``."""
    from r3_plugin._moved import new_name

    module = new_name(module) or module
    parts = module.split(".")
    if len(parts) >= 2 and parts[1] in MAY_IMPORT:
        return parts[1]
    return "root"


def module_name(path: Path, package: Path = PACKAGE) -> str:
    rel = path.relative_to(package.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(tree: ast.AST, module: str, is_package: bool):
    """(line, imported module) for every import of an r3_plugin module in the tree, at any depth."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from r3_plugin import tools`` imports the submodule; ``from r3_plugin import register_task`` the root
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                yield (
                    node.lineno,
                    sub
                    if (PACKAGE.parent / (sub.replace(".", "/") + ".py")).exists()
                    or (PACKAGE.parent / sub.replace(".", "/")).is_dir()
                    or sub in _moved_names()
                    else target,
                )
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                yield node.lineno, node.args[0].value


def _moved_names() -> set[str]:
    from r3_plugin._moved import MOVED

    return set(MOVED)


def violations(package: Path = PACKAGE) -> list[str]:
    found = []
    for path in sorted(package.rglob("*.py")):
        module = module_name(path, package)
        layer = layer_of(module)
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, target in imported_modules(tree, module, path.name == "__init__.py"):
            if target != "r3_plugin" and not target.startswith("r3_plugin."):
                continue
            if target in SHARED or target == "r3_plugin":
                continue
            other = layer_of(target)
            if other != layer and other not in MAY_IMPORT[layer]:
                rel = path.relative_to(package.parent)
                found.append(f"{rel}:{line}: {layer} imports {target} ({other})")
    return found


def test_no_lower_layer_imports_a_higher_one():
    found = violations()
    assert not found, "layering broken (see README, Layout):\n" + "\n".join(found)


def test_every_module_belongs_to_a_layer():
    top = {p.stem for p in PACKAGE.glob("*.py")} | {p.name for p in PACKAGE.iterdir() if p.is_dir()}
    roots = {"__init__", "__main__", "_moved", "__pycache__", "assets"}
    assert top - roots <= set(MAY_IMPORT), (
        f"top-level modules outside every layer: {sorted(top - roots - set(MAY_IMPORT))}"
    )


@pytest.mark.parametrize(
    ("layer", "source", "bad"),
    [
        ("policy", "def f():\n    from r3_plugin.integration import guard\n", "r3_plugin.integration"),
        ("integration", "from r3_plugin.local.tiny_model import ensure_tiny_model\n", "r3_plugin.local.tiny_model"),
        ("policy", "import importlib\nimportlib.import_module('r3_plugin.tools.mine')\n", "r3_plugin.tools.mine"),
        ("integration", "from r3_plugin.demo import count\n", "r3_plugin.demo"),  # an old path counts too
    ],
)
def test_the_check_catches_a_lower_layer_importing_a_higher_one(tmp_path, layer, source, bad):
    fake = tmp_path / "r3_plugin"
    (fake / layer).mkdir(parents=True)
    (fake / layer / "mod.py").write_text(source)
    found = violations(fake)
    assert len(found) == 1 and f"r3_plugin/{layer}/mod.py:" in found[0] and bad in found[0], found
