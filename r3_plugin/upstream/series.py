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
"""The patch series: which files each patch carries, and the git plumbing that makes mbox files.

Diffs are made by git itself: a scratch repository holds verl's original copies of the files the
series modifies, each patch is committed with a fixed author, committer and date, and
``git format-patch --zero-commit --no-signature --full-index`` writes the mbox files. Nothing in
the output depends on the clock, the machine or the user's git configuration, so generating twice
gives identical bytes and ``check`` can compare them.
"""

from __future__ import annotations

import difflib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from r3_plugin.upstream import agent, config, docs, examples, layout, reward, tests


class SeriesError(RuntimeError):
    """The series cannot be generated here (no git, wrong verl version, not a source checkout)."""


@dataclass(frozen=True)
class Patch:
    subject: str
    body: str
    #: (sources, verl_root) -> {repository path: new content}
    files: Callable[[layout.Sources, Path], dict[str, str]]
    executable: frozenset[str] = field(default_factory=frozenset)


def _original(verl_root: Path, rel: str) -> str:
    path = verl_root / rel
    if not path.is_file():
        raise SeriesError(f"{path} is missing from the installed verl; the series modifies it")
    return path.read_text(encoding="utf-8")


PATCHES = (
    Patch(
        "[reward] feat: add a countdown scorer that works on response-only strings",
        "verl has no countdown scorer, and the TinyZero port that circulates looks for the prompt's\n"
        '"Assistant:" marker inside the text, so it scores every response 0 with verl\'s reward\n'
        "managers, which pass the decoded response alone.\n\n"
        "verl/utils/reward_score/countdown.py scores the last <answer>...</answer> of the response:\n"
        "+ - * / and parentheses, each given number exactly once, equal to the target. It never\n"
        "evaluates model output as code: a hand-written single-pass parser over exact rationals with\n"
        "length, nesting, literal-size and unary-sign limits, so '9**9**9**9' or a 100k-deep\n"
        "expression cost bounded time. default_compute_score dispatches the countdown data sources\n"
        "to it. verdict.py holds the structured result (pass/fail plus a failure category) that the\n"
        "scorer returns to callers that want more than the 0/1 score.",
        lambda s, v: {
            layout.VERDICT_PATH: reward.verdict_module(s),
            layout.SCORER_PATH: reward.scorer_module(s),
            layout.REWARD_INIT_PATH: reward.reward_init(_original(v, layout.REWARD_INIT_PATH), s),
        },
    ),
    Patch(
        "[rollout] feat: add the R3 (Reflect, Retry, Reward) agent loop",
        "R3 (Bensal et al., 2025, arXiv:2505.24726): when the model's first attempt at a verifiable\n"
        "task fails, it writes a self-reflection and retries with the reflection in context; if the\n"
        "retry passes, the reflection is rewarded. Only the reflection tokens get response_mask 1.\n\n"
        "verl/experimental/agent_loop/r3/ adds the r3_agent loop, registered with\n"
        '@register("r3_agent") and imported by verl.experimental.agent_loop so the registration\n'
        "happens in every agent-loop worker. It builds the conversation with the continuous-token\n"
        "helpers (ct_build_initial_tokens / ct_merge_assistant_token / ct_merge_context_msg), carries\n"
        "the server's weight-version extra_fields like ToolAgentLoop, sets reward_score and\n"
        "reward_extra_info itself, and drops sessions with nothing to learn by returning [].\n"
        "A task registry keyed by data_source provides the verifier and prompts; countdown is built\n"
        "in. The example config carries the r3 block and the paper's hyperparameters.",
        lambda s, v: {
            **agent.files(s),
            layout.AGENT_LOOP_INIT_PATH: agent.agent_loop_init(_original(v, layout.AGENT_LOOP_INIT_PATH)),
            layout.EXAMPLE_CONFIG_PATH: config.example_config(s),
        },
    ),
    Patch(
        "[trainer] feat: add countdown preprocessing and an R3 example run script",
        "examples/data_preprocess/countdown.py turns TinyZero's Countdown-Tasks-3to4 into verl\n"
        "parquet rows (data_source countdown, agent_name r3_agent, ground truth {target, numbers})\n"
        "with the instruct prompt TinyZero uses. examples/r3_trainer/run_qwen2_5_1.5b_countdown.sh\n"
        "trains Qwen2.5-1.5B-Instruct with GRPO and the r3_agent loop on one 8-GPU node.",
        lambda s, v: examples.files(s),
        executable=frozenset({layout.RUN_SCRIPT_PATH}),
    ),
    Patch(
        "[doc] feat: add a docs page for R3",
        "docs/algo/r3.md: the method, which tokens are trained (only the reflection has\n"
        "response_mask 1), the r3 config keys, adding tasks, the countdown scorer, and what has\n"
        "been measured so far (CPU correctness tests; no GPU training results yet).",
        lambda s, v: docs.files(s),
    ),
    Patch(
        "[ci] test: add CPU tests for the countdown scorer and the R3 agent loop",
        "*_on_cpu.py tests. The agent-loop tests run r3_agent through the real AgentLoopWorker,\n"
        "postprocessing, GRPO advantage and policy loss with a tiny random Qwen2-style model built at\n"
        "test time (no download) and an in-process stand-in server: the token stream equals the chat\n"
        "template of the conversation, exactly the reflection tokens are trained and get gradient,\n"
        "and offline mode, multiple rounds, truncation, aborts and weight-version fields behave.\n"
        "The scorer tests cover response-only strings, the default_compute_score branch and\n"
        "adversarial answers.",
        lambda s, v: tests.files(s),
    ),
)


