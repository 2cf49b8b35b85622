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
"""The r3_agent loop through verl's real AgentLoopWorker, postprocessing, GRPO advantage and loss."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from r3_plugin.local.local_rollout import (
    compose_config,
    grpo_advantages,
    load_batch,
    local_overrides,
    make_worker,
    rollout,
)
from r3_plugin.local.local_server import HFTokenServer, ScriptedTokenServer, session_script, turn_script
from r3_plugin.policy.tasks import VerifyResult, register_task, unregister_task

TOY = "r3_toy_arith"
QUESTION = "Make 10 from the numbers 3 and 7. Answer inside <answer> </answer>."
RIGHT, WRONG = "<answer> 3 + 7 </answer>", "<answer> 3 * 7 </answer>"
REFLECTION = "I multiplied instead of adding."
REFLECTION_PROMPT = "You got it wrong. Reflect on what went wrong."
RETRY_PROMPT = "Try again."


def _toy_verifier(response: str, ground_truth, extra_info=None) -> VerifyResult:
    ok = str(ground_truth) in response
    return VerifyResult(ok, "correct" if ok else "wrong_answer", response)


@pytest.fixture(autouse=True)
def toy_task():
    register_task(
        TOY, _toy_verifier, reflection_prompt=REFLECTION_PROMPT, retry_prompt=RETRY_PROMPT, replace_existing=True
    )
    yield
    unregister_task(TOY)


def _write_rows(path, n_rows=1, failed_attempt=None):
    rows = []
    for i in range(n_rows):
        extra = {"index": i, "split": "train"}
        if failed_attempt is not None:
            extra["r3_failed_attempt"] = failed_attempt
        rows.append(
            {
                "data_source": TOY,
                "prompt": [{"role": "user", "content": QUESTION}],
                "ability": "math",
                "reward_model": {"style": "rule", "ground_truth": "3 + 7"},
                "extra_info": extra,
                "agent_name": "r3_agent",
            }
        )
    pd.DataFrame(rows).to_parquet(path)
    return str(path)


def _config(model_dir, n, *extra, response_length=256):
    overrides = local_overrides(str(model_dir), n=n, prompt_length=256, response_length=response_length)
    overrides += [
        "++r3.mode=online",
        "++r3.credit=reflection",
        "++r3.max_reflections=1",
        "++r3.attempt_max_tokens=64",
        "++r3.reflection_max_tokens=64",
        "++r3.retry_max_tokens=64",
        "actor_rollout_ref.rollout.agent.default_agent_loop=r3_agent",
        "actor_rollout_ref.rollout.name=vllm",
        "actor_rollout_ref.rollout.temperature=1.0",
        "actor_rollout_ref.rollout.val_kwargs.temperature=0",
        "actor_rollout_ref.rollout.val_kwargs.do_sample=false",
        "algorithm.adv_estimator=grpo",
        "actor_rollout_ref.actor.ppo_mini_batch_size=1",
        "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu=1",
    ]
    return compose_config(overrides + list(extra), recipe=None)


async def _run(tmp_path, model_dir, tokenizer, script, *, n=1, extra=(), validate=False, failed_attempt=None, **kw):
    config = _config(model_dir, n, *extra, **kw)
    server = ScriptedTokenServer(tokenizer, script)
    worker = make_worker(config, server)
    batch = load_batch(_write_rows(tmp_path / "rows.parquet", failed_attempt=failed_attempt), config, tokenizer)
    out = await rollout(worker, batch, n=n, validate=validate)
    return out, worker, server, config


def _row_ids(out, i):
    attn = out.batch["attention_mask"][i].bool()
    return out.batch["input_ids"][i][attn].tolist()


def _credited_text(out, tokenizer, i):
    mask = out.batch["response_mask"][i].bool()
    return tokenizer.decode(out.batch["responses"][i][mask].tolist())


def _template_ids(tokenizer, messages):
    ids = tokenizer.apply_chat_template(messages, tokenize=True)
    return list(ids["input_ids"] if hasattr(ids, "keys") else ids)


async def test_reflection_only_credit_and_chat_template_identity(tmp_path, tiny_model_dir, tiny_tokenizer):
    out, _, server, _ = await _run(tmp_path, tiny_model_dir, tiny_tokenizer, turn_script(WRONG, REFLECTION, RIGHT))
    ids = _row_ids(out, 0)
    conversation = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": WRONG},
        {"role": "user", "content": REFLECTION_PROMPT},
        {"role": "assistant", "content": REFLECTION},
        {"role": "user", "content": RETRY_PROMPT},
        {"role": "assistant", "content": RIGHT},
    ]
    expected = _template_ids(tiny_tokenizer, conversation)
    # The template ends every turn with "<|im_end|>\n"; generation stops at <|im_end|>.
    assert expected[: len(ids)] == ids and tiny_tokenizer.decode(expected[len(ids) :]) == "\n"
    assert _credited_text(out, tiny_tokenizer, 0) == REFLECTION + "<|im_end|>"
    assert out.batch["rm_scores"][0].sum().item() == 1.0
    assert out.non_tensor_batch["acc"][0] == 1.0 and out.non_tensor_batch["first_try_acc"][0] == 0.0
    assert out.non_tensor_batch["end_reason"][0] == "retry_success"
    assert len({call["request_id"] for call in server.calls}) == 1, "all turns share one request id"
    assert [c["sampling_params"]["max_tokens"] for c in server.calls] == [64, 64, 64]
    # log-probs stay aligned: the credited tokens carry the server's log-probs
    lp = out.batch["rollout_log_probs"][0][out.batch["response_mask"][0].bool()]
    assert torch.allclose(lp, torch.full_like(lp, -0.5))


async def test_reflection_and_retry_credit(tmp_path, tiny_model_dir, tiny_tokenizer):
    out, *_ = await _run(
        tmp_path,
        tiny_model_dir,
        tiny_tokenizer,
        turn_script(WRONG, REFLECTION, RIGHT),
        extra=["++r3.credit=reflection_and_retry"],
    )
    assert _credited_text(out, tiny_tokenizer, 0) == REFLECTION + "<|im_end|>" + RIGHT + "<|im_end|>"


async def test_failed_retry_gets_zero_reward_but_trains(tmp_path, tiny_model_dir, tiny_tokenizer):
    out, *_ = await _run(tmp_path, tiny_model_dir, tiny_tokenizer, turn_script(WRONG, REFLECTION, WRONG))
    assert out.batch["rm_scores"][0].sum().item() == 0.0
    assert _credited_text(out, tiny_tokenizer, 0) == REFLECTION + "<|im_end|>"
    assert out.non_tensor_batch["end_reason"][0] == "retries_exhausted"


async def test_first_try_success_dropped_in_training_kept_in_validation(tmp_path, tiny_model_dir, tiny_tokenizer):
    script = session_script([RIGHT], [WRONG, REFLECTION, RIGHT])
    out, worker, *_ = await _run(tmp_path, tiny_model_dir, tiny_tokenizer, script, n=2)
    assert len(worker.kept_indices) == 1 and len(out) == 1
    assert worker.dropped == {"first_try_success": 1}
    assert out.batch["response_mask"][0].sum().item() > 0

    val, worker, *_ = await _run(tmp_path, tiny_model_dir, tiny_tokenizer, turn_script(RIGHT), n=1, validate=True)
    assert len(val) == 1
    assert val.batch["rm_scores"][0].sum().item() == 1.0
    assert val.non_tensor_batch["first_try_acc"][0] == 1.0 and val.non_tensor_batch["second_try_acc"][0] == 1.0
    assert val.batch["response_mask"][0].sum().item() == 0, "a first-try success trains nothing"


async def test_offline_mode_reflects_on_stored_failure(tmp_path, tiny_model_dir, tiny_tokenizer):
    # Offline: the stored attempt is part of the prompt, so the first sampled turn is the reflection.
    out, _, server, _ = await _run(
        tmp_path,
        tiny_model_dir,
        tiny_tokenizer,
        turn_script("unused", REFLECTION, RIGHT),
        n=3,
        extra=["++r3.mode=offline"],
        failed_attempt=WRONG,
    )
    assert len(out) == 3 and len(server.calls) == 6
    # The prompt is the task alone; the stored attempt and the reflection request are response tokens.
    prompt_ids = out.batch["prompts"][0][out.batch["attention_mask"][0][:256].bool()].tolist()
    task_only = tiny_tokenizer.apply_chat_template([{"role": "user", "content": QUESTION}], add_generation_prompt=True)
    assert prompt_ids == list(task_only["input_ids"] if hasattr(task_only, "keys") else task_only)
    conversation = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": WRONG},
        {"role": "user", "content": REFLECTION_PROMPT},
        {"role": "assistant", "content": REFLECTION},
        {"role": "user", "content": RETRY_PROMPT},
        {"role": "assistant", "content": RIGHT},
    ]
    for i in range(3):
        assert _row_ids(out, i) == _template_ids(tiny_tokenizer, conversation)[: len(_row_ids(out, i))]
        assert _credited_text(out, tiny_tokenizer, i) == REFLECTION + "<|im_end|>"
        mask = out.batch["response_mask"][i].tolist()
        stored = len(tiny_tokenizer(WRONG + "<|im_end|>", add_special_tokens=False)["input_ids"])
        assert mask[:stored] == [0] * stored
    assert out.batch["rm_scores"].sum().item() == 3.0


async def test_offline_long_stored_attempt_keeps_the_task_as_prompt(tmp_path, tiny_model_dir, tiny_tokenizer):
    long_attempt = "<answer> " + " + ".join(["3"] * 200) + " </answer>"
    assert len(tiny_tokenizer(long_attempt)["input_ids"]) > 256  # longer than rollout.prompt_length
    out, worker, server, _ = await _run(
        tmp_path,
        tiny_model_dir,
        tiny_tokenizer,
        turn_script("unused", REFLECTION, RIGHT),
        n=1,
        extra=["++r3.mode=offline"],
        failed_attempt=long_attempt,
        response_length=1024,
    )
    prompt_text = tiny_tokenizer.decode(out.batch["prompts"][0][out.batch["attention_mask"][0][:256].bool()])
    assert prompt_text.startswith("<|im_start|>user\n" + QUESTION) and long_attempt not in prompt_text
    assert _credited_text(out, tiny_tokenizer, 0) == REFLECTION + "<|im_end|>"


async def test_offline_validation_samples_its_own_first_try(tmp_path, tiny_model_dir, tiny_tokenizer):
    """Validation rows carry no stored attempt: the paper's measure is the model's own first try."""
    out, _, server, _ = await _run(
        tmp_path, tiny_model_dir, tiny_tokenizer, turn_script(WRONG, REFLECTION, RIGHT), extra=["++r3.mode=offline"],
        validate=True,
    )  # fmt: skip
    assert len(server.calls) == 3  # attempt, reflection, retry: all sampled
    assert out.non_tensor_batch["first_try_acc"][0] == 0.0 and out.non_tensor_batch["second_try_acc"][0] == 1.0


async def test_offline_mode_requires_stored_attempt(tmp_path, tiny_model_dir, tiny_tokenizer):
    with pytest.raises(ValueError, match="r3_failed_attempt"):
        await _run(tmp_path, tiny_model_dir, tiny_tokenizer, turn_script(WRONG), extra=["++r3.mode=offline"])


async def test_two_reflection_rounds(tmp_path, tiny_model_dir, tiny_tokenizer):
    script = turn_script(WRONG, "first reflection", WRONG, "second reflection", RIGHT)
    out, *_ = await _run(tmp_path, tiny_model_dir, tiny_tokenizer, script, extra=["++r3.max_reflections=2"])
    assert _credited_text(out, tiny_tokenizer, 0) == "first reflection<|im_end|>second reflection<|im_end|>"
    assert out.batch["rm_scores"][0].sum().item() == 1.0
    assert out.non_tensor_batch["__num_turns__"][0] == 10  # 5 user + 5 assistant messages


async def test_truncated_attempt_is_closed_and_episode_fits_budget(tmp_path, tiny_model_dir, tiny_tokenizer):
    long_attempt = "<answer> " + " + ".join(["3"] * 80) + " </answer>"
    out, *_ = await _run(
        tmp_path,
        tiny_model_dir,
        tiny_tokenizer,
        turn_script(long_attempt, REFLECTION, RIGHT),
        extra=["++r3.attempt_max_tokens=8"],
    )
    ids = _row_ids(out, 0)
    text = tiny_tokenizer.decode(ids)
    # the cut attempt is closed with an (untrained) end-of-turn token before the next user turn
    assert "<|im_end|>\n<|im_start|>user\n" + REFLECTION_PROMPT in text
    assert out.non_tensor_batch["truncated"][0] == 1.0
    assert _credited_text(out, tiny_tokenizer, 0) == REFLECTION + "<|im_end|>"

    # attempt (10 tokens) + reflection prompt + reflection fit in 90 tokens; the retry prompt does not.
    # In training such an episode says nothing about its reflection: it is dropped and counted.
    dropped, worker, server, _ = await _run(
        tmp_path, tiny_model_dir, tiny_tokenizer, turn_script(WRONG, REFLECTION, RIGHT), response_length=90
    )
    assert dropped is None and worker.dropped == {"out_of_budget": 1} and len(server.calls) == 2
    # Validation keeps it, as a failed episode (second-try accuracy counts it as not solved).
    tight, worker, server, _ = await _run(
        tmp_path,
        tiny_model_dir,
        tiny_tokenizer,
        turn_script(WRONG, REFLECTION, RIGHT),
        response_length=90,
        validate=True,
    )
    assert tight.batch["responses"].shape[1] == 90
    assert tight.batch["attention_mask"][0][256:].sum().item() == 90
    assert tight.non_tensor_batch["end_reason"][0] == "out_of_budget"
    assert tight.batch["rm_scores"][0].sum().item() == 0.0
    assert len(server.calls) == 2


async def test_aborted_session_is_dropped(tmp_path, tiny_model_dir, tiny_tokenizer):
    script = session_script([WRONG, ScriptedTokenServer.ABORT], [WRONG, REFLECTION, RIGHT])
    out, worker, *_ = await _run(tmp_path, tiny_model_dir, tiny_tokenizer, script, n=2)
    assert len(out) == 1 and worker.dropped == {"aborted": 1}


async def test_weight_version_fields_follow_tool_agent_loop(tmp_path, tiny_model_dir, tiny_tokenizer):
    config = _config(tiny_model_dir, 1)
    calls = {"n": 0}
    base = turn_script(WRONG, REFLECTION, RIGHT)

    class Advancing(ScriptedTokenServer):
        async def generate(self, request_id, **kw):
            out = await super().generate(request_id, **kw)
            self.global_steps += 1  # the weights move on between turns
            calls["n"] += 1
            out.num_preempted = 1
            return out

    server = Advancing(tiny_tokenizer, base, global_steps=5)
    worker = make_worker(config, server)
    batch = load_batch(_write_rows(tmp_path / "rows.parquet"), config, tiny_tokenizer)
    out = await rollout(worker, batch, n=1)
    assert out.non_tensor_batch["min_global_steps"][0] == 5
    assert out.non_tensor_batch["max_global_steps"][0] == 7
    assert out.meta_info["metrics"][0]["num_preempted"] == 3


async def test_grpo_gradient_only_on_credited_tokens(tmp_path, tiny_model_dir, tiny_tokenizer):
    """verl's GRPO advantage and policy loss: non-zero gradient exactly on reflection tokens."""
    from transformers import AutoModelForCausalLM
    from verl.trainer.ppo.core_algos import agg_loss, compute_policy_loss_vanilla

    sessions = [[WRONG, REFLECTION, RIGHT], [WRONG, "no idea", WRONG], [RIGHT], [WRONG, "add them", RIGHT]]
    out, worker, _, config = await _run(tmp_path, tiny_model_dir, tiny_tokenizer, session_script(*sessions), n=4)
    assert len(out) == 3, "the first-try success is dropped, not averaged into the group"
    advantages = grpo_advantages(out, config)
    mask = out.batch["response_mask"].bool()
    assert torch.all(advantages[~mask] == 0)
    rewards = out.batch["rm_scores"].sum(-1)
    assert sorted(rewards.tolist()) == [0.0, 1.0, 1.0]

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    logits = model(input_ids=out.batch["input_ids"], attention_mask=out.batch["attention_mask"]).logits
    resp_len = out.batch["responses"].shape[1]
    logits = logits[:, -resp_len - 1 : -1]
    log_prob = torch.log_softmax(logits.float(), -1).gather(-1, out.batch["responses"].unsqueeze(-1)).squeeze(-1)
    log_prob.retain_grad()
    old_log_prob = log_prob.detach()
    pg_losses, *_ = compute_policy_loss_vanilla(
        old_log_prob=old_log_prob,
        log_prob=log_prob,
        advantages=advantages,
        response_mask=out.batch["response_mask"],
        loss_agg_mode="token-mean",
        config=_actor_config(config),
    )
    pg_losses.backward()
    grad = log_prob.grad
    assert torch.isfinite(grad).all() and torch.isfinite(pg_losses)
    assert torch.all(grad[~mask] == 0)
    assert torch.all(grad[mask] != 0)
    kl = agg_loss(
        loss_mat=(log_prob - old_log_prob) ** 2, loss_mask=out.batch["response_mask"], loss_agg_mode="token-mean"
    )
    assert torch.isfinite(kl)


