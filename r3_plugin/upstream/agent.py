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
"""Patch 2: the ``r3_agent`` loop as the package ``verl/experimental/agent_loop/r3``.

The code of every module is the plugin's, with imports moved to verl paths. Module docstrings are
rewritten for verl readers (the plugin's talk about its miner, evaluator and CLI does not apply),
and a few strings that name plugin-only tools are replaced; every replacement is exact, so a
change in the plugin that touches them stops generation instead of slipping through.
"""

from __future__ import annotations

import ast

from r3_plugin.upstream import layout
from r3_plugin.upstream.reward import VERDICT_NAMES, task_registration
from r3_plugin.upstream.transform import (
    add_imports,
    assert_no_plugin_refs,
    docstring_paragraphs,
    drop_nodes,
    find_node,
    normalize_imports,
    replace_docstring,
    replace_exact,
    rewrite_modules,
    strip_license,
    top_level,
    with_header,
)

PKG = layout.AGENT_PKG

DOCSTRINGS = {
    "tasks": f'''"""Task registry for the R3 agent loop: one entry per ``data_source``, with its verifier and prompts.

The agent loop looks up the task of every row here, to judge attempts and to phrase the reflection
request. Countdown is built in (:mod:`{PKG}.builtin_tasks`, scored by
:mod:`{layout.SCORER_MODULE}`); register more tasks with :func:`register_task` in a module that
every verl process imports.
"""''',
    "episode": '''"""The R3 episode policy: attempt, verify, reflect, retry, verify.

:func:`run_episode` drives a :class:`Conversation`. The agent loop's conversation holds verl
runtime tokens with a per-token training mask; keeping the policy apart from that bookkeeping lets
it be tested on plain chat messages and reused for offline evaluation with any chat backend.
"""''',
    "session": '''"""What an agent-loop worker and the ``r3_agent`` loop tell each other about one session.

verl's worker knows whether a session validates but does not pass it to ``AgentLoopBase.run``; the
loop knows why it drops a session (``run`` returns ``[]``) but cannot say so in its return value.
Each session runs in its own asyncio task, so two context variables carry both facts across the
``run`` call: a worker sets :data:`validating` before ``run`` and may read :data:`drop_reason` after it.
"""''',
    "config": '''"""The ``r3:`` block of the trainer config, defined once: every key, its type and default.

The agent loop reads the block with :meth:`R3Config.from_mapping`; the episode's knobs are
:attr:`R3Config.episode`. :data:`AGENT_NAME` is the name the loop is registered under.
"""''',
    "episode_info": '''"""Per-episode records (verl's ``reward_extra_info``) and the step metrics aggregated from them.

The agent loop attaches :func:`episode_record` to every trajectory; verl logs its numeric keys under
``val-aux/<data_source>/<key>/...`` during validation. :func:`aggregate_step_metrics` turns the
records of a training batch, plus the sessions the loop dropped, into ``r3/...`` metrics.
"""''',
}

AGENT_LOOP_LEAD = """\
The ``r3_agent`` agent loop: Reflect, Retry, Reward (Bensal et al., 2025, arXiv:2505.24726).

The model attempts a verifiable task; when the verifier rejects the attempt, the model is asked to
reflect on what went wrong and then retries with its reflection in context. The reward is 1 when
the retry passes, and by default only the reflection tokens are trained, so GRPO teaches the model
to reflect well rather than to memorise answers. See ``docs/algo/r3.md``."""

#: (plugin file, old, new): strings in code that name plugin-only tools.
REPLACEMENTS = (
    ("r3_plugin/policy/tasks.py", "r3_plugin.register_task(", "register_task("),
    ("r3_plugin/integration/agent_loop.py", ", shared with the miner and the evaluator.", "."),
    (
        "r3_plugin/integration/agent_loop.py",
        "train on the failures parquet written by `r3 mine`",
        "train on mined failures",
    ),
    (
        "r3_plugin/integration/agent_loop.py",
        "r3_plugin.integration.verl_worker.R3AgentLoopManager",
        "<a manager setting r3.session.validating>",
    ),
    ("r3_plugin/policy/config.py", "The recipe's ``r3:`` block.", "The ``r3:`` block of the trainer config."),
    (
        "r3_plugin/policy/config.py",
        "reflect on a stored failed one (``r3 mine``).",
        "reflect on a stored failed one.",
    ),
    ("r3_plugin/policy/config.py", "configure the loop and the replay buffer)", "configure the loop)"),
    (
        "r3_plugin/policy/config.py",
        "    #: GRPO group rule of R3's replay buffer (trainer.v1.sampler.sampler_kwargs).\n"
        "    min_group_size: int = _key(2, int)\n"
        "    max_refill_prompts: int | None = _key(None, int, type(None))\n",
        "",
    ),
    ("r3_plugin/policy/episode.py", "e.g. the recipe's ``r3:`` section", "e.g. the trainer config's ``r3:`` section"),
    ("r3_plugin/policy/episode.py", "e.g. from the failure miner", "e.g. one the model failed before training"),
    (
        "r3_plugin/policy/tasks.py",
        "# Importing the package registers countdown and function calling.",
        "# Registers countdown.",
    ),
)

