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
"""Patch 5: CPU tests in verl's ``*_on_cpu.py`` convention, ported from the plugin's tests.

The agent-loop and episode tests are the plugin's own test functions, with their fixtures and the
helpers they use (tiny model builder, stand-in LLM servers, in-process rollout) collected into
``tests/experimental/agent_loop/r3_test_utils.py``. Plugin tests that need plugin-only modules
(for example its trainer) are left out. The scorer and example-config tests are written for verl's
entry points (``templates/``).
"""

from __future__ import annotations

import ast
from pathlib import Path

from r3_plugin.upstream import layout
from r3_plugin.upstream.transform import (
    Node,
    assemble_module,
    assert_no_plugin_refs,
    replace_exact,
    strip_license,
    top_level,
    used_names,
    with_header,
)

HELPER_SRCS = ("r3_plugin/local/tiny_model.py", "r3_plugin/local/local_server.py", "r3_plugin/local/local_rollout.py")
HELPER_MODULES = tuple(src.removesuffix(".py").replace("/", ".") for src in HELPER_SRCS)
AGENT_LOOP_TEST_SRCS = ("tests/conftest.py", "tests/test_agent_loop.py")
EPISODE_TEST_SRCS = ("tests/test_episode.py",)
TEMPLATES = Path(__file__).parent / "templates"

#: (plugin file, old, new): exact replacements before porting.
REPLACEMENTS = (
    ("r3_plugin/local/tiny_model.py", '"built_by": "r3_plugin.tiny_model"', '"built_by": "r3_test_utils"'),
    # verl has no recipe config group: compose plain ppo_trainer unless a test asks for one
    ("r3_plugin/local/local_rollout.py", "recipe: str | None = DEFAULT_RECIPE", "recipe: str | None = None"),
    ("r3_plugin/local/local_rollout.py", "config with an R3 recipe, as", "config with overrides, as"),
    ("r3_plugin/local/local_rollout.py", "point a recipe at a local model", "point a config at a local model"),
)


def _read(sources, src: str) -> str:
    text = sources.read(src)
    for where, old, new in REPLACEMENTS:
        if where == src:
            text = replace_exact(text, old, new, where=where)
    return text


UTILS_DOCSTRING = '''"""Helpers for the R3 agent-loop CPU tests.

A tiny randomly initialised Qwen2-style model with a real byte-level BPE tokenizer and a ChatML
template (no download), in-process stand-ins for the LLM server that return what verl's servers
return (token ids, log-probs, stop reason, weight-version ``extra_fields``), and an in-process
rollout through verl's real ``AgentLoopWorker`` and postprocessing.
"""'''

AGENT_LOOP_TEST_DOCSTRING = '''"""r3_agent through verl's real AgentLoopWorker, postprocessing, GRPO advantage and loss.

Runs on CPU: the LLM server is an in-process stand-in (scripted replies, or a tiny random model).
"""'''

EPISODE_TEST_DOCSTRING = '''"""The R3 episode policy, driven through a plain conversation with scripted turns."""'''


def _unavailable_names(source: str, where: str) -> set[str]:
    """Names a test imports from plugin modules that have no verl counterpart."""
    _, nodes = top_level(strip_license(source), where=where)
    names: set[str] = set()
    for node in nodes:
        stmt = node.stmt
        if isinstance(stmt, ast.ImportFrom) and (stmt.module or "").startswith("r3_plugin"):
            if stmt.module not in layout.MODULE_MAP:
                names.update(a.asname or a.name for a in stmt.names)
    return names


def _test_module(sources, srcs: tuple[str, ...], docstring: str, path: str) -> str:
    parts = [(src, sources.read(src)) for src in srcs]
    unavailable: set[str] = set()
    for where, text in parts:
        unavailable |= _unavailable_names(text, where)

    def keep(node: Node) -> bool:
        return not (used_names([node.stmt]) & unavailable)

    text = with_header(assemble_module(docstring, parts, module_map=layout.MODULE_MAP, keep=keep))
    assert_no_plugin_refs(path, text)
    return text


def _helper_names_used(sources) -> set[str]:
    """Helper names the ported tests import or call."""
    names: set[str] = set()
    for src in AGENT_LOOP_TEST_SRCS + EPISODE_TEST_SRCS:
        tree = ast.parse(sources.read(src))
        for n in ast.walk(tree):
            if isinstance(n, ast.ImportFrom) and n.module in HELPER_MODULES:
                names.update(a.name for a in n.names)
    return names


def test_utils_module(sources) -> str:
    """The helper definitions the tests need, with everything they use in turn."""
    defined: dict[str, Node] = {}
    for src in HELPER_SRCS:
        _, nodes = top_level(strip_license(_read(sources, src)), where=src)
        for node in nodes:
            for name in node.names:
                defined[name] = node
    needed: set[str] = set()
    todo = list(_helper_names_used(sources))
    while todo:
        name = todo.pop()
        if name in needed or name not in defined:
            continue
        needed.add(name)
        todo.extend(used_names([defined[name].stmt]) - needed)
    parts = [(src, _read(sources, src)) for src in HELPER_SRCS]
    text = assemble_module(
        UTILS_DOCSTRING,
        parts,
        module_map=layout.MODULE_MAP,
        local_modules=HELPER_MODULES,
        keep=lambda node: bool(set(node.names) & needed),
    )
    text = with_header(text)
    assert_no_plugin_refs(layout.TEST_UTILS_PATH, text)
    return text


#: Templates are sorted for verl, where ``verl`` is first-party; this project's ruff must not re-sort them.
TEMPLATE_PRAGMA = "# ruff: noqa: I001\n"


def template_module(name: str) -> str:
    body = strip_license((TEMPLATES / name).read_text(encoding="utf-8"))
    return with_header(replace_exact(body, TEMPLATE_PRAGMA, "", where=f"templates/{name}"))


def files(sources) -> dict[str, str]:
    return {
        layout.TEST_UTILS_PATH: test_utils_module(sources),
        layout.AGENT_LOOP_TEST_PATH: _test_module(
            sources, AGENT_LOOP_TEST_SRCS, AGENT_LOOP_TEST_DOCSTRING, layout.AGENT_LOOP_TEST_PATH
        ),
        layout.EPISODE_TEST_PATH: _test_module(
            sources, EPISODE_TEST_SRCS, EPISODE_TEST_DOCSTRING, layout.EPISODE_TEST_PATH
        ),
        layout.CONFIG_TEST_PATH: template_module("r3_config_tests.py"),
        layout.SCORER_TEST_PATH: template_module("countdown_scorer_tests.py"),
    }
