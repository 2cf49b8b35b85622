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
"""Patch 1: the countdown scorer in ``verl/utils/reward_score`` and its ``default_compute_score`` branch.

``countdown.py`` is the plugin's countdown verifier with its task registration moved out (it goes
to the agent loop's ``builtin_tasks``, patch 2) and a verl ``compute_score`` entry point added.
The verdict type the verifier returns (``VerifyResult`` and the shared categories) is split out of
the plugin's task registry into ``verdict.py``, so the scorer does not import the agent loop.
"""

from __future__ import annotations

import ast

from r3_plugin.upstream import layout
from r3_plugin.upstream.transform import (
    Node,
    TransformError,
    amend_docstring,
    drop_nodes,
    find_node,
    literal,
    module_call,
    normalize_imports,
    render_all,
    replace_exact,
    rewrite_modules,
    strip_license,
    top_level,
    with_header,
)

TASKS_SRC = "r3_plugin/policy/tasks.py"
COUNTDOWN_SRC = "r3_plugin/policy/verifiers/countdown.py"

#: Names of the plugin's task registry that make up the verdict type.
VERDICT_NAMES = ("CORRECT", "NO_ANSWER", "VERIFIER_ERROR", "VerifyResult")

VERDICT_DOCSTRING = '''"""Structured verdicts for rule-based scorers.

A scorer that returns a :class:`VerifyResult` says not only whether a response passed but why it
failed (a short category such as ``no_answer``), which agent loops and evaluation reports use;
``VerifyResult.score`` is the plain 0/1 reward.
"""
'''

SCORER_NOTE = """\
verl entry point: :func:`compute_score`, dispatched by
``verl.utils.reward_score.default_compute_score`` for the countdown ``data_source`` names. It
scores the decoded *response only*, as verl's reward managers pass it; the TinyZero port that
circulates looks for the prompt's ``Assistant:`` marker inside the text and so scores 0 in verl."""

COMPUTE_SCORE = '''

def compute_score(
    solution_str: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None, **kwargs: Any
) -> float:
    """verl reward: 1.0 when the last ``<answer>`` equation of the response is correct, else 0.0.

    ``ground_truth`` is ``{"target": int, "numbers": [int, ...]}`` (TinyZero's ``"nums"`` works too,
    as does a JSON string of it). Model output never raises; a malformed ground truth raises
    ValueError, since that is a data bug rather than a wrong answer.
    """
    return countdown_verify(solution_str, ground_truth, extra_info).score
'''


def task_registration(sources) -> tuple[Node, list[Node], tuple[str, ...]]:
    """The plugin's ``register_task(...)`` call for countdown, the prompt constants it uses, its names."""
    where = COUNTDOWN_SRC
    _, nodes = top_level(sources.read(where), where=where)
    call = module_call(nodes, "register_task", where=where)
    first = call.stmt.value.args[0] if call.stmt.value.args else None
    try:
        names = ast.literal_eval(first)
    except Exception as exc:
        raise TransformError(f"{where}: register_task's data_source is not a literal") from exc
    names = (names,) if isinstance(names, str) else tuple(names)
    referenced = {n.id for n in ast.walk(call.stmt) if isinstance(n, ast.Name)}
    prompts = [n for n in nodes if n.names and all(x.endswith("_PROMPT") for x in n.names) and n.names[0] in referenced]
    return call, prompts, names


def verdict_module(sources) -> str:
    where = TASKS_SRC
    _, nodes = top_level(sources.read(where), where=where)
    parts = [find_node(nodes, name, where=where).source.rstrip("\n") for name in VERDICT_NAMES]
    # CORRECT, NO_ANSWER and VERIFIER_ERROR are consecutive one-liners: keep them as one block.
    constants = "\n".join(p for p in parts[:3])
    body = (
        VERDICT_DOCSTRING
        + "\nfrom __future__ import annotations\n\nfrom dataclasses import dataclass\n\n"
        + constants
        + "\n\n\n"
        + parts[3]
        + "\n"
    )
    return with_header(normalize_imports(body, where=layout.VERDICT_PATH))


def scorer_module(sources) -> str:
    where = COUNTDOWN_SRC
    source = strip_license(sources.read(where))
    call, prompts, _ = task_registration(sources)
    source = drop_nodes(source, [call, *prompts], where=where)
    _, nodes = top_level(source, where=where)
    # the verdict names come from verl's verdict module; register_task is no longer used
    for node in nodes:
        if isinstance(node.stmt, ast.ImportFrom) and node.stmt.module == "r3_plugin.policy.tasks":
            names = [a.name for a in node.stmt.names if a.name in VERDICT_NAMES]
            source = replace_exact(
                source, node.source, f"from {layout.VERDICT_MODULE} import {', '.join(names)}\n", where=where
            )
    all_node = find_node(nodes, "__all__", where=where)
    removed = {name for p in prompts for name in p.names}
    exported = [n for n in literal(nodes, "__all__", where=where) if n not in removed]
    source = replace_exact(source, all_node.source.rstrip("\n"), render_all([*exported, "compute_score"]), where=where)
    source = amend_docstring(source, SCORER_NOTE, where=where)
    source = source.rstrip("\n") + "\n" + COMPUTE_SCORE
    source = rewrite_modules(source, layout.MODULE_MAP)
    return with_header(normalize_imports(source, where=layout.SCORER_PATH))


def reward_init(original: str, sources) -> str:
    """verl's ``reward_score/__init__.py`` with a countdown branch in ``default_compute_score``."""
    _, _, names = task_registration(sources)
    listed = ", ".join(f'"{n}"' for n in names)
    branch = (
        f"    elif data_source in [{listed}]:\n"
        "        from . import countdown\n"
        "\n"
        "        res = countdown.compute_score(solution_str, ground_truth, extra_info)\n"
    )
    anchor = "\n    else:\n        raise NotImplementedError"
    # the last branch is followed by a blank line before `else:`; the new branch goes into that gap
    return replace_exact(original, "\n" + anchor, "\n" + branch + anchor, where=layout.REWARD_INIT_PATH)
