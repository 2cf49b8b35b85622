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
"""Hugging Face transformers backend: CPU and small GPUs, no extra dependency.

Concurrent requests are micro-batched into one left-padded ``model.generate`` call that runs in a
worker thread, so the event loop keeps collecting the next batch while the model works.
"""

from __future__ import annotations

import time
from typing import Any

from r3_plugin.policy.episode import Generation
from r3_plugin.tools.backends.base import BackendStats, MicroBatcher, SamplingConfig, cut_at_eos


def render_prompt_ids(tokenizer: Any, messages: list[dict], tools: list | None) -> list[int]:
    """Token ids of the chat so far plus the assistant header, through the model's chat template.

    Rendered to text first and then encoded without extra special tokens, so the ids are exactly
    the template's (no doubled BOS) on every transformers version.
    """
    kwargs: dict[str, Any] = {"add_generation_prompt": True, "tokenize": False}
    if tools:
        kwargs["tools"] = tools
    text = tokenizer.apply_chat_template(messages, **kwargs)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _as_id_set(value: Any) -> set[int]:
    if value is None:
        return set()
    if isinstance(value, int):
        return {value}
    return {int(v) for v in value}


class HFBackend:
    """``transformers`` causal LM behind the :class:`ChatBackend` protocol."""

    name = "hf"

    def __init__(
        self,
        model_path: str,
        sampling: SamplingConfig = SamplingConfig(),
        *,
        device: str | None = None,
        dtype: str = "auto",
        max_batch_size: int = 32,
        trust_remote_code: bool = False,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.sampling = sampling
        if device is None:
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.tokenizer = AutoTokenizer.from_pretrained(model_path, trust_remote_code=trust_remote_code)
        torch_dtype: Any = dtype if dtype == "auto" else getattr(torch, dtype)
        if device == "cpu" and dtype == "auto":
            torch_dtype = torch.float32  # bf16 matmuls on CPU are slow and not much smaller here
        self.model = AutoModelForCausalLM.from_pretrained(
            model_path, dtype=torch_dtype, trust_remote_code=trust_remote_code
        ).to(device)
        self.model.eval()
        self.eos_ids = _as_id_set(self.tokenizer.eos_token_id) | _as_id_set(
            getattr(self.model.generation_config, "eos_token_id", None)
        )
        if not self.eos_ids:
            raise ValueError(f"{model_path}: the tokenizer and generation config define no eos token")
        pad = self.tokenizer.pad_token_id
        self.pad_id = int(pad) if pad is not None else min(self.eos_ids)
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        self.stats = BackendStats()
        self._batcher: MicroBatcher = MicroBatcher(self._run_batch, max_batch_size)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def encode(self, messages: list[dict], tools: list | None = None) -> list[int]:
        return render_prompt_ids(self.tokenizer, messages, tools)

    async def generate(
        self, messages: list[dict], *, max_tokens: int | None, tools: list | None = None, seed: int | None = None
    ) -> Generation:
        ids = self.encode(messages, tools)
        cap = max_tokens if max_tokens is not None else self.sampling.max_tokens
        return await self._batcher.submit((ids, cap))

    def generate_ids_batch(self, requests: list[tuple[list[int], int]]) -> list[Generation]:
        """One synchronous batched generate over (prompt ids, max new tokens) pairs."""
        return self._run_batch(requests)

    def _run_batch(self, requests: list[tuple[list[int], int]]) -> list[Generation]:
        import torch

        start = time.perf_counter()
        width = max(len(ids) for ids, _ in requests)
        input_ids = torch.full((len(requests), width), self.pad_id, dtype=torch.long)
        attention = torch.zeros((len(requests), width), dtype=torch.long)
        for i, (ids, _) in enumerate(requests):
            input_ids[i, width - len(ids) :] = torch.tensor(ids, dtype=torch.long)
            attention[i, width - len(ids) :] = 1
        max_new = max(cap for _, cap in requests)
        kwargs: dict[str, Any] = {"max_new_tokens": max_new, "do_sample": not self.sampling.greedy}
        if not self.sampling.greedy:
            kwargs.update(temperature=self.sampling.temperature, top_p=self.sampling.top_p)
            kwargs["top_k"] = self.sampling.top_k if self.sampling.top_k is not None else 0
        else:
            kwargs.update(temperature=None, top_p=None, top_k=None)
        with torch.inference_mode():
            out = self.model.generate(
                input_ids=input_ids.to(self.device),
                attention_mask=attention.to(self.device),
                pad_token_id=self.pad_id,
                eos_token_id=sorted(self.eos_ids),
                **kwargs,
            )
        new_tokens = out[:, width:].tolist()
        results = []
        total = 0
        for row, (_, cap) in zip(new_tokens, requests, strict=True):
            content, used, finish = cut_at_eos(row, self.eos_ids, cap)
            total += used
            text = self.tokenizer.decode(content, skip_special_tokens=True)
            results.append(Generation(text=text, num_tokens=used, finish=finish))
        self.stats.record_batch(len(requests), total, time.perf_counter() - start)
        return results

    async def aclose(self) -> None:
        await self._batcher.aclose()
