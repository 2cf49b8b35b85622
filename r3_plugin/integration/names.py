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
"""The names verl knows R3 by, in one place: the recipes set them, the guard insists on them.

Import-light on purpose (the guard loads during ``import verl``): plain strings, no verl import.
"""

from __future__ import annotations

from r3_plugin.policy.config import AGENT_NAME

__all__ = ["AGENT_NAME", "MANAGER_CLASS", "SAMPLER_NAME", "SAMPLER_PATH", "TRAINER_MODE"]

#: ``trainer.v1.trainer_mode``: verl's own sync trainer.
TRAINER_MODE = "sync"
#: ``actor_rollout_ref.rollout.agent.agent_loop_manager_class`` (:mod:`r3_plugin.integration.verl_worker`).
MANAGER_CLASS = "r3_plugin.integration.verl_worker.R3AgentLoopManager"
#: ``trainer.v1.sampler.custom_sampler`` (:mod:`r3_plugin.integration.sampler`).
SAMPLER_PATH = "pkg://r3_plugin.integration.sampler"
SAMPLER_NAME = "R3ReplayBuffer"