# ---------------------------------------------------------------------------------------------- git


def _git_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update(
        GIT_AUTHOR_NAME=layout.AUTHOR_NAME,
        GIT_AUTHOR_EMAIL=layout.AUTHOR_EMAIL,
        GIT_COMMITTER_NAME=layout.AUTHOR_NAME,
        GIT_COMMITTER_EMAIL=layout.AUTHOR_EMAIL,
        GIT_AUTHOR_DATE=layout.COMMIT_DATE,
        GIT_COMMITTER_DATE=layout.COMMIT_DATE,
        GIT_CONFIG_GLOBAL=os.devnull,
        GIT_CONFIG_NOSYSTEM="1",
        HOME=str(home),
        LC_ALL="C",
        TZ="UTC",
    )
    return env


def _git(repo: Path, env: dict[str, str], *args: str) -> str:
    try:
        done = subprocess.run(["git", *args], cwd=repo, env=env, capture_output=True, text=True, check=False)
    except FileNotFoundError as exc:
        raise SeriesError("git is not installed; it is needed to write the patch series") from exc
    if done.returncode != 0:
        raise SeriesError(f"git {' '.join(args)} failed in {repo}: {done.stderr.strip() or done.stdout.strip()}")
    return done.stdout


def _write(repo: Path, rel: str, content: str, executable: bool) -> None:
    path = repo / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content, encoding="utf-8", newline="\n")
    path.chmod(0o755 if executable else 0o644)


def generate_series(
    sources: layout.Sources | None = None, verl_root: Path | None = None, *, check_version: bool = True
) -> dict[str, bytes]:
    """Generate the series; returns ``{file name: mbox bytes}`` in order."""
    sources = sources or layout.Sources.locate()
    verl_root = verl_root or layout.installed_verl_root()
    if check_version:
        installed = layout.installed_verl_version()
        if installed != layout.VERL_VERSION:
            raise SeriesError(
                f"the series targets verl {layout.VERL_VERSION} but verl {installed} is installed; "
                "its unmodified files are the patches' base"
            )
    changes = [(p, p.files(sources, verl_root)) for p in PATCHES]
    with tempfile.TemporaryDirectory(prefix="r3-series-") as tmp:
        repo, home, out = Path(tmp, "repo"), Path(tmp, "home"), Path(tmp, "out")
        for d in (repo, home, out):
            d.mkdir()
        env = _git_env(home)
        _git(repo, env, "init", "-q")
        _git(repo, env, "config", "core.autocrlf", "false")
        modified = sorted({rel for _, files in changes for rel in files if (verl_root / rel).is_file()})
        for rel in modified:
            _write(repo, rel, _original(verl_root, rel), False)
        _git(repo, env, "add", "-A")
        _git(
            repo, env, "commit", "-q", "--allow-empty", "-m", f"verl {layout.VERL_VERSION} (files the series modifies)"
        )
        base = _git(repo, env, "rev-parse", "HEAD").strip()
        for patch, files in changes:
            for rel, content in files.items():
                _write(repo, rel, content, rel in patch.executable)
            _git(repo, env, "add", "-A")
            message = Path(tmp, "message")
            message.write_text(f"{patch.subject}\n\n{patch.body}\n", encoding="utf-8")
            _git(repo, env, "commit", "-q", "-F", str(message))
        _git(
            repo,
            env,
            "format-patch",
            "-q",
            "--zero-commit",
            "--no-signature",
            "--full-index",
            "--no-renames",
            "--stat=80",
            "-o",
            str(out),
            f"{base}..HEAD",
        )
        return {p.name: p.read_bytes() for p in sorted(out.glob("*.patch"))}


def write_series(out_dir: str | os.PathLike, series: dict[str, bytes] | None = None) -> list[Path]:
    """Write the series into ``out_dir`` (replacing its ``*.patch`` files); other files are kept."""
    series = series if series is not None else generate_series()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".r3-series-", dir=out))
    try:
        for name, data in series.items():
            (staging / name).write_bytes(data)
        for stale in out.glob("*.patch"):
            if stale.name not in series:
                stale.unlink()
        written = []
        for name in series:
            os.replace(staging / name, out / name)
            written.append(out / name)
        return written
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def check_series(committed_dir: str | os.PathLike, series: dict[str, bytes] | None = None) -> list[str]:
    """Differences between the committed ``*.patch`` files and a fresh generation (empty: up to date)."""
    series = series if series is not None else generate_series()
    committed = {p.name: p.read_bytes() for p in sorted(Path(committed_dir).glob("*.patch"))}
    problems = []
    for name in sorted(set(series) - set(committed)):
        problems.append(f"missing: {name} (generated, not committed)")
    for name in sorted(set(committed) - set(series)):
        problems.append(f"stale: {name} (committed, no longer generated)")
    for name in sorted(set(series) & set(committed)):
        if series[name] != committed[name]:
            diff = difflib.unified_diff(
                committed[name].decode("utf-8", "replace").splitlines(),
                series[name].decode("utf-8", "replace").splitlines(),
                f"committed/{name}",
                f"generated/{name}",
                lineterm="",
                n=1,
            )
            lines = list(diff)
            shown = "\n".join(lines[:40]) + (f"\n... ({len(lines) - 40} more diff lines)" if len(lines) > 40 else "")
            problems.append(f"differs: {name}\n{shown}")
    return problems