def _actor_config(config):
    from verl.utils.config import omega_conf_to_dataclass

    return omega_conf_to_dataclass(config.actor_rollout_ref.actor)


async def test_real_tiny_model_end_to_end(tmp_path, tiny_model_dir, tiny_tokenizer):
    """A real (random) HF model sampled through the stand-in server: every invariant still holds."""
    config = _config(
        tiny_model_dir,
        2,
        "++r3.attempt_max_tokens=12",
        "++r3.reflection_max_tokens=12",
        "++r3.retry_max_tokens=12",
    )
    server = HFTokenServer(str(tiny_model_dir), seed=0)
    worker = make_worker(config, server)
    batch = load_batch(_write_rows(tmp_path / "rows.parquet", n_rows=2), config, tiny_tokenizer)
    out = await rollout(worker, batch, n=2)
    assert out is not None and len(out) == 4  # a random model never answers "3 + 7"
    for i in range(len(out)):
        n_reflection = int(out.non_tensor_batch["reflection_tokens"][i])
        assert out.batch["response_mask"][i].sum().item() == n_reflection > 0
        assert out.batch["rm_scores"][i].sum().item() == 0.0
    lp = out.batch["rollout_log_probs"][out.batch["response_mask"].bool()]
    assert torch.all(lp <= 0) and torch.all(torch.isfinite(lp))
    assert np.all(out.non_tensor_batch["min_global_steps"] == 0)
    json.dumps([dict(r) for r in out.non_tensor_batch["reward_extra_info"]])  # plain, loggable values


