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
"""What R3's agent-loop worker and the ``r3_agent`` loop tell each other about one session.

verl's worker knows whether a session validates but does not pass it to ``AgentLoopBase.run``; the
loop knows why it drops a session (``run`` returns ``[]``) but cannot say so in its return value.
Each session runs in its own asyncio task, so two context variables carry both facts across the
``run`` call without touching verl's signatures: :class:`r3_plugin.integration.verl_worker.R3AgentLoopWorker`
sets :data:`validating` before ``run`` and reads :data:`drop_reason` after it.
"""

from __future__ import annotations

from contextvars import ContextVar

#: True/False when R3's worker runs the session; None under a worker that does not set it.
validating: ContextVar[bool | None] = ContextVar("r3_validating", default=None)
#: Why the loop dropped the session it just ran (None: not dropped).
drop_reason: ContextVar[str | None] = ContextVar("r3_drop_reason", default=None)

#: Prefix of the prompt-tag fields in which the worker records dropped sessions for the sampler.
DROP_TAG_PREFIX = "r3_dropped/"
