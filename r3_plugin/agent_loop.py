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
"""The ``r3_agent`` verl agent loop: fail, reflect, retry inside verl's AgentLoopWorker.

Tokens go through verl's continuous-token builder only (``ct_build_initial_tokens``,
``ct_merge_assistant_token``, ``ct_merge_context_msg``), so the trajectory is exactly the chat
template of the whole conversation and decoded text is never re-encoded. The episode logic itself
is :func:`r3_plugin.episode.run_episode`, shared with the miner and the evaluator.

Credit: ``reflection`` (the paper) gives response-mask 1 to reflection tokens only;
``reflection_and_retry`` also to the retry answer. Everything else (first attempt, inserted user
messages, boundary tokens) has mask 0, so verl's GRPO puts no gradient there.

Sessions with nothing to learn (training, online mode, first attempt passed; aborted episodes) are
dropped by returning ``[]`` (verl's v1 trainer supports this): they neither enter the GRPO group
baseline nor form all-zero-mask mini-batches. Their count travels to the trainer's step metrics in
the next trajectory this worker emits (``extra_fields["r3_dropped"]``).
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
from verl.utils.profiler import simple_timer

from r3_plugin.episode import EndReason, Episode, EpisodeConfig, Finish, Generation, TurnKind, run_episode
from r3_plugin.episode_info import episode_record
from r3_plugin.tasks import get_task, to_plain

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "WARN"))

AGENT_NAME = "r3_agent"
MODES = ("online", "offline")
CREDITS = ("reflection", "reflection_and_retry")
FAILED_ATTEMPT_KEY = "r3_failed_attempt"

# Sessions dropped in this worker process since the last emitted training trajectory.
_dropped_since_emit: Counter[str] = Counter()


@dataclass(frozen=True)
class R3Config:
    """The recipe's ``r3:`` block."""

    mode: str = "online"
    credit: str = "reflection"
    drop_first_try_success: bool = True
    episode: EpisodeConfig = EpisodeConfig(attempt_max_tokens=None)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"r3.mode must be one of {MODES}, got {self.mode!r}")
        if self.credit not in CREDITS:
            raise ValueError(f"r3.credit must be one of {CREDITS}, got {self.credit!r}")

    @classmethod
    def from_mapping(cls, cfg: Mapping[str, Any] | None) -> R3Config:
        cfg = dict(cfg or {})
        return cls(
            mode=str(cfg.get("mode", "online")),
            credit=str(cfg.get("credit", "reflection")),
            drop_first_try_success=bool(cfg.get("drop_first_try_success", True)),
            episode=EpisodeConfig.from_mapping(cfg),
        )

    @property
    def credited_kinds(self) -> frozenset[TurnKind]:
        if self.credit == "reflection_and_retry":
            return frozenset({TurnKind.REFLECTION, TurnKind.RETRY})
        return frozenset({TurnKind.REFLECTION})


