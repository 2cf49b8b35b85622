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
"""Run ``python -m verl.trainer.main_ppo`` with ``+r3_scale=cpu`` as a child process, and read what it wrote.

The demo, the trainer tests, the benchmarks and the evidence pipeline all start verl's real trainer
this way: one command line, a log file, verl's file logger for the step metrics
(``<out>/metrics.jsonl``), R3's token dump (``<out>/rollout/r3_tokens/step_<N>.jsonl``) and checkpoints
under ``<out>/checkpoints``. Every process of the run (Ray's included) carries ``R3_RUN_ID`` in its
environment, so :meth:`TrainerRun.kill` can take the whole run down like a crash would.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUN_ID_ENV = "R3_RUN_ID"


def main_ppo_command(
    recipe: str,
    *,
    model: str | os.PathLike,
    train_files: str | os.PathLike,
    val_files: str | os.PathLike,
    out_dir: str | os.PathLike,
    overrides: Sequence[str] = (),
    python: str | None = None,
) -> list[str]:
    """The command line: the recipe, the CPU preset, the paths, then the caller's overrides (which win)."""
    out = Path(out_dir)
    return [
        python or sys.executable,
        "-m",
        "verl.trainer.main_ppo",
        f"+recipe={recipe}",
        "+r3_scale=cpu",
        f"actor_rollout_ref.model.path={model}",
        f"data.train_files={train_files}",
        f"data.val_files={val_files}",
        "trainer.logger=[console,file]",
        f"trainer.rollout_data_dir={out / 'rollout'}",
        f"trainer.default_local_dir={out / 'checkpoints'}",
        *overrides,
    ]


def hydra_string(text: str) -> str:
    """``text`` as a Hydra override value: single-quoted, so that "" and text with spaces, commas or
    brackets stay one string (Hydra's rule: escape quotes, and backslashes only before a quote or the end)."""
    doubled = re.sub(r"(\\+)(?='|$)", lambda m: m.group(1) * 2, text)
    return "'" + doubled.replace("'", "\\'") + "'"


def prompt_overrides(prompts: Mapping[str, str], prefix: str = "") -> list[str]:
    """``r3.<key>='<text>'`` for episode prompts a model was trained with (``model_prompts``), e.g.
    ``{"retry_prompt": ""}`` -> ``["r3.retry_prompt=''"]``; ``prefix`` is Hydra's ``+``/``++``."""
    return [f"{prefix}r3.{key}={hydra_string(text)}" for key, text in prompts.items()]


def run_env(out_dir: str | os.PathLike, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for one run: metrics file, a short Ray temp dir (socket paths are length-limited), a run id."""
    env = dict(os.environ)
    env.setdefault("RAY_TMPDIR", f"/tmp/ray-r3-{os.getuid()}")
    env.setdefault("TOKENIZERS_PARALLELISM", "false")
    env["VERL_FILE_LOGGER_PATH"] = str(Path(out_dir) / "metrics.jsonl")
    env[RUN_ID_ENV] = uuid.uuid4().hex
    env.update(extra or {})
    os.makedirs(env["RAY_TMPDIR"], exist_ok=True)
    return env


@dataclass
class TrainerRun:
    """One ``main_ppo`` child process writing into ``out_dir``."""

    command: list[str]
    out_dir: Path
    env: dict[str, str]
    log_path: Path = field(init=False)
    process: subprocess.Popen | None = None
    started: float = 0.0

    def __post_init__(self) -> None:
        self.out_dir = Path(self.out_dir)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = self.out_dir / "main_ppo.log"

    def start(self, cwd: str | os.PathLike | None = None) -> TrainerRun:
        log = open(self.log_path, "ab")
        log.write(("$ " + " ".join(self.command) + "\n").encode())
        log.flush()
        self.started = time.monotonic()
        self.process = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=cwd or self.out_dir,
            start_new_session=True,
        )
        log.close()
        return self

    def wait(self, timeout: float | None = None) -> int:
        assert self.process is not None, "start() first"
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise

    def run(self, timeout: float | None = None) -> int:
        return self.start().wait(timeout)

    @property
    def seconds(self) -> float:
        return time.monotonic() - self.started

    def kill(self) -> None:
        """SIGKILL every process of this run (the child's session and anything Ray started for it)."""
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        run_id = self.env.get(RUN_ID_ENV)
        for pid in _pids_with_env(RUN_ID_ENV, run_id):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.process is not None:
            self.process.wait()

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    # -- what the run wrote ----------------------------------------------------------------------
    def metrics(self) -> dict[int, dict[str, Any]]:
        return read_metrics(self.out_dir / "metrics.jsonl")

    def follow_steps(self, poll_s: float = 2.0) -> Iterator[tuple[int, dict[str, Any]] | None]:
        """Each logged step's metrics once, in order, while the run goes on and once more after it
        exits; ``None`` after a poll that found nothing new (a place for a heartbeat). Step 0 (the
        validation before training) is yielded once its first-try accuracy is in.
        """
        shown: set[int] = set()
        while True:
            exited = self.process.poll() is not None
            metrics = self.metrics()
            fresh = [s for s in sorted(metrics) if s not in shown]
            fresh = [s for s in fresh if s != 0 or validation_metric(metrics[0], "first_try_acc") is not None]
            for step in fresh:
                shown.add(step)
                yield step, metrics[step]
            if exited:
                return
            if not fresh:
                yield None
            time.sleep(poll_s)

    def token_dump(self, step: int) -> list[dict[str, Any]]:
        from r3_plugin.integration.token_dump import SUBDIR, read_step

        return read_step(self.out_dir / "rollout" / SUBDIR / f"step_{step}.jsonl")

    def checkpointed_step(self) -> int | None:
        tracker = self.out_dir / "checkpoints" / "latest_checkpointed_iteration.txt"
        try:
            return int(tracker.read_text().strip())
        except (OSError, ValueError):
            return None


def read_metrics(path: str | os.PathLike) -> dict[int, dict[str, Any]]:
    """verl's file-logger JSON lines, merged per step (validation and training log separately).

    A last line without its newline is being written by a running trainer: it is left for the next read.
    """
    steps: dict[int, dict[str, Any]] = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return steps
    lines = text.splitlines()
    if lines and not text.endswith("\n"):
        lines.pop()
    for line in lines:
        if not line.strip():
            continue
        entry = json.loads(line)
        steps.setdefault(int(entry["step"]), {}).update(entry.get("data") or {})
    return steps


def validation_metric(metrics: Mapping[str, Any], name: str) -> float | None:
    """A validation value R3 logs per data source (``val-aux/<source>/<name>/mean@k``) from a step's metrics."""
    for key, value in metrics.items():
        if key.startswith("val-aux/") and f"/{name}/mean@" in key:
            return float(value)
    return None


def _pids_with_env(name: str, value: str | None) -> Iterable[int]:
    if not value:
        return []
    needle = f"{name}={value}".encode()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as fh:
                if needle in fh.read().split(b"\0"):
                    found.append(int(entry))
        except OSError:
            continue
    return found
