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
"""A toy R3 task a random tiny model sometimes passes, and a token-level rollout dump.

Used by the GPU end-to-end check (``scripts/gpu/README.md``). A random model never solves
countdown, so every reward is 0 and GRPO advantages are 0. This task, ``r3_toy_parity``, passes
when the response has an even number of characters: about half of random texts do, so rewards vary
within a GRPO group and the reflection tokens get non-zero advantages. It is registered through
r3-plugin's public registry (``r3_plugin.register_task``) with countdown's reflection and retry
prompts, so an episode's inserted messages are the same as in the countdown runs.

The ``r3_dump`` trainer mode is ``r3_sync`` plus one JSON-lines file per step with every
trajectory's response token ids, response mask, advantages and reward (verl's own
``trainer.rollout_data_dir`` dump has decoded text only). It is written after the step timer
stops, so it does not change ``timing_s/step``.

This module is loaded in every verl process through its own ``verl.plugins`` entry point
(``pyproject.toml`` next to it). ``python -m r3_toy_task SRC_DIR DST_DIR`` turns countdown parquet
files (``r3 data countdown``) into toy-task parquet files with the same prompts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from r3_plugin import VerifyResult, register_task
from r3_plugin.tasks import get_task

logger = logging.getLogger(__name__)

DATA_SOURCE = "r3_toy_parity"
TRAINER_MODE = "r3_dump"
DUMP_SUBDIR = "r3_tokens"

_countdown = get_task("countdown")


@register_task(
    DATA_SOURCE,
    reflection_prompt=_countdown.reflection_prompt,
    retry_prompt=_countdown.retry_prompt,
    plain_retry_prompt=_countdown.plain_retry_prompt,
    description="passes when the response has an even number of characters (GPU e2e check)",
    replace_existing=True,
)
def verify_parity(response: str, ground_truth: Any, extra_info: Any = None) -> VerifyResult:
    """Pass when ``len(response)`` is even (``ground_truth`` "even") or odd ("odd")."""
    want_even = str(ground_truth or "even").strip().lower() != "odd"
    ok = (len(response) % 2 == 0) == want_even
    return VerifyResult(ok, "correct" if ok else "wrong_parity", answer=str(len(response)))


def toy_rows(frame: Any) -> Any:
    """Countdown rows (verl format) turned into toy-task rows with the same prompts."""
    out = frame.copy()
    out["data_source"] = DATA_SOURCE
    out["reward_model"] = [{"style": "rule", "ground_truth": "even"} for _ in range(len(out))]
    out["agent_name"] = "r3_agent"
    return out


def build_toy_parquet(src: str, dst: str) -> int:
    """Write ``dst`` (atomically) from the countdown parquet ``src``; returns the row count."""
    import pandas as pd

    rows = toy_rows(pd.read_parquet(src))
    os.makedirs(os.path.dirname(os.path.abspath(dst)) or ".", exist_ok=True)
    tmp = f"{dst}.tmp-{os.getpid()}"
    rows.to_parquet(tmp)
    os.replace(tmp, dst)
    return len(rows)


# -- token-level dump ---------------------------------------------------------------------------


def tensor_rows(value: Any) -> list[list]:
    """Per-row Python lists from a jagged (nested) tensor, a padded tensor or a list."""
    if hasattr(value, "is_nested") and value.is_nested:
        return [t.tolist() for t in value.unbind()]
    if hasattr(value, "tolist"):
        value = value.tolist()
    return [list(v) if isinstance(v, list | tuple) else [v] for v in value]


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


def dump_records(
    step: int,
    keys: Sequence[str],
    responses: Any,
    masks: Any,
    advantages: Any,
    scores: Any,
) -> list[dict[str, Any]]:
    """One JSON-ready record per trajectory (response length trimmed to the mask's length)."""
    resp, mask, adv, score = (tensor_rows(x) for x in (responses, masks, advantages, scores))
    records = []
    for i, key in enumerate(keys):
        n = len(mask[i])
        records.append(
            {
                "step": int(step),
                "key": str(key),
                "response_ids": [int(t) for t in resp[i][:n]],
                "response_mask": [int(m) for m in mask[i][:n]],
                "advantages": [round(float(a), 6) for a in adv[i][:n]],
                "reward": float(sum(score[i])),
            }
        )
    return records


def write_dump(directory: str, step: int, records: list[dict], meta: dict[str, Any]) -> str:
    """Write ``step_<N>.jsonl`` (first line: meta) atomically; returns its path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, f"step_{step}.jsonl")
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as fh:
        fh.write(json.dumps({"meta": meta}) + "\n")
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    os.replace(tmp, path)
    return path


def _register_dump_trainer() -> None:
    from verl.trainer.ppo.v1.trainer_base import register_trainer

    from r3_plugin.trainer import R3SyncTrainer

    @register_trainer(TRAINER_MODE)
    class R3DumpTrainer(R3SyncTrainer):
        """``r3_sync`` plus a token-level dump of each training batch (after the step timer)."""

        def _compute_metrics(self, batch, metrics, timing_raw, global_steps, epoch):  # noqa: D401 - verl hook
            super()._compute_metrics(batch, metrics, timing_raw, global_steps, epoch)
            base = self.config.trainer.get("rollout_data_dir", None)
            if not base:
                return
            import transfer_queue as tq

            keep = [i for i, tag in enumerate(batch.tags) if not tag.get("is_padding", False)]
            if not keep:
                return
            keys = [batch.keys[i] for i in keep]
            fields = ["responses", "response_mask", "advantages", "rm_scores"]
            data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=fields)
            records = dump_records(global_steps, keys, *(data[f] for f in fields))
            write_dump(os.path.join(base, DUMP_SUBDIR), global_steps, records, turn_markers(self.tokenizer))


if __name__ != "__main__":  # `python -m r3_toy_task` only builds data (verl imports the module by name)
    try:
        _register_dump_trainer()
    except Exception as exc:  # the task must stay usable where verl's v1 trainer cannot be imported
        logger.warning("r3_toy_task: trainer mode %r not registered: %s: %s", TRAINER_MODE, type(exc).__name__, exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m r3_toy_task",
        description="Turn countdown parquet files (train.parquet, test.parquet) into r3_toy_parity files.",
    )
    parser.add_argument("src_dir", help="folder with countdown train.parquet / test.parquet (r3 data countdown)")
    parser.add_argument("dst_dir", help="where the toy-task train.parquet / test.parquet go")
    args = parser.parse_args(argv)
    for name in ("train.parquet", "test.parquet"):
        src = os.path.join(args.src_dir, name)
        if not os.path.exists(src):
            print(f"python -m r3_toy_task: {src} does not exist (run `r3 data countdown` first)", file=sys.stderr)
            return 2
        n = build_toy_parquet(src, os.path.join(args.dst_dir, name))
        print(f"{n} rows -> {os.path.join(args.dst_dir, name)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
