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
"""Chat backends for the failure miner and the evaluator: vLLM offline, OpenAI-compatible HTTP,
Hugging Face transformers, and a scripted backend for exact tests.

All of them implement :class:`~r3_plugin.tools.backends.base.ChatBackend`; wrap one in a
:class:`~r3_plugin.tools.backends.base.ChatConversation` to hand it to :func:`r3_plugin.policy.episode.run_episode`.
Heavy libraries (torch, transformers, vllm, httpx) are imported only when a backend is built.
"""

from r3_plugin.tools.backends.base import ChatBackend, ChatConversation, SamplingConfig
from r3_plugin.tools.backends.factory import BACKENDS, add_backend_arguments, make_backend, sampling_from_args

__all__ = [
    "BACKENDS",
    "ChatBackend",
    "ChatConversation",
    "SamplingConfig",
    "add_backend_arguments",
    "make_backend",
    "sampling_from_args",
]
