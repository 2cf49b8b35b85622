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
"""Batch arithmetic and a GPU-memory estimate for a composed R3 config, checked on CPU before a GPU run.

verl's ``validate_config`` checks only part of the batch arithmetic; the rest fails inside the Ray
workers minutes later (``engine_workers.train_mini_batch`` asserts that each PPO mini-batch divides
over the data-parallel ranks). ``batch_plan`` checks all of it up front and names the keys.

Memory estimate (per GPU, GiB, stated in docs/recipes.md):
  actor    = 16 bytes x params / n_gpus   (FSDP full shard; verl keeps fp32 master weights (4), fp32
                                           grads (4) and Adam m, v (8); bf16 compute copies are transient)
  ref      =  4 bytes x params / n_gpus   (fp32 FSDP shard, forward only)
  act      = micro x seq x (layers x hidden x 2 + vocab x 8) x 1.25
             (one bf16 hidden state per layer kept by gradient checkpointing, fp32 logits and their
             gradient for the log-probs, 25% for the recomputed layer and allocator slack)
  rollout  = gpu_memory_utilization x GPU memory (vLLM's whole budget: weights / TP + KV cache)
  training phase = actor + ref + act + 1 GiB (vLLM asleep)       [offloaded parts count in full: they are
  rollout phase  = rollout + actor + ref                           loaded for their own phase only]
  peak = max(training phase, rollout phase)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

GIB = 1024**3


class SizingError(ValueError):
    """Batch sizes or parallelism that verl would reject (or crash on) at run time; names the keys."""


@dataclass(frozen=True)
class BatchPlan:
    """How one training step's trajectories split over GPUs."""

    n_gpus: int
    dp_size: int
    prompts_per_step: int
    trajectories_per_step: int
    mini_batches_per_step: int
    trajectories_per_mini_batch: int
    trajectories_per_gpu_per_mini_batch: int
    micro_batch_per_gpu: int
    grad_accumulation_steps: int
    rollout_tp: int
    rollout_replicas: int


def _req(config: Any, dotted: str) -> Any:
    node = config
    for part in dotted.split("."):
        node = node.get(part) if node is not None else None
    if node is None:
        raise SizingError(f"{dotted}: not set")
    return node


def batch_plan(config: Any) -> BatchPlan:
    """Check every divisibility verl relies on (1 node or N) and return the resulting plan."""
    errors: list[str] = []
    nodes = int(_req(config, "trainer.nnodes"))
    per_node = int(_req(config, "trainer.n_gpus_per_node"))
    n_gpus = nodes * per_node
    sp = int(config.actor_rollout_ref.actor.get("ulysses_sequence_parallel_size", 1) or 1)
    prompts = int(_req(config, "data.train_batch_size"))
    n = int(_req(config, "actor_rollout_ref.rollout.n"))
    mini = int(_req(config, "actor_rollout_ref.actor.ppo_mini_batch_size"))
    micro = int(_req(config, "actor_rollout_ref.actor.ppo_micro_batch_size_per_gpu"))
    tp = int(_req(config, "actor_rollout_ref.rollout.tensor_model_parallel_size"))
    trajectories = prompts * n
    if n_gpus % sp:
        errors.append(f"trainer GPUs ({n_gpus}) not divisible by actor.ulysses_sequence_parallel_size ({sp})")
    dp = max(n_gpus // sp, 1)
    if trajectories % n_gpus:
        errors.append(f"data.train_batch_size x rollout.n = {trajectories} not divisible by the GPU count {n_gpus}")
    if prompts < mini or prompts % mini:
        errors.append(f"data.train_batch_size ({prompts}) must be a multiple of actor.ppo_mini_batch_size ({mini})")
    mini_traj = mini * n
    if mini_traj % dp:
        errors.append(
            f"actor.ppo_mini_batch_size x rollout.n = {mini_traj} not divisible by the data-parallel size {dp}"
        )
    per_gpu = mini_traj // dp if dp else 0
    if micro < 1 or per_gpu < micro or per_gpu % micro:
        errors.append(
            f"actor.ppo_micro_batch_size_per_gpu ({micro}) must divide the per-GPU mini-batch "
            f"({mini_traj} trajectories / {dp} GPUs = {per_gpu})"
        )
    if per_node % tp or n_gpus % tp:
        errors.append(f"rollout.tensor_model_parallel_size ({tp}) must divide trainer.n_gpus_per_node ({per_node})")
    info = config.get("r3_model_info") or {}
    heads = info.get("num_attention_heads")
    if heads and heads % tp:
        errors.append(f"rollout.tensor_model_parallel_size ({tp}) must divide the model's {heads} attention heads")
    if errors:
        raise SizingError("; ".join(errors))
    return BatchPlan(
        n_gpus=n_gpus,
        dp_size=dp,
        prompts_per_step=prompts,
        trajectories_per_step=trajectories,
        mini_batches_per_step=prompts // mini,
        trajectories_per_mini_batch=mini_traj,
        trajectories_per_gpu_per_mini_batch=per_gpu,
        micro_batch_per_gpu=micro,
        grad_accumulation_steps=per_gpu // micro,
        rollout_tp=tp,
        rollout_replicas=n_gpus // tp,
    )


@dataclass(frozen=True)
class MemoryEstimate:
    """Per-GPU memory (GiB) by phase, from the method in the module docstring."""

    actor: float
    ref: float
    activations: float
    rollout: float
    training_phase: float
    rollout_phase: float
    peak: float
    host_offload: float


def memory_estimate(config: Any, gpu_gib: float = 80.0) -> MemoryEstimate:
    """Estimate per-GPU memory of a composed config whose ``r3_model_info`` gives the model's shape."""
    info = config.get("r3_model_info")
    if not info or not info.get("params_billion"):
        raise SizingError("r3_model_info.params_billion: not set (compose a +r3_model preset)")
    params = float(info["params_billion"]) * 1e9
    n_gpus = int(config.trainer.nnodes) * int(config.trainer.n_gpus_per_node)
    actor_cfg = config.actor_rollout_ref.actor
    ref_cfg = config.actor_rollout_ref.ref
    seq = int(config.data.max_prompt_length) + int(config.data.max_response_length)
    micro = int(actor_cfg.ppo_micro_batch_size_per_gpu)
    per_token = int(info["num_layers"]) * int(info["hidden_size"]) * 2 + int(info["vocab_size"]) * 8
    actor = 16 * params / n_gpus / GIB
    ref = 4 * params / n_gpus / GIB
    act = micro * seq * per_token * 1.25 / GIB
    rollout = float(config.actor_rollout_ref.rollout.gpu_memory_utilization) * gpu_gib
    actor_offload = bool(actor_cfg.fsdp_config.param_offload) and bool(actor_cfg.fsdp_config.optimizer_offload)
    ref_offload = bool(ref_cfg.fsdp_config.param_offload)
    training = actor + ref + act + 1.0
    rollout_phase = rollout + (0 if actor_offload else actor) + (0 if ref_offload else ref)
    host = (actor if actor_offload else 0) + (ref if ref_offload else 0)
    return MemoryEstimate(
        actor=round(actor, 1),
        ref=round(ref, 1),
        activations=round(act, 1),
        rollout=round(rollout, 1),
        training_phase=round(training, 1),
        rollout_phase=round(rollout_phase, 1),
        peak=round(max(training, rollout_phase), 1),
        host_offload=round(host, 1),
    )
