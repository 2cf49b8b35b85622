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
"""Compose an R3 recipe through verl's own ``ppo_trainer`` config and print it, summarise it or check it.

Examples:
  r3 config --list                                    recipes, model presets and scale presets
  r3 config r3_countdown                              the full config main_ppo would run (YAML)
  r3 config r3_countdown +r3_model=qwen2.5-7b --summary
  r3 config r3_function_calling +r3_model=llama3.1-8b trainer.nnodes=2 --check

The composition is the one ``python -m verl.trainer.main_ppo +recipe=NAME ...`` performs (same config
directory, same search-path plugin, same override order), done in-process with Hydra's compose API, so
it needs no GPU. ``--check`` runs r3-plugin's guard, verl's ``validate_config`` and the batch
arithmetic (train batch, mini-batch, micro-batch, group size, GPU count), checks that the data files
(data.train_files, data.val_files) exist, and exits 1 on a problem.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

GROUPS = ("recipe", "r3_model", "r3_scale")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", nargs="?", default="r3_countdown", help="task recipe name (default: r3_countdown)")
    parser.add_argument(
        "overrides",
        nargs="*",
        help="Hydra overrides, in main_ppo's syntax: +r3_model=NAME, +r3_scale=1gpu, key=value",
    )
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--summary", action="store_true", help="print the R3 block, model, batch plan and memory")
    mode.add_argument(
        "--check",
        action="store_true",
        help="validate (guard + verl + batch arithmetic + data files exist); exit 1 if bad",
    )
    mode.add_argument("--list", action="store_true", help="list the recipes and presets this install ships")
    mode.add_argument("--table", action="store_true", help="print the recipe table of docs/recipes.md (Markdown)")
    parser.add_argument("--resolve", action="store_true", help="resolve ${...} interpolations when printing YAML")


def verl_config_dir() -> str:
    """The directory ``verl.trainer.main_ppo`` composes from (its ``config_path="config"``)."""
    import verl.trainer

    return os.path.join(os.path.dirname(os.path.abspath(verl.trainer.__file__)), "config")


def compose(recipe: str | None, overrides: list[str] | tuple[str, ...] = ()) -> Any:
    """Compose ``ppo_trainer`` + ``+recipe=RECIPE`` + overrides exactly as ``main_ppo`` would (no run)."""
    import verl  # noqa: F401  (loads the verl.plugins entry points: search path, agent loop, guard)
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    all_overrides = ([f"+recipe={recipe}"] if recipe else []) + list(overrides)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=verl_config_dir(), version_base=None):
            return hydra_compose(config_name="ppo_trainer", overrides=all_overrides)
    finally:
        GlobalHydra.instance().clear()


def available() -> dict[str, list[str]]:
    """Names of the shipped recipes and presets, per group, from the search path the plugin adds."""
    from hydra_plugins.r3_plugin.r3_searchpath import search_paths

    found: dict[str, list[str]] = {group: [] for group in GROUPS}
    for url in search_paths():
        if not url.startswith("file://"):
            continue
        for group in GROUPS:
            folder = os.path.join(url[len("file://") :], group)
            if os.path.isdir(folder):
                found[group] += sorted(f[: -len(".yaml")] for f in os.listdir(folder) if f.endswith(".yaml"))
    return found


def validate(config: Any) -> list[str]:
    """Run the guard, verl's own validation and the batch arithmetic; return warnings, raise on errors."""
    import contextlib
    import io

    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.utils.config import validate_config

    from r3_plugin.integration.guard import check_config
    from r3_plugin.tools.sizing import batch_plan

    warnings = check_config(config)
    original = getattr(validate_config, "_r3_original", validate_config)
    with contextlib.redirect_stdout(io.StringIO()):  # verl prints progress lines
        original(config=config, use_reference_policy=need_reference_policy(config), use_critic=need_critic(config))
    batch_plan(config)
    return warnings


#: The data keys verl opens; ``--check`` makes sure they exist.
DATA_KEYS = ("data.train_files", "data.val_files")


