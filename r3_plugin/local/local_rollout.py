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
"""Run the ``r3_agent`` loop through verl's own AgentLoopWorker, in process, on CPU.

This is the path verl's trainer takes (RLHFDataset rows, ``collate_fn``, repeat by ``rollout.n``,
``AgentLoopWorker.generate_sequences``, verl's postprocessing into a ``DataProto``), minus Ray and
the GPU servers: the LLM server is an in-process stand-in from :mod:`r3_plugin.local.local_server`.
The CPU demo, the tests and the loop benchmark use it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
from omegaconf import DictConfig

DEFAULT_RECIPE = "r3_countdown"


def verl_config_dir() -> str:
    import verl

    return os.path.join(os.path.dirname(verl.__file__), "trainer", "config")


def compose_config(overrides: Sequence[str] = (), recipe: str | None = DEFAULT_RECIPE) -> DictConfig:
    """Compose verl's ``ppo_trainer`` config with an R3 recipe, as ``main_ppo`` would."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    items = ([f"+recipe={recipe}"] if recipe else []) + list(overrides)
    if GlobalHydra.instance().is_initialized():
        GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=verl_config_dir(), version_base=None):
        return compose("ppo_trainer", overrides=items)


def local_overrides(model_path: str, *, n: int, prompt_length: int = 512, response_length: int = 1024) -> list[str]:
    """The overrides that point a recipe at a local model and CPU-sized lengths."""
    return [
        f"actor_rollout_ref.model.path={model_path}",
        f"actor_rollout_ref.rollout.n={n}",
        f"actor_rollout_ref.rollout.prompt_length={prompt_length}",
        f"actor_rollout_ref.rollout.response_length={response_length}",
        f"data.max_prompt_length={prompt_length}",
        f"data.max_response_length={response_length}",
        "actor_rollout_ref.rollout.agent.num_workers=1",
    ]


def load_batch(parquet_path: str, config: DictConfig, tokenizer: Any, limit: int | None = None) -> dict[str, Any]:
    """Read rows with verl's RLHFDataset and collate them as the trainer's dataloader does."""
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    dataset = RLHFDataset(data_files=[parquet_path], tokenizer=tokenizer, config=config.data, processor=None)
    if len(dataset) == 0:
        raise ValueError(
            f"{parquet_path}: no rows left after verl's RLHFDataset filters "
            f"(data.max_prompt_length={config.data.max_prompt_length}, "
            f"filter_overlong_prompts={config.data.get('filter_overlong_prompts')}); raise the prompt length"
        )
    count = len(dataset) if limit is None else min(limit, len(dataset))
    return collate_fn([dataset[i] for i in range(count)])


def make_worker(config: DictConfig, server: Any):
    """verl's AgentLoopWorker, able to drop sessions the way the v1 trainer does.

    ``worker.dropped`` counts dropped sessions by the loop's reason
    (:data:`r3_plugin.integration.session.drop_reason`).
    """
    from collections import Counter

    from verl.experimental.agent_loop.agent_loop import AgentLoopWorker

    from r3_plugin.integration import session

    class _Worker(AgentLoopWorker):
        async def _run_agent_loop(self, sampling_params, trajectory, **kwargs):
            session.validating.set(bool(trajectory["validate"]))  # as R3's v1 worker does
            session.drop_reason.set(None)
            return await super()._run_agent_loop(sampling_params, trajectory, **kwargs)

        async def _agent_loop_postprocess(self, output, validate, **kwargs):
            if isinstance(output, list):  # v1 semantics: [] drops the session, else the last one counts
                if not output:
                    self.dropped[session.drop_reason.get() or "dropped_by_agent_loop"] += 1
                    return None
                output = output[-1]
            return await super()._agent_loop_postprocess(output, validate, **kwargs)

        def _postprocess(self, inputs, input_non_tensor_batch=None, validate=False):
            keep = [i for i, item in enumerate(inputs) if item is not None]
            self.kept_indices = keep
            if not keep:
                return None
            if input_non_tensor_batch is not None:
                input_non_tensor_batch = {k: v[keep] for k, v in input_non_tensor_batch.items()}
            return super()._postprocess([inputs[i] for i in keep], input_non_tensor_batch, validate)

    worker = _Worker(config, llm_client=server)
    worker.dropped = Counter()
    return worker


async def rollout(worker: Any, batch_dict: dict[str, Any], *, n: int, validate: bool = False):
    """Repeat each prompt ``n`` times (one GRPO group per prompt) and run the agent loops.

    Returns verl's ``DataProto`` of the sessions that were not dropped (None if all were), with
    ``uid`` in its non-tensor batch; ``worker.kept_indices`` says which sessions survived.
    """
    from verl import DataProto

    data = DataProto.from_single_dict(dict(batch_dict))
    data.non_tensor_batch["uid"] = np.array([str(uuid.uuid4()) for _ in range(len(data))], dtype=object)
    data = data.repeat(repeat_times=n, interleave=True)
    data.meta_info["validate"] = validate
    return await worker.generate_sequences(data)


def grpo_advantages(output: Any, config: DictConfig):
    """GRPO advantages with verl's own estimator, from the rollout's rm_scores."""
    import torch
    from verl.trainer.ppo.core_algos import compute_grpo_outcome_advantage

    scores = output.batch["rm_scores"].to(torch.float32)
    mask = output.batch["response_mask"]
    norm = bool(config.algorithm.get("norm_adv_by_std_in_grpo", True))
    advantages, _ = compute_grpo_outcome_advantage(
        token_level_rewards=scores,
        response_mask=mask,
        index=output.non_tensor_batch["uid"],
        norm_adv_by_std_in_grpo=norm,
    )
    return advantages
