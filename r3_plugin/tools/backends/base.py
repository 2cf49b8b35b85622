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
"""What the miner and the evaluator need from a model: chat in, one assistant turn out.

``ChatBackend`` is the small protocol every backend implements; ``ChatConversation`` adapts a
backend to :class:`r3_plugin.policy.episode.Conversation`, so :func:`r3_plugin.policy.episode.run_episode` (the
same policy training uses) drives it. ``MicroBatcher`` lets many concurrent episodes share one
batched ``generate`` call: episodes run as asyncio tasks, each awaits its own turn, and a worker
thread runs whatever requests are pending as one batch while the event loop collects the next one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Generic, Protocol, TypeVar, runtime_checkable

from r3_plugin.policy.episode import Finish, Generation, TurnKind, cut_by


class BackendUnavailable(RuntimeError):
    """A backend's optional dependency is missing (the message says what to install)."""


@dataclass(frozen=True)
class SamplingConfig:
    """Sampling knobs shared by all backends.

    ``temperature=0`` is greedy decoding. ``max_tokens`` is the default per-turn cap, used when
    the episode config gives none. ``seed`` is a base seed: the miner and evaluator derive one
    seed per episode turn from it, so backends that honour per-request seeds (vLLM, most
    OpenAI-compatible servers) give the same samples whatever the batching; transformers seeds
    torch once at start-up instead.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int | None = None
    seed: int | None = None
    max_tokens: int = 1024

    def __post_init__(self) -> None:
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {self.top_k}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@runtime_checkable
class ChatBackend(Protocol):
    """Samples one assistant turn for a chat.

    ``generate`` returns a :class:`Generation` whose ``num_tokens`` counts generated tokens
    (the end-of-turn token included when the backend reports it) and whose ``finish`` is
    ``Finish.LENGTH`` when ``max_tokens`` cut the turn. ``max_tokens=None`` means the
    backend's default (``SamplingConfig.max_tokens``). ``seed`` is optional per-request seeding.
    """

    async def generate(
        self, messages: list[dict], *, max_tokens: int | None, tools: list | None = None, seed: int | None = None
    ) -> Generation: ...


@dataclass
class BackendStats:
    """Counters every backend keeps, for progress bars and the overhead benchmark."""

    requests: int = 0
    batches: int = 0
    generated_tokens: int = 0
    #: wall time spent inside the model's generate calls (batched backends: summed over batches)
    generate_seconds: float = 0.0
    max_batch: int = 0

    def record_batch(self, size: int, tokens: int, seconds: float) -> None:
        self.requests += size
        self.batches += 1
        self.generated_tokens += tokens
        self.generate_seconds += seconds
        self.max_batch = max(self.max_batch, size)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean_batch"] = self.requests / self.batches if self.batches else 0.0
        return d


Req = TypeVar("Req")
Res = TypeVar("Res")


class MicroBatcher(Generic[Req, Res]):
    """Collects concurrent requests and runs them as batches in one worker thread.

    ``run_batch`` gets a list of requests and returns one result per request, in order. It runs
    in a single dedicated thread (so GPU calls never overlap) while the event loop keeps
    accepting requests for the next batch. An exception fails exactly the requests of its batch.
    """

    def __init__(self, run_batch: Callable[[list[Req]], Sequence[Res]], max_batch_size: int = 64) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        self._run_batch = run_batch
        self.max_batch_size = max_batch_size
        self._pending: list[tuple[Req, asyncio.Future]] = []
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="r3-batch")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wakeup: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None

    async def submit(self, request: Req) -> Res:
        loop = asyncio.get_running_loop()
        if self._loop is not loop or self._worker is None or self._worker.done():
            # first use, or a new event loop (e.g. a second asyncio.run with the same backend)
            self._loop = loop
            self._wakeup = asyncio.Event()
            self._worker = loop.create_task(self._work())
        fut: asyncio.Future = loop.create_future()
        self._pending.append((request, fut))
        self._wakeup.set()
        return await fut

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            # Let episodes that became runnable in this loop iteration enqueue their turns too.
            await asyncio.sleep(0)
            while self._pending:
                batch = self._pending[: self.max_batch_size]
                del self._pending[: self.max_batch_size]
                live = [(r, f) for r, f in batch if not f.cancelled()]
                if not live:
                    continue
                try:
                    results = await loop.run_in_executor(self._executor, self._run_batch, [r for r, _ in live])
                    if len(results) != len(live):
                        raise RuntimeError(f"backend returned {len(results)} results for {len(live)} requests")
                except Exception as exc:
                    for _, f in live:
                        if not f.done():
                            f.set_exception(exc)
                    continue
                for (_, f), res in zip(live, results, strict=True):
                    if not f.done():
                        f.set_result(res)

    async def aclose(self) -> None:
        if self._worker is not None and not self._worker.done():
            self._worker.cancel()
            try:
                await self._worker
            except (asyncio.CancelledError, RuntimeError):
                pass
        self._worker = None

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def cut_at_eos(token_ids: Sequence[int], eos_ids: set[int], cap: int) -> tuple[list[int], int, Finish]:
    """Cut a generated row at the first end-of-turn token or at ``cap``.

    Returns (content tokens without the eos, tokens generated including the eos, finish).
    """
    row = list(token_ids[:cap])
    for i, tok in enumerate(row):
        if tok in eos_ids:
            return row[:i], i + 1, Finish.STOP
    return row, len(row), Finish.LENGTH if len(row) >= cap else Finish.STOP


@dataclass
class ChatConversation:
    """A chat-message conversation over a :class:`ChatBackend`, for :func:`run_episode`.

    ``messages`` starts as the task prompt; every turn is appended, so after the episode it is the
    full transcript. ``budget_left`` counts generated tokens plus, when the backend can count
    tokens (``count_tokens``), the tokens of messages added during the episode (the chat
    template's few framing tokens are not counted). ``seed`` (optional) seeds turn i with
    ``seed + i``.
    """

    backend: ChatBackend
    messages: list[dict]
    tools: list | None = None
    max_episode_tokens: int | None = None
    seed: int | None = None
    tokens_used: int = 0
    turns: list[tuple[TurnKind, Generation]] = field(default_factory=list)
    generate_seconds: float = 0.0

    def __post_init__(self) -> None:
        self.messages = [dict(m) for m in self.messages]

    async def generate(self, kind: TurnKind, max_tokens: int | None) -> Generation:
        left = self.budget_left()
        cap = max_tokens
        if left is not None:
            cap = left if cap is None else min(cap, left)
        if cap is not None and cap <= 0:
            gen = Generation(text="", num_tokens=0, finish=Finish.BUDGET)
        else:
            seed = None if self.seed is None else self.seed + len(self.turns)
            start = time.perf_counter()
            gen = await self.backend.generate(list(self.messages), max_tokens=cap, tools=self.tools, seed=seed)
            self.generate_seconds += time.perf_counter() - start
            if gen.finish == Finish.LENGTH:
                gen.finish = cut_by(max_tokens, cap)
        self.messages.append({"role": "assistant", "content": gen.text})
        self.tokens_used += gen.num_tokens
        self.turns.append((kind, gen))
        return gen

    async def add_user(self, text: str) -> None:
        self.messages.append({"role": "user", "content": text})
        self.tokens_used += self._count(text)

    async def add_assistant(self, text: str) -> None:
        self.messages.append({"role": "assistant", "content": text})
        self.tokens_used += self._count(text)

    def budget_left(self) -> int | None:
        if self.max_episode_tokens is None:
            return None
        return self.max_episode_tokens - self.tokens_used

    def _count(self, text: str) -> int:
        if self.max_episode_tokens is None:
            return 0
        counter = getattr(self.backend, "count_tokens", None)
        return int(counter(text)) if counter is not None else 0


async def close_backend(backend: Any) -> None:
    """Release a backend's worker task / HTTP client if it has any."""
    closer = getattr(backend, "aclose", None)
    if closer is not None:
        await closer()