def missing_data_files(config: Any) -> list[str]:
    """One line per data file the config names that does not exist (remote URLs are not checked).

    verl would find out only after Ray, the workers and the model have started.
    """
    from omegaconf import OmegaConf

    problems = []
    for key in DATA_KEYS:
        value = OmegaConf.select(config, key)
        paths = [value] if isinstance(value, str) else list(value or [])
        for path in paths:
            if isinstance(path, str) and "://" not in path and not os.path.exists(os.path.expanduser(path)):
                problems.append(
                    f"{key}: {path} does not exist; build it with `r3 data ...` (`r3 mine` for a failures "
                    f"parquet) or point {key}=PATH at your file"
                )
    return problems


def summary(config: Any) -> str:
    """A short human-readable account of what this config trains and how it fits on the GPUs."""
    from omegaconf import OmegaConf

    from r3_plugin.tools.sizing import SizingError, batch_plan, memory_estimate

    arr = config.actor_rollout_ref
    optim = arr.actor.optim
    lines = [
        f"model:      {arr.model.path}",
        f"data:       train={config.data.train_files}  val={config.data.val_files}",
        f"algorithm:  {config.algorithm.adv_estimator}, group size n={arr.rollout.n}, "
        f"lr={optim.lr} ({optim.lr_scheduler_type}, warmup {optim.lr_warmup_steps_ratio}),"
        f" kl_loss={arr.actor.use_kl_loss} coef={arr.actor.kl_loss_coef} ({arr.actor.kl_loss_type})",
        f"sampling:   train temperature={arr.rollout.temperature}; validation temperature="
        f"{arr.rollout.val_kwargs.temperature} n={arr.rollout.val_kwargs.n}",
        f"trainer:    mode={config.trainer.v1.trainer_mode}, steps={config.trainer.total_training_steps}, "
        f"save every {config.trainer.save_freq} -> {config.trainer.default_local_dir}",
        "r3:         " + OmegaConf.to_yaml(config.get("r3") or {}).strip().replace("\n", "\n            "),
    ]
    try:
        plan = batch_plan(config)
        lines.append(
            f"batch:      {plan.prompts_per_step} prompts x n = {plan.trajectories_per_step} trajectories/step on "
            f"{plan.n_gpus} GPU(s); {plan.mini_batches_per_step} mini-batch(es) of {plan.trajectories_per_mini_batch}"
            f" = {plan.trajectories_per_gpu_per_mini_batch}/GPU in {plan.grad_accumulation_steps} micro-batches of "
            f"{plan.micro_batch_per_gpu}; rollout TP={plan.rollout_tp} ({plan.rollout_replicas} vLLM replicas)"
        )
    except SizingError as exc:
        lines.append(f"batch:      INVALID: {exc}")
    try:
        mem = memory_estimate(config)
        lines.append(
            f"memory/GPU: ~{mem.peak:.0f} GiB peak of 80 (training phase {mem.training_phase:.0f}: actor "
            f"{mem.actor} + ref {mem.ref} + activations {mem.activations}; rollout phase {mem.rollout_phase:.0f}); "
            f"host RAM for offload ~{mem.host_offload:.0f} GiB/GPU"
        )
    except (SizingError, KeyError, TypeError) as exc:
        lines.append(f"memory/GPU: unknown ({exc})")
    return "\n".join(lines)