async def test_validation_reports_first_and_second_try_through_verl_metrics(tmp_path, tiny_model_dir, tiny_tokenizer):
    """verl's validation metric code turns the records into the paper's two columns."""
    from verl.trainer.ppo.metric_utils import process_validation_metrics

    rows = [[RIGHT], [WRONG, REFLECTION, RIGHT], [WRONG, REFLECTION, WRONG], [WRONG, REFLECTION, RIGHT]]
    config = _config(tiny_model_dir, 1)
    worker = make_worker(config, ScriptedTokenServer(tiny_tokenizer, session_script(*rows)))
    batch = load_batch(_write_rows(tmp_path / "rows.parquet", n_rows=4), config, tiny_tokenizer)
    out = await rollout(worker, batch, n=1, validate=True)
    assert len(out) == 4, "validation keeps every episode, first-try successes included"
    infos = {key: [r[key] for r in out.non_tensor_batch["reward_extra_info"]] for key in ("acc", "first_try_acc")}
    metrics = process_validation_metrics([TOY] * 4, list(out.non_tensor_batch["uid"]), infos)[TOY]
    assert metrics["first_try_acc"]["mean@1"] == 0.25
    assert metrics["acc"]["mean@1"] == 0.75  # second-try accuracy: verl's val-core metric


