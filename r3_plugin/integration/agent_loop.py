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
"""The ``r3_agent`` verl agent loop: fail, reflect, retry inside verl's agent-loop worker.

Tokens go through verl's continuous-token builder only (``ct_build_initial_tokens``,
``ct_merge_assistant_token``, ``ct_merge_context_msg``, ``render_delta_token_id``), so the trajectory
is exactly the chat template of the whole conversation and generated text is never re-encoded. The
episode logic itself is :func:`r3_plugin.policy.episode.run_episode`, shared with the miner and the evaluator.

The prompt is the task and nothing else. Everything after it is the response: the first attempt
(sampled, or stored in offline mode), the inserted user messages, the reflection and the retry.
Credit: ``reflection`` (the paper) gives response-mask 1 to reflection tokens only;
``reflection_and_retry`` also to the retry answer. Everything else has mask 0, so verl's GRPO puts no
gradient there.

Training sessions with nothing to teach the reflection are dropped (``run`` returns ``[]``): the
first attempt passed, the server aborted, the episode ran out of token budget before its retry was
verified, or nothing was credited. The reason goes to R3's worker through
:data:`r3_plugin.integration.session.drop_reason`; R3's replay buffer applies the GRPO group rule to what is
left and counts every dropped session in the step's ``r3/*`` metrics. Validation never drops: it
samples the first attempt in every mode and reports first-try and second-try accuracy.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any
from uuid import uuid4

from verl.experimental.agent_loop.agent_loop import AgentLoopBase, AgentLoopOutput, register
from verl.utils.profiler import simple_timer

from r3_plugin.integration import session
from r3_plugin.policy.config import AGENT_NAME, CREDITS, MODES, R3Config
from r3_plugin.policy.episode import (
    EndReason,
    Episode,
    EpisodeConfig,
    Finish,
    Generation,
    TurnKind,
    cut_by,
    run_episode,
)
from r3_plugin.policy.episode_info import episode_record
from r3_plugin.policy.tasks import get_task, to_plain

logger = logging.getLogger(__name__)
logger.setLevel(os.getenv("VERL_LOGGING_LEVEL", "WARN"))

__all__ = ["AGENT_NAME", "CREDITS", "FAILED_ATTEMPT_KEY", "MODES", "EpisodeConfig", "R3AgentLoop", "R3Config"]

FAILED_ATTEMPT_KEY = "r3_failed_attempt"


class VerlConversation:
    """An R3 conversation held as verl runtime tokens with a per-token training mask.

    The messages it is built with are the prompt (the task). Every later message is part of the
    response: user messages and stored assistant turns are merged as context (mask 0), generated
    assistant turns get mask 1 only if their kind is credited.
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

    async def _start(self) -> None:
        if self.prompt_len is None:
            self.token_ids = await self.loop.ct_build_initial_tokens(self.messages, tools=self.tools)
            self.prompt_len = len(self.token_ids)

    async def add_assistant(self, text: str) -> None:
        """A stored assistant turn (offline mode's failed attempt): response tokens with mask 0."""
        await self._start()
        message = {"role": "assistant", "content": text}
        if self.messages[-1]["role"] == "assistant":
            await self._open_assistant_turn()
        ids = self._assistant_turn_ids(message)
        logprobs = [0.0] * len(ids) if self.response_logprobs is not None else None
        merge, mask, aligned = await self.loop.ct_merge_assistant_token(
            self.token_ids, ids, self.response_mask, self.response_logprobs, assistant_logprobs=logprobs
        )
        n_new = merge.appended_token_count
        self.token_ids, self.response_mask = merge.token_ids, (mask[:-n_new] + [0] * n_new) if n_new else mask
        if self.response_logprobs is not None:
            self.response_logprobs = aligned or []
        self.messages.append(message)
        self.turns += 1

    def _assistant_turn_ids(self, message: dict[str, Any]) -> list[int]:
        """The chat template's tokens for ``message`` after the generation prompt, up to its end-of-turn token.

        Rendered by verl's builder (the prompt with and without the turn), so the stored turn reads
        exactly as if the model had generated it; the separator after it comes with the next merge.
        """
        builder = self.loop.continuous_token_builder
        header = builder.render_delta_token_id(self.messages, [], add_generation_prompt=True, tools=self.tools)
        turn = builder.render_delta_token_id(self.messages, [message], add_generation_prompt=False, tools=self.tools)
        if turn[: len(header)] != header:
            raise ValueError(
                "the chat template renders an assistant turn that does not start with its generation prompt"
            )
        body = turn[len(header) :]
        if self.eos_token_id is not None and self.eos_token_id in body:
            body = body[: len(body) - body[::-1].index(self.eos_token_id)]
        return body

    async def add_user(self, text: str) -> None:
        await self._start()
        previous = list(self.messages)
        self.messages.append({"role": "user", "content": text})
        self.turns += 1
        merge, mask, logprobs = await self.loop.ct_merge_context_msg(
            previous, self.messages, self.token_ids, self.response_mask, self.response_logprobs, tools=self.tools
        )
        self.token_ids, self.response_mask = merge.token_ids, mask
        if self.response_logprobs is not None:
            self.response_logprobs = logprobs or []

    async def generate(self, kind: TurnKind, max_tokens: int | None) -> Generation:
        if self.prompt_len is None:
            await self._start()
        elif self.messages[-1]["role"] == "assistant":
            await self._open_assistant_turn()  # an empty retry prompt: two assistant turns in a row
        budget = self.budget_left()
        limit = budget if max_tokens is None else min(max_tokens, budget)
        if limit < 1:
            return Generation(text="", num_tokens=0, finish=Finish.BUDGET)
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
            finish = cut_by(max_tokens, limit)
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
        if finish in (Finish.LENGTH, Finish.BUDGET) and self.eos_token_id is not None and self.budget_left() > 0:
            self.token_ids.append(self.eos_token_id)
            self.response_mask.append(0)
            if self.response_logprobs is not None:
                self.response_logprobs.append(0.0)

        text = self.loop.tokenizer.decode(token_ids, skip_special_tokens=True)
        self.messages.append({"role": "assistant", "content": text})
        self.turns += 1
        return Generation(text=text, num_tokens=len(token_ids), finish=finish)

    async def _open_assistant_turn(self) -> None:
        """Append what the chat template puts between two assistant turns (mask 0).

        An empty retry prompt puts the retry right after the reflection. verl's context merge only
        appends messages, so the tokens come from the template itself: the rendering of the last
        turn followed by a generation prompt, from that turn's end-of-turn token on.
        """
        builder = self.loop.continuous_token_builder
        last = self.messages[-1]
        tail = builder.render_delta_token_id(self.messages[:-1], [last], add_generation_prompt=True, tools=self.tools)
        if self.eos_token_id is None or self.eos_token_id not in tail:
            raise ValueError("cannot find the end of the previous assistant turn in the chat template's rendering")
        cut = len(tail) - tail[::-1].index(self.eos_token_id)
        if not self.token_ids or self.token_ids[-1] != self.eos_token_id:
            cut -= 1  # the turn's own end-of-turn token is missing too (it was cut): add it
        between = tail[cut:]
        self.token_ids = self.token_ids + between
        self.response_mask = self.response_mask + [0] * len(between)
        if self.response_logprobs is not None:
            self.response_logprobs = self.response_logprobs + [0.0] * len(between)

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