#: The paper's models per task (PAPER.md) plus Llama-3.2-3B and Phi-3.5-mini on both.
TABLE_ROWS: tuple[tuple[str, str], ...] = (
    ("r3_countdown", "qwen2.5-1.5b"),
    ("r3_countdown", "qwen2.5-3b"),
    ("r3_countdown", "qwen2.5-7b"),
    ("r3_countdown", "llama3.1-8b"),
    ("r3_countdown", "llama3.2-3b"),
    ("r3_countdown", "phi3.5-mini"),
    ("r3_function_calling", "qwen2-1.5b"),
    ("r3_function_calling", "qwen2-7b"),
    ("r3_function_calling", "llama3.1-8b"),
    ("r3_function_calling", "llama3.2-3b"),
    ("r3_function_calling", "phi3.5-mini"),
)
#: Models small enough for the 1-GPU preset (the estimate fits 80 GB; see the table).
ONE_GPU_MODELS = ("qwen2-1.5b", "qwen2.5-1.5b", "qwen2.5-3b", "llama3.2-3b", "phi3.5-mini")
#: Paper accuracy % (vanilla 1st / vanilla 2nd / trained 1st / trained 2nd), PAPER.md; "-" = not reported.
PAPER_RESULTS: dict[tuple[str, str], str] = {
    ("r3_countdown", "qwen2.5-1.5b"): "6.0 / 10.2 / 34.9 / 45.0",
    ("r3_countdown", "qwen2.5-7b"): "31.7 / - / 41.6 / -",
    ("r3_countdown", "llama3.1-8b"): "2.2 / - / 8.8 / -",
    ("r3_countdown", "phi3.5-mini"): "trained; reported as failing to learn",
    ("r3_function_calling", "qwen2-1.5b"): "32.6 / - / 48.6 / 52.9",
    ("r3_function_calling", "qwen2-7b"): "66.4 / - / 72.2 / 77.3",
    ("r3_function_calling", "llama3.1-8b"): "64.9 / - / 68.7 / -",
    ("r3_function_calling", "llama3.2-3b"): "trained; reported as failing to learn",
}


def markdown_table(composer: Any = None) -> str:
    """The per-recipe table of docs/recipes.md, computed from the composed configs (tests keep them equal).

    ``composer(recipe, overrides)`` defaults to ``compose``; tests pass a cached one.
    """
    composer = composer or compose
    from r3_plugin.tools.sizing import memory_estimate

    head = [
        "| command (after `python -m verl.trainer.main_ppo`) | GPUs | est. GiB/GPU peak (train / rollout) "
        "| paper: vanilla 1st / 2nd / trained 1st / 2nd (%) |",
        "|---|---|---|---|",
    ]
    rows = []
    for recipe, model in TABLE_ROWS:
        variants = [("", [])] + ([(" +r3_scale=1gpu", ["+r3_scale=1gpu"])] if model in ONE_GPU_MODELS else [])
        for suffix, extra in variants:
            config = composer(recipe, [f"+r3_model={model}", *extra])
            mem = memory_estimate(config)
            gpus = int(config.trainer.n_gpus_per_node) * int(config.trainer.nnodes)
            rows.append(
                f"| `+recipe={recipe} +r3_model={model}{suffix}` | {gpus} x 80 GB | {mem.peak:.0f} "
                f"({mem.training_phase:.0f} / {mem.rollout_phase:.0f}) | {PAPER_RESULTS.get((recipe, model), 'n/a')} |"
            )
    return "\n".join(head + rows)


def run(args: argparse.Namespace) -> int:
    if args.table:
        print(markdown_table())
        return 0
    if args.list:
        for group, names in available().items():
            flag = "+recipe" if group == "recipe" else f"+{group}"
            print(f"{flag}=: {', '.join(names) or '(none found)'}")
        return 0
    try:
        config = compose(args.recipe, args.overrides)
    except Exception as exc:  # Hydra's errors name the missing group/key; keep them, drop the traceback
        print(f"r3 config: could not compose recipe {args.recipe!r}: {exc}", file=sys.stderr)
        print("known names: r3 config --list", file=sys.stderr)
        return 2
    if args.check:
        problems = []
        try:
            warnings = validate(config)
        except Exception as exc:
            problems.append(str(exc))
        problems += missing_data_files(config)
        if problems:
            print("r3 config --check: FAILED\n" + "\n".join(problems), file=sys.stderr)
            return 1
        for message in warnings:
            print(f"warning: {message}", file=sys.stderr)
        print(summary(config))
        print("OK: r3-plugin guard, verl validate_config and batch arithmetic all pass")
        return 0
    if args.summary:
        print(summary(config))
        return 0
    from omegaconf import OmegaConf

    print(OmegaConf.to_yaml(config, resolve=args.resolve), end="")
    return 0