async def test_empty_retry_prompt_gives_back_to_back_assistant_turns(tmp_path, tiny_model_dir, tiny_tokenizer):
    out, _, server, _ = await _run(
        tmp_path,
        tiny_model_dir,
        tiny_tokenizer,
        turn_script(WRONG, REFLECTION, RIGHT),
        extra=["++r3.retry_prompt=''"],
    )
    conversation = [
        {"role": "user", "content": QUESTION},
        {"role": "assistant", "content": WRONG},
        {"role": "user", "content": REFLECTION_PROMPT},
        {"role": "assistant", "content": REFLECTION},
        {"role": "assistant", "content": RIGHT},
    ]
    ids = _row_ids(out, 0)
    expected = _template_ids(tiny_tokenizer, conversation)
    assert expected[: len(ids)] == ids and tiny_tokenizer.decode(expected[len(ids) :]) == "\n"
    assert _credited_text(out, tiny_tokenizer, 0) == REFLECTION + "<|im_end|>"
    assert out.batch["rm_scores"][0].sum().item() == 1.0 and len(server.calls) == 3


def test_validation_flag_comes_from_the_worker_not_from_sampling():
    """A per-sample greedy training row (verl's ``__do_sample__=False``) samples like validation but trains."""
    from types import SimpleNamespace

    from r3_plugin.integration import session
    from r3_plugin.integration.agent_loop import R3AgentLoop

    val = SimpleNamespace(temperature=0, top_p=1.0, top_k=-1)
    loop = SimpleNamespace(rollout_config=SimpleNamespace(val_kwargs=val, temperature=1.0, top_p=1.0, top_k=-1))
    greedy = {"temperature": 0, "top_p": 1.0, "top_k": -1}
    token = session.validating.set(False)
    try:
        assert R3AgentLoop.is_validation(loop, greedy) is False
        session.validating.set(True)
        assert R3AgentLoop.is_validation(loop, {"temperature": 1.0, "top_p": 1.0, "top_k": -1}) is True
    finally:
        session.validating.reset(token)
    assert R3AgentLoop.is_validation(loop, greedy) is True  # no worker flag: the sampling fallback
