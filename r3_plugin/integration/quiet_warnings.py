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
"""Hide verl's start-up warnings that say nothing about an R3 run.

Every verl process warns once per optional training engine that is not installed (torchtitan,
veomni, automodel, mindspeed, megatron: ten lines), and ``main_ppo`` warns that the critic is off
because the estimator is not GAE, which R3's guard requires. Installed from the plugin entry point,
so it applies in every verl process, Ray workers included. Only these exact messages are hidden, and
only when the engine is missing (``ModuleNotFoundError``); ``R3_VERL_WARNINGS=1`` shows them again.
"""

from __future__ import annotations

import os
import warnings

#: verl/workers/engine/__init__.py: one per optional engine whose package is not installed.
OPTIONAL_ENGINE_MISSING = r"\w+ engine is not available: ModuleNotFoundError"
#: verl/trainer/main_ppo.py: R3 always runs a GRPO-style estimator, so the critic is meant to be off.
CRITIC_DISABLED = r"Disabled critic as algorithm\.adv_estimator != gae"

NOISE = (OPTIONAL_ENGINE_MISSING, CRITIC_DISABLED)


def install() -> bool:
    """Add the filters (unless ``R3_VERL_WARNINGS=1``); returns whether they were added."""
    if os.getenv("R3_VERL_WARNINGS", "0") == "1":
        return False
    for message in NOISE:
        warnings.filterwarnings("ignore", message=message, category=UserWarning)
    return True
