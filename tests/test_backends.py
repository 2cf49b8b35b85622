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
"""Chat backends: conversation bookkeeping, micro-batching, transformers (tiny real model), the
OpenAI-compatible HTTP client against a loopback server, and the scripted backend."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from r3_plugin.policy.episode import Conversation, Finish, Generation, TurnKind
from r3_plugin.policy.tasks import PLAIN_RETRY_PROMPT
from r3_plugin.tools.backends.base import ChatConversation, MicroBatcher, SamplingConfig, cut_at_eos
from r3_plugin.tools.backends.scripted import ScriptedBackend, infer_turn, table_script

# ------------------------------------------------------------------------------------------ base pieces


def test_sampling_config_validates():
    assert SamplingConfig(temperature=0).greedy
    with pytest.raises(ValueError, match="temperature"):
        SamplingConfig(temperature=-1)
    with pytest.raises(ValueError, match="top_p"):
        SamplingConfig(top_p=0)
    with pytest.raises(ValueError, match="max_tokens"):
        SamplingConfig(max_tokens=0)


def test_cut_at_eos():
    assert cut_at_eos([5, 6, 2, 9], {2}, 10) == ([5, 6], 3, Finish.STOP)
    assert cut_at_eos([5, 6, 7, 8], {2}, 3) == ([5, 6, 7], 3, Finish.LENGTH)
    assert cut_at_eos([5, 2], {2}, 2) == ([5], 2, Finish.STOP)


async def test_chat_conversation_records_turns_and_budget():
    backend = ScriptedBackend(lambda msgs: "one two three four five")
    conv = ChatConversation(backend, [{"role": "user", "content": "hi"}], max_episode_tokens=12)
    assert isinstance(conv, Conversation)
    g1 = await conv.generate(TurnKind.ATTEMPT, None)
    assert (g1.num_tokens, g1.finish) == (5, Finish.STOP)
    await conv.add_user("please reflect now")  # 3 words counted against the budget
    assert conv.budget_left() == 12 - 5 - 3
    g2 = await conv.generate(TurnKind.REFLECTION, 10)  # capped at the 4 tokens left: the budget cut it
    assert (g2.num_tokens, g2.finish, g2.text) == (4, Finish.BUDGET, "one two three four")
    assert backend.calls[-1]["max_tokens"] == 4
    g3 = await conv.generate(TurnKind.RETRY, 10)  # budget spent: no backend call at all
    assert (g3.num_tokens, g3.finish) == (0, Finish.BUDGET)
    assert len(backend.calls) == 2
    assert [m["role"] for m in conv.messages] == ["user", "assistant", "user", "assistant", "assistant"]
    assert [k for k, _ in conv.turns] == [TurnKind.ATTEMPT, TurnKind.REFLECTION, TurnKind.RETRY]


async def test_chat_conversation_without_budget_and_seeds():
    backend = ScriptedBackend(lambda msgs: "x")
    conv = ChatConversation(backend, [{"role": "user", "content": "q"}], seed=100)
    assert conv.budget_left() is None
    await conv.generate(TurnKind.ATTEMPT, None)
    await conv.add_user("again")
    await conv.generate(TurnKind.RETRY, None)
    assert [c["seed"] for c in backend.calls] == [100, 101]
    assert backend.calls[0]["max_tokens"] is None


async def test_micro_batcher_batches_concurrent_requests_in_order():
    sizes = []

    def run_batch(reqs):
        sizes.append(len(reqs))
        return [r * 10 for r in reqs]

    batcher = MicroBatcher(run_batch, max_batch_size=4)
    results = await asyncio.gather(*(batcher.submit(i) for i in range(10)))
    assert results == [i * 10 for i in range(10)]
    assert sum(sizes) == 10 and max(sizes) <= 4 and len(sizes) < 10
    await batcher.aclose()


async def test_micro_batcher_error_fails_only_its_batch():
    def run_batch(reqs):
        if "bad" in reqs:
            raise RuntimeError("boom")
        return [r.upper() for r in reqs]

    batcher = MicroBatcher(run_batch, max_batch_size=2)
    results = await asyncio.gather(
        batcher.submit("a"), batcher.submit("bad"), batcher.submit("c"), batcher.submit("d"), return_exceptions=True
    )
    assert isinstance(results[0], RuntimeError) and isinstance(results[1], RuntimeError)
    assert results[2:] == ["C", "D"]
    # the batcher keeps serving after a failed batch
    assert await batcher.submit("e") == "E"
    await batcher.aclose()


def test_micro_batcher_survives_a_new_event_loop():
    batcher = MicroBatcher(lambda reqs: [r + 1 for r in reqs], max_batch_size=8)
    assert asyncio.run(batcher.submit(1)) == 2
    assert asyncio.run(batcher.submit(2)) == 3


# ---------------------------------------------------------------------------------------------- scripted


def test_infer_turn_and_table_script():
    user = {"role": "user", "content": "q"}
    asst = {"role": "assistant", "content": "a"}
    assert infer_turn([user]) == "attempt"
    assert infer_turn([user, asst, {"role": "user", "content": "reflect"}]) == "reflection"
    assert infer_turn([user, asst, {"role": "user", "content": "reflect"}, asst, {"role": "user", "content": "r"}]) == (
        "retry"
    )
    assert infer_turn([user, asst, {"role": "user", "content": PLAIN_RETRY_PROMPT}]) == "plain_retry"
    script = table_script({"q": {"attempt": "A", "reflection": "R"}}, default="D")
    assert (
        script([user]) == "A"
        and script([user, asst, user]) == "R"
        and script([{"role": "user", "content": "z"}]) == "D"
    )


async def test_scripted_backend_accepts_generation_objects():
    backend = ScriptedBackend(lambda msgs: Generation("stop", 7, Finish.ABORTED))
    gen = await backend.generate([{"role": "user", "content": "q"}], max_tokens=3)
    assert (gen.text, gen.num_tokens, gen.finish) == ("stop", 7, Finish.ABORTED)


# ------------------------------------------------------------------------------------------ transformers


@pytest.fixture(scope="module")
def hf_backend(tiny_model_dir):
    from r3_plugin.tools.backends.hf import HFBackend

    return HFBackend(str(tiny_model_dir), SamplingConfig(temperature=0, max_tokens=8), device="cpu", max_batch_size=8)


def test_hf_prompt_ids_follow_the_chat_template(hf_backend, tiny_tokenizer):
    msgs = [{"role": "user", "content": "Using the numbers [3, 7, 25], make 46."}]
    text = tiny_tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
    assert text.endswith("<|im_start|>assistant\n")
    assert hf_backend.encode(msgs) == tiny_tokenizer(text, add_special_tokens=False)["input_ids"]
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    with_tools = tiny_tokenizer.decode(hf_backend.encode(msgs, tools))
    assert "get_weather" in with_tools


async def test_hf_batched_generation_matches_one_by_one(hf_backend):
    """Left padding must not change greedy outputs: each prompt alone == the same prompt in a batch."""
    prompts = [
        [{"role": "user", "content": "Using the numbers [3, 7, 25], create an equation that equals 46."}],
        [{"role": "user", "content": "target 12"}],
        [{"role": "user", "content": "Reflect on what went wrong and write a short explanation."}],
    ]
    alone = [await hf_backend.generate(p, max_tokens=6) for p in prompts]
    batches_before = hf_backend.stats.batches
    together = await asyncio.gather(*(hf_backend.generate(p, max_tokens=6) for p in prompts))
    assert hf_backend.stats.batches == batches_before + 1  # one batched generate for all three
    assert [g.text for g in together] == [g.text for g in alone]
    for g in together:
        assert 1 <= g.num_tokens <= 6
        assert g.finish == (Finish.LENGTH if g.num_tokens == 6 else Finish.STOP)


async def test_hf_respects_per_request_caps_in_one_batch(hf_backend):
    msgs = [{"role": "user", "content": "say something"}]
    short, long = await asyncio.gather(hf_backend.generate(msgs, max_tokens=2), hf_backend.generate(msgs, max_tokens=5))
    assert short.num_tokens <= 2 and long.num_tokens <= 5
    assert long.text.startswith(short.text)


# ------------------------------------------------------------------------------------- OpenAI over HTTP


class _ChatHandler(BaseHTTPRequestHandler):
    requests: list[dict] = []
    fail_first: int = 0

    def do_POST(self):  # noqa: N802 (stdlib name)
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).requests.append({"path": self.path, "body": body, "auth": self.headers.get("Authorization")})
        if type(self).fail_first > 0:
            type(self).fail_first -= 1
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"busy")
            return
        last = body["messages"][-1]["content"]
        if last == "call a tool":
            message = {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}}],
            }
            finish = "tool_calls"
        else:
            message = {"role": "assistant", "content": f"echo: {last}"}
            finish = "length" if body["max_tokens"] < 3 else "stop"
        resp = {"choices": [{"message": message, "finish_reason": finish}], "usage": {"completion_tokens": 4}}
        data = json.dumps(resp).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture()
def chat_server():
    _ChatHandler.requests = []
    _ChatHandler.fail_first = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


async def test_openai_backend_round_trip(chat_server):
    from r3_plugin.tools.backends.openai_http import OpenAIBackend

    backend = OpenAIBackend(chat_server, "tiny", SamplingConfig(temperature=0.5, seed=3, max_tokens=16), api_key="k")
    tools = [{"name": "f", "parameters": {"type": "object"}}]
    msgs = [{"role": "user", "content": "hello"}]
    gens = await asyncio.gather(
        backend.generate(msgs, max_tokens=None, tools=tools, seed=11),
        backend.generate([{"role": "user", "content": "cut"}], max_tokens=2),
        backend.generate([{"role": "user", "content": "call a tool"}], max_tokens=8),
    )
    await backend.aclose()
    assert (gens[0].text, gens[0].num_tokens, gens[0].finish) == ("echo: hello", 4, Finish.STOP)
    assert gens[1].finish == Finish.LENGTH
    assert gens[2].text == '<tool_call>{"name": "f", "arguments": {"x": 1}}</tool_call>'
    first = next(r for r in _ChatHandler.requests if r["body"]["messages"] == msgs)
    assert first["path"] == "/v1/chat/completions" and first["auth"] == "Bearer k"
    body = first["body"]
    assert (body["model"], body["max_tokens"], body["temperature"], body["seed"]) == ("tiny", 16, 0.5, 11)
    assert body["tools"] == [{"type": "function", "function": tools[0]}]


async def test_openai_backend_retries_server_errors(chat_server, monkeypatch):
    from r3_plugin.tools.backends import openai_http

    async def no_sleep(_):
        return None

    monkeypatch.setattr(openai_http.asyncio, "sleep", no_sleep)
    _ChatHandler.fail_first = 2
    backend = openai_http.OpenAIBackend(chat_server, "tiny", SamplingConfig(), max_retries=3)
    gen = await backend.generate([{"role": "user", "content": "hi"}], max_tokens=5)
    await backend.aclose()
    assert gen.text == "echo: hi" and len(_ChatHandler.requests) == 3

    _ChatHandler.fail_first = 5
    backend = openai_http.OpenAIBackend(chat_server, "tiny", SamplingConfig(), max_retries=1)
    with pytest.raises(RuntimeError, match="HTTP 503"):
        await backend.generate([{"role": "user", "content": "hi"}], max_tokens=5)
    await backend.aclose()


def test_vllm_backend_says_how_to_install(monkeypatch):
    import sys

    from r3_plugin.tools.backends.base import BackendUnavailable
    from r3_plugin.tools.backends.vllm_offline import VLLMBackend

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm -> ImportError, even where it is installed
    with pytest.raises(BackendUnavailable, match=r"pip install 'r3-plugin\[vllm\]'"):
        VLLMBackend("some/model")