class VerlConversation:
    """An R3 conversation held as verl runtime tokens with a per-token training mask.

    Messages added before the first generation become the prompt; later ones are merged as
    context (mask 0). Assistant turns get mask 1 only if their kind is credited.
    """

    def __init__(
        self,
        loop: AgentLoopBase,
        messages: list[dict[str, Any]],
        *,
        request_id: str,
        sampling_params: dict[str, Any],
        response_length: int,
        credited: frozenset[TurnKind],
        tools: list[dict[str, Any]] | None = None,
    ) -> None:
        self.loop = loop
        self.messages = list(messages)
        self.tools = tools
        self.request_id = request_id
        self.sampling_params = sampling_params
        self.response_length = response_length
        self.credited = credited
        self.token_ids: list[int] = []
        self.prompt_len: int | None = None
        self.response_mask: list[int] = []
        self.response_logprobs: list[float] | None = None
        self.extra_fields: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.turns = 0
        eos = loop.tokenizer.eos_token_id
        self.eos_token_id: int | None = int(eos) if eos is not None else None

    # -- Conversation protocol -------------------------------------------------------------
    def budget_left(self) -> int | None:
        return self.response_length - len(self.response_mask)

    async def add_assistant(self, text: str) -> None:
        if self.prompt_len is not None:
            raise RuntimeError("a stored assistant turn can only precede the first generation")
        self.messages.append({"role": "assistant", "content": text})

    async def add_user(self, text: str) -> None:
        previous = list(self.messages)
        self.messages.append({"role": "user", "content": text})
        self.turns += 1
        if self.prompt_len is None:
            return  # still building the prompt
        merge, mask, logprobs = await self.loop.ct_merge_context_msg(
            previous, self.messages, self.token_ids, self.response_mask, self.response_logprobs, tools=self.tools
        )
        self.token_ids, self.response_mask = merge.token_ids, mask
        if self.response_logprobs is not None:
            self.response_logprobs = logprobs or []

    async def generate(self, kind: TurnKind, max_tokens: int | None) -> Generation:
        if self.prompt_len is None:
            self.token_ids = await self.loop.ct_build_initial_tokens(self.messages, tools=self.tools)
            self.prompt_len = len(self.token_ids)
        elif self.messages[-1]["role"] == "assistant":
            await self._open_assistant_turn()  # an empty retry prompt: two assistant turns in a row
        budget = self.budget_left()
        limit = budget if max_tokens is None else min(max_tokens, budget)
        if limit < 1:
            return Generation(text="", num_tokens=0, finish=Finish.LENGTH)
        params = {**self.sampling_params, "max_tokens": limit}
        with simple_timer("generate_sequences", self.metrics):
            output = await self.loop.server_manager.generate(
                request_id=self.request_id, prompt_ids=self.token_ids, sampling_params=params
            )
        self._record_server_fields(output)
        token_ids = list(output.token_ids)
        logprobs = list(output.log_probs) if output.log_probs else None
        if str(output.stop_reason) in ("aborted", "abort"):
            finish = Finish.ABORTED
        elif self.eos_token_id is not None and token_ids and token_ids[-1] == self.eos_token_id:
            finish = Finish.STOP
        elif len(token_ids) >= limit:
            finish = Finish.LENGTH
        else:
            finish = Finish.STOP  # stopped on a stop string / other stop token

        if logprobs is not None and self.response_logprobs is None:
            self.response_logprobs = [0.0] * len(self.response_mask)
        merge, mask, aligned_logprobs = await self.loop.ct_merge_assistant_token(
            self.token_ids,
            token_ids,
            self.response_mask,
            self.response_logprobs,
            assistant_logprobs=logprobs if self.response_logprobs is not None else None,
        )
        credit = 1 if kind in self.credited else 0
        n_new = merge.appended_token_count
        if n_new and credit == 0:
            mask = mask[:-n_new] + [0] * n_new
        self.token_ids, self.response_mask = merge.token_ids, mask
        if self.response_logprobs is not None:
            self.response_logprobs = aligned_logprobs or []

        # A turn cut off without its end-of-turn token would glue the next message onto it;
        # close it the way the chat template does (an inserted, untrained token).
        if finish == Finish.LENGTH and self.eos_token_id is not None and self.budget_left() > 0:
            self.token_ids.append(self.eos_token_id)
            self.response_mask.append(0)
            if self.response_logprobs is not None:
                self.response_logprobs.append(0.0)

        text = self.loop.tokenizer.decode(token_ids, skip_special_tokens=True)
        self.messages.append({"role": "assistant", "content": text})
        self.turns += 1
        return Generation(text=text, num_tokens=len(token_ids), finish=finish)

    async def _open_assistant_turn(self) -> None:
        """Append the chat template's generation prompt after an assistant turn (mask 0).

        verl's context merge only appends messages, so the header comes from the builder's
        suffix diff, and its boundary hook (e.g. Qwen's newline after ``<|im_end|>``) joins it.
        """
        builder = self.loop.continuous_token_builder
        header = builder.render_delta_token_id(self.messages, [], add_generation_prompt=True, tools=self.tools)
        merge = builder._merge_context_token_ids(self.token_ids, header)
        mask, logprobs = builder.align_response_metadata(merge, self.response_mask, self.response_logprobs)
        self.token_ids, self.response_mask = merge.token_ids, mask
        if self.response_logprobs is not None:
            self.response_logprobs = logprobs or []

    def _record_server_fields(self, output: Any) -> None:
        """Carry the weight-version fields and preemption counts the way ToolAgentLoop does."""
        preempted = output.num_preempted
        if self.metrics.get("num_preempted") is None:
            self.metrics["num_preempted"] = preempted if preempted is not None else -1
        else:
            self.metrics["num_preempted"] += preempted if preempted is not None else 0
        fields = dict(output.extra_fields or {})
        if not self.extra_fields:
            self.extra_fields.update(fields)
        elif fields.get("max_global_steps") is not None:
            self.extra_fields["max_global_steps"] = fields["max_global_steps"]

    # -- results ---------------------------------------------------------------------------
    @property
    def response_ids(self) -> list[int]:
        return self.token_ids[self.prompt_len or 0 :]


