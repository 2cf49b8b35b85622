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
"""R3's agent-loop manager and worker for verl's v1 trainer: verl's TransferQueue worker plus two facts.

Wired in by the recipes through verl's own option
``actor_rollout_ref.rollout.agent.agent_loop_manager_class=r3_plugin.integration.verl_worker.R3AgentLoopManager``.
Everything verl's ``AgentLoopWorkerTQ`` does stays as it is; the subclass adds:

- the real ``validate`` flag for each session, through :data:`r3_plugin.integration.session.validating`, so the
  loop never has to guess validation from sampling parameters (a per-sample greedy training row is
  still training);
- a dropped session (``run`` returned ``[]``) is recorded in its prompt's TransferQueue tag with the
  loop's reason, instead of one "Empty output" warning per session;
  :class:`r3_plugin.integration.sampler.R3ReplayBuffer` turns those tags into exact per-step ``r3/*`` counts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import ray
import transfer_queue as tq
from verl.trainer.ppo.v1.agent_loop_tq import AgentLoopManagerTQ, AgentLoopWorkerTQ

from r3_plugin.integration import names, session

logger = logging.getLogger(__name__)

MANAGER_CLASS = names.MANAGER_CLASS


def _unwrap_actor_class(actor_cls: Any) -> type:
    """The plain class behind a ``@ray.remote`` class (Ray refuses subclasses of actor classes)."""
    modified = getattr(getattr(actor_cls, "__ray_metadata__", None), "modified_class", None)
    if modified is None:
        return actor_cls
    return modified.__mro__[1]


class R3AgentLoopWorker(_unwrap_actor_class(AgentLoopWorkerTQ)):  # type: ignore[misc]
    """verl's ``AgentLoopWorkerTQ`` that tells the loop it validates and records why sessions were dropped."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Must be defined here: with an inherited __init__, creating this actor through Ray fails in
        # the parent's zero-argument super() ("obj must be an instance or subtype of type").
        super().__init__(*args, **kwargs)
        # TransferQueue's kv_put reads a key's tag, updates it and writes it back whole, so two sessions
        # of one prompt tagging it at once lose one update. Tag writes from this worker take turns.
        self._tag_lock = asyncio.Lock()

    async def _run_agent_loop(self, sampling_params: dict[str, Any], trajectory: dict[str, Any], **kwargs: Any):
        session.validating.set(bool(trajectory["validate"]))
        session.drop_reason.set(None)
        return await super()._run_agent_loop(sampling_params, trajectory, **kwargs)

    async def _agent_loop_postprocess(self, output: Any, validate: bool, **kwargs: Any) -> None:
        if isinstance(output, list) and not output:
            await self._record_dropped_session(kwargs["uid"], kwargs["session_id"], validate)
            return None
        return await super()._agent_loop_postprocess(output, validate, **kwargs)

    async def _record_dropped_session(self, uid: str, session_id: int, validate: bool) -> None:
        reason = session.drop_reason.get() or "dropped_by_agent_loop"
        partition_id = "val" if validate else "train"
        # Every session writes its own field; all sessions of a prompt run in this worker, and verl
        # writes the prompt's final status only after all of them settled.
        async with self._tag_lock:
            await tq.async_kv_put(
                key=uid, partition_id=partition_id, tag={f"{session.DROP_TAG_PREFIX}{session_id}": reason}
            )
        logger.debug("r3: dropped session %s_%s (%s)", uid, session_id, reason)


class R3AgentLoopManager(AgentLoopManagerTQ):
    """verl's TransferQueue agent-loop manager, running :class:`R3AgentLoopWorker` actors."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.agent_loop_workers_class = ray.remote(R3AgentLoopWorker)
