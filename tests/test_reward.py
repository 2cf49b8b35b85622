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
"""compute_score: verl's custom reward entry point, loaded and called the way verl 0.9.1 does."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from r3_plugin.integration.reward import compute_score
from r3_plugin.policy.tasks import CORRECT, NO_ANSWER, VERIFIER_ERROR, UnknownTaskError

COUNTDOWN_GT = {"target": 24, "numbers": [2, 3, 4]}
CALL = {"name": "get_weather", "arguments": {"city": "Paris"}}
FC_GT = json.dumps([CALL])
TOOLS = json.dumps(
    [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ]
)


def test_countdown_scores():
    good = compute_score("countdown", "<think>x</think><answer>2*3*4</answer>", COUNTDOWN_GT, {"index": 0})
    assert good == {"score": 1.0, "acc": 1.0, "category": CORRECT}
    bad = compute_score("countdown", "<answer>2+3+4</answer>", COUNTDOWN_GT)
    assert bad == {"score": 0.0, "acc": 0.0, "category": "wrong_target"}
    assert all(type(v) is float for v in (good["score"], good["acc"], bad["score"]))


def test_function_calling_scores_and_task_map():
    response = '<tool_call>{"name": "get_weather", "arguments": {"city": "paris"}}</tool_call>'
    extra = {"index": 3, "tools": TOOLS}
    assert compute_score("function_calling", response, FC_GT, extra)["category"] == "wrong_arguments"
    # The BFCL-style check, chosen per data source through verl's reward kwargs.
    relaxed = compute_score(
        "function_calling", response, FC_GT, extra, task_map={"function_calling": "function_calling_ast"}
    )
    assert relaxed["score"] == 1.0
    assert compute_score("function_calling_ast", response, FC_GT, extra)["score"] == 1.0


def test_unknown_data_source_names_itself():
    with pytest.raises(UnknownTaskError, match="'gsm8k'") as info:
        compute_score("gsm8k", "42", "42")
    assert "countdown" in str(info.value) and "function_calling" in str(info.value)


def test_hostile_inputs_return_a_score():
    assert compute_score("countdown", b"\xff\xfe<answer>2*3*4</answer>", COUNTDOWN_GT)["score"] == 1.0
    assert compute_score("countdown", None, COUNTDOWN_GT)["category"] == NO_ANSWER
    assert compute_score(np.str_("countdown"), "<answer>9**9**9**9</answer>", COUNTDOWN_GT)["score"] == 0.0
    # A broken ground truth is logged and scored 0 rather than killing the training step.
    assert compute_score("countdown", "<answer>1</answer>", {"target": 1})["category"] == VERIFIER_ERROR


def test_verl_loads_it_from_pkg_path():
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = OmegaConf.create(
        {
            "reward": {
                "custom_reward_function": {
                    "path": "pkg://r3_plugin.reward",
                    "name": "compute_score",
                    "reward_kwargs": {"task_map": {"function_calling": "function_calling_ast"}},
                }
            }
        }
    )
    fn = get_custom_reward_fn(config)
    response = '[{"name": "get_weather", "arguments": {"city": "PARIS"}}]'
    result = fn(data_source="function_calling", solution_str=response, ground_truth=FC_GT, extra_info={"tools": TOOLS})
    assert result["score"] == 1.0  # the DictConfig task_map was honoured


async def test_verl_naive_reward_manager_end_to_end(tiny_tokenizer):
    """verl's own reward manager decodes real token ids and calls compute_score with its kwargs."""
    from verl import DataProto
    from verl.experimental.reward_loop.reward_manager.naive import NaiveRewardManager
    from verl.trainer.ppo.reward import get_custom_reward_fn

    config = OmegaConf.create(
        {"reward": {"custom_reward_function": {"path": "pkg://r3_plugin.reward", "name": "compute_score"}}}
    )
    manager = NaiveRewardManager(config, tiny_tokenizer, get_custom_reward_fn(config))
    cases = [
        ("countdown", "<think> 2*3 = 6 </think> <answer> 2 * 3 * 4 </answer>", COUNTDOWN_GT, 1.0, CORRECT),
        ("countdown", "<answer> 2 + 3 + 4 </answer>", COUNTDOWN_GT, 0.0, "wrong_target"),
        ("function_calling", "<tool_call>" + json.dumps(CALL) + "</tool_call>", FC_GT, 1.0, CORRECT),
    ]
    for data_source, text, gt, score, category in cases:
        prompt_ids = tiny_tokenizer("Using the numbers", return_tensors="pt")["input_ids"]
        response_ids = tiny_tokenizer(text, return_tensors="pt")["input_ids"]
        assert tiny_tokenizer.decode(response_ids[0], skip_special_tokens=True) == text
        pad = torch.full((1, 4), tiny_tokenizer.pad_token_id or 0)
        responses = torch.cat([response_ids, pad], dim=1)
        attention = torch.cat(
            [torch.ones_like(prompt_ids), torch.ones_like(response_ids), torch.zeros_like(pad)], dim=1
        )
        data = DataProto.from_dict(
            tensors={"prompts": prompt_ids, "responses": responses, "attention_mask": attention},
            non_tensors={
                "data_source": np.array([data_source], dtype=object),
                "reward_model": np.array([{"style": "rule", "ground_truth": gt}], dtype=object),
                "extra_info": np.array([{"index": 0, "tools": TOOLS}], dtype=object),
            },
        )
        out = await manager.run_single(data)
        assert out["reward_score"] == score, (text, out)
        assert out["reward_extra_info"] == {"score": score, "acc": score, "category": category}
