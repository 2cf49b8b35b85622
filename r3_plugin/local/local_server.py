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
"""In-process stand-ins for verl's ``LLMServerClient`` (tests, the CPU demo, benchmarks).

They have ``LLMServerClient.generate``'s signature and return what verl's real servers return:
generated token ids ending in the end-of-turn token, per-token log-probs, ``stop_reason``,
``num_preempted`` and the weight-version ``extra_fields`` (``global_steps``,
``min_global_steps``, ``max_global_steps``) that verl's v1 trainer reads. A loop tested against a
server that omits those fields could not catch the crash they cause when dropped.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Any

from verl.workers.rollout.replica import TokenOutput


def _server_fields(global_steps: int) -> dict[str, Any]:
    return {
        "global_steps": global_steps,
        "min_global_steps": global_steps,
        "max_global_steps": global_steps,
        "num_cached_tokens": 0,
    }


class _ServerBase:
    """Bookkeeping shared by the stand-ins: request log and weight version."""

    def __init__(self, global_steps: int = 0) -> None:
        self.global_steps = global_steps
        self.calls: list[dict[str, Any]] = []

    def _log(self, request_id: str, prompt_ids: list[int], sampling_params: dict[str, Any]) -> None:
        self.calls.append(
            {"request_id": request_id, "prompt_len": len(prompt_ids), "sampling_params": dict(sampling_params)}
        )


class HFTokenServer(_ServerBase):
    """Samples from a Hugging Face causal LM on CPU (or any torch device)."""

    def __init__(self, model_path: str, *, device: str = "cpu", global_steps: int = 0, seed: int = 0) -> None:
        super().__init__(global_steps)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(model_path)
        self.model = AutoModelForCausalLM.from_pretrained(model_path).to(device).eval()
        self.device = device
        self.generator = torch.Generator(device="cpu").manual_seed(seed)
        self.eos_token_id = self.tokenizer.eos_token_id
        self._lock = asyncio.Lock()

    def _sample(self, prompt_ids: list[int], params: dict[str, Any]) -> tuple[list[int], list[float]]:
        torch = self.torch
        max_tokens = int(params.get("max_tokens") or 64)
        temperature = float(params.get("temperature", 1.0) or 0.0)
        top_k = int(params.get("top_k", -1) or -1)
        top_p = float(params.get("top_p", 1.0) or 1.0)
        ids = torch.tensor([prompt_ids], device=self.device)
        out_ids: list[int] = []
        out_lp: list[float] = []
        past = None
        with torch.no_grad():
            for _ in range(max_tokens):
                res = self.model(input_ids=ids if past is None else ids[:, -1:], past_key_values=past, use_cache=True)
                past = res.past_key_values
                logits = res.logits[0, -1].float()
                logprobs = torch.log_softmax(logits, dim=-1)
                if temperature <= 0:
                    token = int(torch.argmax(logits))
                else:
                    scaled = logits / temperature
                    if top_k > 0:
                        kth = torch.topk(scaled, min(top_k, scaled.numel())).values[-1]
                        scaled = scaled.masked_fill(scaled < kth, float("-inf"))
                    probs = torch.softmax(scaled, dim=-1)
                    if top_p < 1.0:
                        sorted_p, order = torch.sort(probs, descending=True)
                        keep = torch.cumsum(sorted_p, 0) - sorted_p < top_p
                        probs = torch.zeros_like(probs).scatter(0, order[keep], sorted_p[keep])
                        probs = probs / probs.sum()
                    token = int(torch.multinomial(probs.cpu(), 1, generator=self.generator))
                out_ids.append(token)
                out_lp.append(float(logprobs[token]))
                if token == self.eos_token_id:
                    break
                ids = torch.cat([ids, torch.tensor([[token]], device=self.device)], dim=1)
        return out_ids, out_lp

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> TokenOutput:
        self._log(request_id, prompt_ids, sampling_params)
        async with self._lock:  # one CPU model: serialise, but off the event loop
            token_ids, log_probs = await asyncio.get_running_loop().run_in_executor(
                None, self._sample, list(prompt_ids), sampling_params
            )
        return TokenOutput(
            token_ids=token_ids,
            log_probs=log_probs if sampling_params.get("logprobs", True) else None,
            stop_reason="completed",
            num_preempted=0,
            extra_fields=_server_fields(self.global_steps),
        )


Script = Callable[[str, str], str]


class ScriptedTokenServer(_ServerBase):
    """Answers with scripted text (tokenised, plus the end-of-turn token), to drive exact branches.

    ``script(prompt_text, request_id) -> reply_text`` sees the decoded prompt, so a script can answer
    by turn (count the assistant turns so far) and by session (the request id is one per episode).
    A reply equal to :attr:`ABORT` makes the server return an aborted request.
    """

    ABORT = "<<abort>>"

    def __init__(self, tokenizer: Any, script: Script, *, global_steps: int = 0, logprob: float = -0.5) -> None:
        super().__init__(global_steps)
        self.tokenizer = tokenizer
        self.script = script
        self.logprob = logprob
        self.eos_token_id = tokenizer.eos_token_id

    async def generate(
        self, request_id: str, *, prompt_ids: list[int], sampling_params: dict[str, Any], **kwargs: Any
    ) -> TokenOutput:
        self._log(request_id, prompt_ids, sampling_params)
        prompt_text = self.tokenizer.decode(prompt_ids, skip_special_tokens=False)
        reply = self.script(prompt_text, request_id)
        fields = _server_fields(self.global_steps)
        if reply == self.ABORT:
            return TokenOutput(token_ids=[], log_probs=[], stop_reason="aborted", num_preempted=1, extra_fields=fields)
        token_ids = list(self.tokenizer.encode(reply, add_special_tokens=False)) + [self.eos_token_id]
        max_tokens = sampling_params.get("max_tokens")
        if max_tokens is not None:
            token_ids = token_ids[: int(max_tokens)]
        return TokenOutput(
            token_ids=token_ids,
            log_probs=[self.logprob] * len(token_ids),
            stop_reason="completed",
            num_preempted=0,
            extra_fields=fields,
        )


def turn_script(*replies: str) -> Script:
    """A script answering the k-th assistant turn of any conversation with ``replies[k]``."""

    def script(prompt_text: str, request_id: str = "") -> str:
        return replies[min(_assistant_turn(prompt_text), len(replies) - 1)]

    return script


def session_script(*sessions: Sequence[str]) -> Script:
    """Session k (in order of first request) answers its assistant turns with ``sessions[k]``."""
    order: dict[str, int] = {}

    def script(prompt_text: str, request_id: str = "") -> str:
        index = order.setdefault(request_id, len(order)) % len(sessions)
        replies = sessions[index]
        return replies[min(_assistant_turn(prompt_text), len(replies) - 1)]

    return script


def _assistant_turn(prompt_text: str) -> int:
    """0 for the first assistant turn: the prompt ends with one open assistant header per turn."""
    return prompt_text.count("<|im_start|>assistant") - 1
