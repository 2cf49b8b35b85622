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
"""vLLM offline backend (``vllm.LLM``): the fast path on GPUs, prefix caching on.

The chat template is applied here with the model's tokenizer and vLLM gets token ids, so the
prompt the model sees is byte-for-byte the one training builds. Concurrent episode turns are
micro-batched into one ``LLM.generate`` call with one ``SamplingParams`` per request; prefix
caching makes the growing multi-turn prompts (and the many samples of one query) cheap.
"""

from __future__ import annotations

import time
from typing import Any

from r3_plugin.policy.episode import Finish, Generation
from r3_plugin.tools.backends.base import BackendStats, BackendUnavailable, MicroBatcher, SamplingConfig
from r3_plugin.tools.backends.hf import render_prompt_ids

_INSTALL_HINT = "the vllm backend needs vLLM: pip install 'r3-plugin[vllm]' (on a machine with a GPU)"


class VLLMBackend:
    """``vllm.LLM`` behind the :class:`ChatBackend` protocol."""

    name = "vllm"

    def __init__(
        self,
        model_path: str,
        sampling: SamplingConfig = SamplingConfig(),
        *,
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int | None = None,
        dtype: str = "auto",
        max_batch_size: int = 1024,
        trust_remote_code: bool = False,
        enforce_eager: bool = False,
        engine_kwargs: dict[str, Any] | None = None,
    ) -> None:
        try:
            from vllm import LLM, SamplingParams
        except ImportError as exc:
            raise BackendUnavailable(f"{_INSTALL_HINT} ({exc})") from exc
        self._sampling_params_cls = SamplingParams
        self.sampling = sampling
        kwargs: dict[str, Any] = {
            "model": model_path,
            "enable_prefix_caching": True,
            "tensor_parallel_size": tensor_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization,
            "dtype": dtype,
            "trust_remote_code": trust_remote_code,
            "enforce_eager": enforce_eager,
            "seed": sampling.seed if sampling.seed is not None else 0,
        }
        if max_model_len is not None:
            kwargs["max_model_len"] = max_model_len
        kwargs.update(engine_kwargs or {})
        self.llm = LLM(**kwargs)
        self.tokenizer = self.llm.get_tokenizer()
        self.stats = BackendStats()
        self._batcher: MicroBatcher = MicroBatcher(self._run_batch, max_batch_size)

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _params(self, max_tokens: int, seed: int | None) -> Any:
        s = self.sampling
        kwargs: dict[str, Any] = {"n": 1, "max_tokens": max_tokens, "temperature": s.temperature, "top_p": s.top_p}
        if s.top_k is not None:
            kwargs["top_k"] = s.top_k
        if seed is not None:
            kwargs["seed"] = seed
        return self._sampling_params_cls(**kwargs)

    async def generate(
        self, messages: list[dict], *, max_tokens: int | None, tools: list | None = None, seed: int | None = None
    ) -> Generation:
        ids = render_prompt_ids(self.tokenizer, messages, tools)
        cap = max_tokens if max_tokens is not None else self.sampling.max_tokens
        return await self._batcher.submit((ids, cap, seed))

    def generate_ids_batch(self, requests: list[tuple[list[int], int, int | None]]) -> list[Generation]:
        """One synchronous batched generate over (prompt ids, max tokens, seed) triples."""
        return self._run_batch(requests)

    def _run_batch(self, requests: list[tuple[list[int], int, int | None]]) -> list[Generation]:
        start = time.perf_counter()
        prompts = [{"prompt_token_ids": ids} for ids, _, _ in requests]
        params = [self._params(cap, seed) for _, cap, seed in requests]
        outputs = self.llm.generate(prompts, sampling_params=params, use_tqdm=False)
        results = []
        total = 0
        for out in outputs:
            comp = out.outputs[0]
            reason = comp.finish_reason
            finish = Finish.LENGTH if reason == "length" else Finish.ABORTED if reason == "abort" else Finish.STOP
            n = len(comp.token_ids)
            total += n
            results.append(Generation(text=comp.text, num_tokens=n, finish=finish))
        self.stats.record_batch(len(requests), total, time.perf_counter() - start)
        return results

    async def aclose(self) -> None:
        await self._batcher.aclose()
