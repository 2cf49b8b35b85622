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
"""A token-level view of each training batch, as verl's trainer saw it: ids, mask, advantages, reward.

verl's ``trainer.rollout_data_dir`` dump holds decoded text and scores only, so it cannot show what
R3 trains. When that option is set and the config uses R3, this module extends verl's dump hook
(``PPOTrainer._log_rollout_data``, called after each step's metrics) to also write
``<rollout_data_dir>/r3_tokens/step_<N>.jsonl``: one line per trajectory with its prompt and response
token ids, ``response_mask``, per-token ``advantages`` and reward, read back from the trainer's own
TransferQueue batch. ``r3 demo`` and the trainer tests read it; :func:`read_step` loads a file.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

SUBDIR = "r3_tokens"
FIELDS = ("prompts", "responses", "response_mask", "advantages", "rm_scores", "extra_fields", "data_source")


def _rows(value: Any, lengths: list[int] | None = None) -> list[Any]:
    """Per-row Python lists from a nested (jagged) tensor, a padded tensor or a non-tensor stack."""
    import torch

    if isinstance(value, torch.Tensor):
        if value.is_nested:
            return [t.tolist() for t in value.unbind()]
        rows = value.tolist()
        if lengths is not None:
            rows = [row[:n] for row, n in zip(rows, lengths, strict=True)]
        return rows
    return list(value.tolist()) if hasattr(value, "tolist") else list(value)


def turn_markers(tokenizer: Any) -> dict[str, Any]:
    """Token ids that open an assistant turn and the end-of-turn id, from the chat template itself."""
    user = [{"role": "user", "content": "x"}]
    plain = tokenizer.apply_chat_template(user, add_generation_prompt=False, tokenize=False)
    opened = tokenizer.apply_chat_template(user, add_generation_prompt=True, tokenize=False)
    header = opened[len(plain) :] if opened.startswith(plain) else ""
    return {
        "assistant_header_ids": list(tokenizer(header, add_special_tokens=False)["input_ids"]),
        "end_of_turn_id": tokenizer.eos_token_id,
    }


def dump_batch(batch: Any, step: int, out_dir: str | os.PathLike, meta: Mapping[str, Any] | None = None) -> Path:
    """Write one training batch (a TransferQueue ``KVBatchMeta``) as JSON lines; returns the file.

    The first line is ``{"meta": ...}`` (e.g. :func:`turn_markers`), then one line per trajectory.
    """
    import transfer_queue as tq

    keep = [i for i, tag in enumerate(batch.tags) if not tag.get("is_padding", False)]
    keys = [batch.keys[i] for i in keep]
    target = Path(out_dir) / SUBDIR / f"step_{step}.jsonl"
    target.parent.mkdir(parents=True, exist_ok=True)
    lines: list[str] = [json.dumps({"meta": dict(meta or {})})]
    if keys:
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=list(FIELDS))
        responses = _rows(data["responses"])
        lengths = [len(r) for r in responses]
        columns = {
            "prompt_ids": _rows(data["prompts"]),
            "response_ids": responses,
            "response_mask": _rows(data["response_mask"], lengths),
            "advantages": _rows(data["advantages"], lengths),
            "reward": [float(sum(r)) for r in _rows(data["rm_scores"], lengths)],
            "extra_fields": _rows(data["extra_fields"]),
            "data_source": _rows(data["data_source"]),
        }
        for i, key in enumerate(keys):
            extra = columns["extra_fields"][i]
            record = extra.get("reward_extra_info", {}) if isinstance(extra, Mapping) else {}
            row = {
                "step": step,
                "key": key,
                "uid": key.split("_")[0],
                "data_source": columns["data_source"][i],
                "prompt_ids": columns["prompt_ids"][i],
                "response_ids": columns["response_ids"][i],
                "response_mask": [int(m) for m in columns["response_mask"][i]],
                "advantages": [round(float(a), 6) for a in columns["advantages"][i]],
                "reward": columns["reward"][i],
                "record": {k: v for k, v in record.items() if isinstance(v, (int, float, str, bool))},
            }
            lines.append(json.dumps(row))
    tmp = target.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(line + "\n" for line in lines))
    os.replace(tmp, target)
    return target


def read_step(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The trajectories of one dumped step (the meta line left out)."""
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [row for row in rows if "meta" not in row]


def install(trainer_module: Any) -> None:
    """Extend verl's rollout dump hook on ``PPOTrainer`` (idempotent); R3 configs only."""
    cls = trainer_module.PPOTrainer
    original = cls._log_rollout_data
    if getattr(original, "_r3_token_dump", False):
        return

    @functools.wraps(original)
    def _log_rollout_data(self, batch, timing_raw, rollout_data_dir):
        original(self, batch, timing_raw, rollout_data_dir)
        if self.config.get("r3", None) is not None and batch.partition_id == "train":
            dump_batch(batch, self.global_steps, rollout_data_dir, meta=turn_markers(self.tokenizer))

    _log_rollout_data._r3_token_dump = True  # type: ignore[attr-defined]
    cls._log_rollout_data = _log_rollout_data


def install_after_import() -> None:
    """Extend verl's dump hook once verl's v1 trainer is imported (the driver process only)."""
    from r3_plugin.cpu.import_hooks import after_import

    after_import("verl.trainer.ppo.v1.trainer_base", install)