@register(AGENT_NAME)
class R3AgentLoop(AgentLoopBase):
    """Reflect, Retry, Reward: reward 1 when the retry after a self-reflection passes the verifier."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("tools", None)  # verl's tool list; R3 tasks carry their tools per row
        super().__init__(*args, **kwargs)
        self.r3 = R3Config.from_mapping(self.config.get("r3", None))
        self.response_length = int(self.rollout_config.response_length)

    def is_validation(self, sampling_params: Mapping[str, Any]) -> bool:
        """verl does not tell an agent loop it validates; its sampling params give it away.

        The recipes keep validation greedy and training sampled, so the two always differ.
        """
        val = self.rollout_config.val_kwargs
        train = (self.rollout_config.temperature, self.rollout_config.top_p, self.rollout_config.top_k)
        current = (sampling_params.get("temperature"), sampling_params.get("top_p"), sampling_params.get("top_k"))
        return current == (val.temperature, val.top_p, val.top_k) and current != train

    async def run(self, sampling_params: dict[str, Any], **kwargs: Any) -> AgentLoopOutput | list[AgentLoopOutput]:
        validate = self.is_validation(sampling_params)
        data_source = str(kwargs.get("data_source"))
        task = get_task(data_source)
        extra_info = to_plain(kwargs.get("extra_info") or {})
        ground_truth = to_plain((kwargs.get("reward_model") or {}).get("ground_truth"))
        messages = to_plain(list(kwargs["raw_prompt"]))
        tools = None
        if extra_info.get("tools_in_chat_template") and extra_info.get("tools"):
            raw_tools = extra_info["tools"]
            tools = json.loads(raw_tools) if isinstance(raw_tools, str) else raw_tools

        failed_attempt = None
        if self.r3.mode == "offline":
            failed_attempt = extra_info.get(FAILED_ATTEMPT_KEY)
            if not failed_attempt:
                raise ValueError(
                    f"r3.mode=offline but the row (data_source={data_source!r}, index={extra_info.get('index')}) "
                    f"has no extra_info.{FAILED_ATTEMPT_KEY}; train on the failures parquet written by `r3 mine`"
                )

        conv = VerlConversation(
            self,
            messages,
            request_id=uuid4().hex,
            sampling_params=sampling_params,
            response_length=self.response_length,
            credited=self.r3.credited_kinds,
            tools=tools,
        )
        episode = await run_episode(
            task, ground_truth, conv, self.r3.episode, extra_info=extra_info, failed_attempt=failed_attempt
        )
        trained_tokens = sum(conv.response_mask)
        if not validate:
            reason = self._drop_reason(episode, trained_tokens)
            if reason is not None:
                _dropped_since_emit[reason] += 1
                return []
        return self._build_output(conv, episode, validate=validate, trained_tokens=trained_tokens)

    def _drop_reason(self, episode: Episode, trained_tokens: int) -> str | None:
        if episode.end_reason == EndReason.FIRST_TRY_SUCCESS and self.r3.drop_first_try_success:
            return "first_try_success"
        if episode.end_reason == EndReason.ABORTED:
            return "aborted"
        if episode.end_reason != EndReason.FIRST_TRY_SUCCESS and trained_tokens == 0:
            return "no_credited_tokens"  # e.g. the budget ran out before a reflection was sampled
        return None

    def _build_output(
        self, conv: VerlConversation, episode: Episode, *, validate: bool, trained_tokens: int
    ) -> AgentLoopOutput:
        if validate:
            reward = float(episode.passed)  # the paper's second-try accuracy
        else:
            reward = float(episode.retry_passed)
        n = self.response_length
        response_ids = conv.response_ids[:n]
        response_mask = conv.response_mask[:n]
        logprobs = conv.response_logprobs[:n] if conv.response_logprobs is not None else None
        prompt_ids = conv.token_ids[: conv.prompt_len or 0]
        extra_fields = dict(conv.extra_fields)
        extra_fields["reward_extra_info"] = episode_record(
            episode, reward=reward, episode_tokens=len(conv.response_ids), trained_tokens=trained_tokens
        )
        extra_fields.setdefault("turn_scores", [])
        extra_fields.setdefault("tool_rewards", [])
        if not validate:
            extra_fields["r3_dropped"] = dict(_dropped_since_emit)
            _dropped_since_emit.clear()
        metrics = dict(conv.metrics)
        metrics.setdefault("num_preempted", -1)
        return AgentLoopOutput(
            prompt_ids=prompt_ids,
            response_ids=response_ids,
            response_mask=response_mask,
            response_logprobs=logprobs,
            reward_score=reward,
            num_turns=len(conv.messages),
            metrics=metrics,
            extra_fields=extra_fields,
        )