PACKAGE_INIT = f'''"""R3 (Reflect, Retry, Reward) as a verl agent loop.

Select it with ``actor_rollout_ref.rollout.agent.default_agent_loop=r3_agent`` (or per row with
``agent_name: r3_agent``). Importing :mod:`verl.experimental.agent_loop` registers the loop.
Rows pick their task by ``data_source`` (:func:`register_task`); countdown is built in.
See ``docs/algo/r3.md``.
"""

from {layout.VERDICT_MODULE} import VerifyResult

from .episode import EpisodeConfig, run_episode
from .r3_agent_loop import R3AgentLoop, R3Config
from .tasks import Task, get_task, register_task, registered_tasks, unregister_task, verify

__all__ = [
    "EpisodeConfig",
    "R3AgentLoop",
    "R3Config",
    "Task",
    "VerifyResult",
    "get_task",
    "register_task",
    "registered_tasks",
    "run_episode",
    "unregister_task",
    "verify",
]
'''


def _apply_replacements(source: str, plugin_file: str) -> str:
    for where, old, new in REPLACEMENTS:
        if where == plugin_file:
            source = replace_exact(source, old, new, where=where)
    return source


def _finish(path: str, source: str) -> str:
    source = rewrite_modules(source, layout.MODULE_MAP)
    text = with_header(normalize_imports(source, where=path))
    assert_no_plugin_refs(path, text)
    return text


def tasks_module(sources) -> str:
    where = "r3_plugin/policy/tasks.py"
    source = _apply_replacements(strip_license(sources.read(where)), where)
    _, nodes = top_level(source, where=where)
    source = drop_nodes(source, [find_node(nodes, n, where=where) for n in VERDICT_NAMES], where=where)
    source = add_imports(
        source, [f"from {layout.VERDICT_MODULE} import {', '.join(sorted(VERDICT_NAMES))}"], where=where
    )
    source = replace_docstring(source, DOCSTRINGS["tasks"], where=where)
    return _finish(layout.module_path(f"{PKG}.tasks"), source)


def simple_module(sources, name: str, layer: str) -> str:
    where = f"r3_plugin/{layer}/{name}.py"
    source = _apply_replacements(strip_license(sources.read(where)), where)
    source = replace_docstring(source, DOCSTRINGS[name], where=where)
    return _finish(layout.module_path(f"{PKG}.{name}"), source)


def agent_loop_module(sources) -> str:
    where = "r3_plugin/integration/agent_loop.py"
    source = _apply_replacements(strip_license(sources.read(where)), where)
    rest = docstring_paragraphs(source, where=where)[1:]
    body = "\n\n".join([AGENT_LOOP_LEAD, *rest]).replace("\\", "\\\\")
    source = replace_docstring(source, f'"""{body}\n"""', where=where)
    return _finish(layout.module_path(f"{PKG}.r3_agent_loop"), source)


def builtin_tasks_module(sources) -> str:
    """The countdown registration, moved out of the scorer so verl's reward code stays registry-free."""
    call, prompts, _ = task_registration(sources)
    referenced = sorted({n.id for n in ast.walk(call.stmt) if isinstance(n, ast.Name)})
    prompt_names = {name for p in prompts for name in p.names}
    from_scorer = [n for n in referenced if n not in prompt_names and n != "register_task"]
    body = (
        '"""Built-in R3 tasks: importing this module registers countdown, scored by\n'
        f':mod:`{layout.SCORER_MODULE}`.\n"""\n\n'
        "from __future__ import annotations\n\n"
        f"from {PKG}.tasks import register_task\n"
        f"from {layout.SCORER_MODULE} import {', '.join(from_scorer)}\n\n"
        + "".join(p.source for p in prompts)
        + "\n\n"
        + call.source
    )
    return _finish(layout.module_path(f"{PKG}.builtin_tasks"), body)


def package_init() -> str:
    return with_header(PACKAGE_INIT)


def agent_loop_init(original: str) -> str:
    """verl's ``agent_loop/__init__.py`` importing the R3 loop, so ``@register("r3_agent")`` runs."""
    where = layout.AGENT_LOOP_INIT_PATH
    text = replace_exact(
        original,
        "from .single_turn_agent_loop import SingleTurnAgentLoop\n",
        "from .r3 import R3AgentLoop\nfrom .single_turn_agent_loop import SingleTurnAgentLoop\n",
        where=where,
    )
    return replace_exact(
        text,
        "_ = [SingleTurnAgentLoop, ToolAgentLoop]",
        "_ = [SingleTurnAgentLoop, ToolAgentLoop, R3AgentLoop]",
        where=where,
    )


def files(sources) -> dict[str, str]:
    """New files of the agent-loop patch."""
    return {
        layout.AGENT_PKG_INIT_PATH: package_init(),
        layout.module_path(f"{PKG}.tasks"): tasks_module(sources),
        layout.module_path(f"{PKG}.builtin_tasks"): builtin_tasks_module(sources),
        layout.module_path(f"{PKG}.config"): simple_module(sources, "config", "policy"),
        layout.module_path(f"{PKG}.episode"): simple_module(sources, "episode", "policy"),
        layout.module_path(f"{PKG}.episode_info"): simple_module(sources, "episode_info", "policy"),
        layout.module_path(f"{PKG}.session"): simple_module(sources, "session", "integration"),
        layout.module_path(f"{PKG}.r3_agent_loop"): agent_loop_module(sources),
    }
