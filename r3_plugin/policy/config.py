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
"""The ``r3:`` config block, defined once: every key, its type, its default and its allowed values.

Everything that reads the block derives from :class:`R3Config`: the agent loop builds its settings
with :meth:`R3Config.from_mapping`, the episode's knobs are :attr:`R3Config.episode`, and the config
guard takes its key list, types and allowed values from :func:`block_keys` and :func:`choices`.
The name verl registers R3's agent loop under (``default_agent_loop``, a row's ``agent_name``)
lives here too.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from r3_plugin.policy.episode import EpisodeConfig, TurnKind

#: The agent-loop name: ``actor_rollout_ref.rollout.agent.default_agent_loop`` and each row's ``agent_name``.
AGENT_NAME = "r3_agent"
MODES = ("online", "offline")
CREDITS = ("reflection", "reflection_and_retry")


def _key(default: Any, *types: type, choices: tuple[str, ...] = ()) -> Any:
    """A key of the block: ``types`` are what YAML may hold there (``type(None)`` for null)."""
    return field(default=default, metadata={"types": types, "choices": choices})


@dataclass(frozen=True)
class R3Config:
    """The recipe's ``r3:`` block."""

    #: online: sample the first attempt; offline: reflect on a stored failed one (``r3 mine``).
    mode: str = _key("online", str, choices=MODES)
    #: Which generated turns get response-mask 1.
    credit: str = _key("reflection", str, choices=CREDITS)
    max_reflections: int = _key(EpisodeConfig.max_reflections, int)
    #: Token limits per turn (null in the loop: the remaining response length).
    attempt_max_tokens: int | None = _key(None, int)
    reflection_max_tokens: int | None = _key(None, int)
    retry_max_tokens: int | None = _key(None, int)
    #: Prompt overrides (null: the task's registered prompt).
    reflection_prompt: str | None = _key(None, str, type(None))
    retry_prompt: str | None = _key(None, str, type(None))
    #: GRPO group rule of R3's replay buffer (trainer.v1.sampler.sampler_kwargs).
    min_group_size: int = _key(2, int)
    max_refill_prompts: int | None = _key(None, int, type(None))

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"r3.mode must be one of {MODES}, got {self.mode!r}")
        if self.credit not in CREDITS:
            raise ValueError(f"r3.credit must be one of {CREDITS}, got {self.credit!r}")
        self.episode  # noqa: B018 - validates the episode knobs now, not at the first episode

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> R3Config:
        """Build from the block, ignoring unrelated keys; a null value means the key's default."""
        cfg = dict(cfg or {})
        values = {f.name: cfg[f.name] for f in fields(cls) if cfg.get(f.name) is not None}
        for name in ("mode", "credit"):
            if name in values:
                values[name] = str(values[name])
        return cls(**values)

    @property
    def episode(self) -> EpisodeConfig:
        """The episode's knobs: the block's keys that are :class:`EpisodeConfig` fields."""
        return EpisodeConfig(**{name: getattr(self, name) for name in EPISODE_KEYS})

    @property
    def credited_kinds(self) -> frozenset[TurnKind]:
        if self.credit == "reflection_and_retry":
            return frozenset({TurnKind.REFLECTION, TurnKind.RETRY})
        return frozenset({TurnKind.REFLECTION})


def block_keys() -> dict[str, tuple[type, ...]]:
    """Every key of the ``r3:`` block, in order, with the types its value may have."""
    return {f.name: f.metadata["types"] for f in fields(R3Config)}


def choices(key: str) -> tuple[str, ...]:
    """The allowed values of a key (empty: any value of its type)."""
    return next(f.metadata["choices"] for f in fields(R3Config) if f.name == key)


#: The block's keys the episode reads (the rest configure the loop and the replay buffer).
EPISODE_KEYS = tuple(f.name for f in fields(R3Config) if f.name in EpisodeConfig.__dataclass_fields__)