_warned_inferred_validation = False


@register(AGENT_NAME)
class R3AgentLoop(AgentLoopBase):
    """Reflect, Retry, Reward: reward 1 when the retry after a self-reflection passes the verifier."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.pop("tools", None)  # verl's tool list; R3 tasks carry their tools per row
        super().__init__(*args, **kwargs)
        self.r3 = R3Config.from_mapping(self.config.get("r3", None))
        self.response_length = int(self.rollout_config.response_length)

    def is_validation(self, sampling_params: Mapping[str, Any]) -> bool:
        """Whether this session validates: R3's worker says so (:data:`session.validating`).

        Under a worker that does not (verl's own, wired without R3's manager), fall back to the
        sampling parameters, which the guard keeps different for validation and training.
        """
        flag = session.validating.get()
        if flag is not None:
            return flag
        global _warned_inferred_validation
        if not _warned_inferred_validation:
            _warned_inferred_validation = True
            logger.warning(
                "r3_agent runs under an agent-loop worker that does not pass the validate flag; telling "
                "validation from training by sampling parameters. Set "
                "actor_rollout_ref.rollout.agent.agent_loop_manager_class="
                "r3_plugin.integration.verl_worker.R3AgentLoopManager"
            )
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
        if self.r3.mode == "offline" and not validate:  # validation measures the model's own first try
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
                session.drop_reason.set(reason)
                return []
        return self._build_output(conv, episode, validate=validate, trained_tokens=trained_tokens)

    @staticmethod
    def _drop_reason(episode: Episode, trained_tokens: int) -> str | None:
        """Why a training episode says nothing about its reflection (None: train on it)."""
        if episode.end_reason == EndReason.FIRST_TRY_SUCCESS:
            return "first_try_success"
        if episode.end_reason == EndReason.ABORTED:
            return "aborted"
        if episode.end_reason == EndReason.OUT_OF_BUDGET:
            return "out_of_budget"  # the retry was never verified, or the budget (not the model) cut it
        if trained_tokens == 0:
            return "no_credited_tokens"
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
