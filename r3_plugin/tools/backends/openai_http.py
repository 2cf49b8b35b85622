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
"""Any OpenAI-compatible chat endpoint (vLLM / SGLang servers, hosted APIs) over HTTP.

Requests are sent concurrently (bounded by ``max_concurrency``); the server batches them. Tool
calls the server parsed out of the text are turned back into ``<tool_call>{...}</tool_call>``
text, so the same verifiers judge them as in training.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any

from r3_plugin.policy.episode import Finish, Generation
from r3_plugin.tools.backends.base import BackendStats, BackendUnavailable, SamplingConfig

_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}


def openai_tools(tools: list | None) -> list | None:
    """Wrap bare function schemas as ``{"type": "function", "function": ...}`` (the API's shape)."""
    if not tools:
        return None
    out = []
    for tool in tools:
        if isinstance(tool, dict) and "type" not in tool and "name" in tool:
            out.append({"type": "function", "function": tool})
        else:
            out.append(tool)
    return out


def message_text(message: dict) -> str:
    """The assistant text, with any structured tool calls rendered as ``<tool_call>`` blocks."""
    text = message.get("content") or ""
    for call in message.get("tool_calls") or []:
        fn = call.get("function", call)
        args = fn.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError:
                pass
        block = json.dumps({"name": fn.get("name"), "arguments": args}, ensure_ascii=False)
        text += ("\n" if text else "") + f"<tool_call>{block}</tool_call>"
    return text


class OpenAIBackend:
    """``POST {base_url}/chat/completions`` behind the :class:`ChatBackend` protocol."""

    name = "openai"

    def __init__(
        self,
        base_url: str,
        model: str,
        sampling: SamplingConfig = SamplingConfig(),
        *,
        api_key: str | None = None,
        timeout_s: float = 600.0,
        max_retries: int = 4,
        max_concurrency: int = 64,
    ) -> None:
        try:
            import httpx  # noqa: F401
        except ImportError as exc:
            raise BackendUnavailable(
                f"the openai backend needs httpx: pip install 'r3-plugin[openai]' ({exc})"
            ) from exc
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"--base-url must be an http(s) URL such as http://127.0.0.1:8000/v1, got {base_url!r}")
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.sampling = sampling
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.max_concurrency = max_concurrency
        self.stats = BackendStats()
        self._client: Any = None
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._sem: asyncio.Semaphore | None = None

    def _ensure_client(self) -> Any:
        import httpx

        loop = asyncio.get_running_loop()
        if self._client is None or self._client_loop is not loop:
            headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
            limits = httpx.Limits(max_connections=self.max_concurrency, max_keepalive_connections=self.max_concurrency)
            self._client = httpx.AsyncClient(timeout=self.timeout_s, headers=headers, limits=limits)
            self._client_loop = loop
            self._sem = asyncio.Semaphore(self.max_concurrency)
        return self._client

    def payload(
        self, messages: list[dict], max_tokens: int | None, tools: list | None, seed: int | None
    ) -> dict[str, Any]:
        s = self.sampling
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "max_tokens": max_tokens if max_tokens is not None else s.max_tokens,
            "temperature": s.temperature,
            "top_p": s.top_p,
            "n": 1,
        }
        if s.top_k is not None:
            body["top_k"] = s.top_k  # vLLM/SGLang extension; hosted APIs ignore or reject it
        if seed is not None:
            body["seed"] = seed
        wrapped = openai_tools(tools)
        if wrapped:
            body["tools"] = wrapped
        return body

    async def generate(
        self, messages: list[dict], *, max_tokens: int | None, tools: list | None = None, seed: int | None = None
    ) -> Generation:
        import httpx

        client = self._ensure_client()
        body = self.payload(messages, max_tokens, tools, seed)
        delay = 1.0
        async with self._sem:
            start = time.perf_counter()
            for attempt in range(self.max_retries + 1):
                try:
                    resp = await client.post(self.url, json=body)
                except httpx.TransportError as exc:
                    if attempt == self.max_retries:
                        raise RuntimeError(f"{self.url}: request failed after {attempt + 1} tries: {exc}") from exc
                else:
                    if resp.status_code == 200:
                        break
                    if resp.status_code not in _RETRY_STATUS or attempt == self.max_retries:
                        raise RuntimeError(f"{self.url}: HTTP {resp.status_code}: {resp.text[:500]}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 30.0)
            data = resp.json()
        try:
            choice = data["choices"][0]
            text = message_text(choice["message"])
        except (KeyError, IndexError, TypeError) as exc:
            raise RuntimeError(f"{self.url}: unexpected response shape: {str(data)[:500]}") from exc
        reason = choice.get("finish_reason")
        finish = Finish.LENGTH if reason == "length" else Finish.ABORTED if reason == "abort" else Finish.STOP
        usage = data.get("usage") or {}
        num_tokens = int(usage.get("completion_tokens") or len(text.split()))
        self.stats.record_batch(1, num_tokens, time.perf_counter() - start)
        return Generation(text=text, num_tokens=num_tokens, finish=finish)

    async def aclose(self) -> None:
        if self._client is not None:
            try:
                await self._client.aclose()
            except RuntimeError:  # client created on a loop that is already closed
                pass
            self._client = None
