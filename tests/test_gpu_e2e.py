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
"""CPU checks of the GPU end-to-end kit in scripts/gpu (it cannot run here; these catch its mistakes early).

- The exact ``main_ppo`` override lists of every stage (``scripts/gpu/overrides.py``, the ones ``e2e.sh``
  passes) compose through verl's config and pass verl's ``validate_config`` and r3-plugin's guard.
- The toy task registers through the public registry, its data builder keeps the prompts, and the
  single-turn data lets verl's ``default_agent_loop`` decide.
- The token-dump analysis finds advantage on reflection tokens only, on trajectories produced by
  verl's real AgentLoopWorker and GRPO estimator (scripted replies with varying rewards).
- ``report.py`` parses step lines printed by verl's own console logger and renders the cost ratio.
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
GPU = REPO / "scripts" / "gpu"
for folder in (GPU, REPO / "tests" / "toy_task_pkg"):  # the kit's scripts are not an installed package
    if str(folder) not in sys.path:
        sys.path.insert(0, str(folder))

import overrides  # noqa: E402
import prepare_data  # noqa: E402
import r3_toy_task  # noqa: E402
import report  # noqa: E402

from r3_plugin.integration.token_dump import turn_markers  # noqa: E402
from r3_plugin.policy.tasks import get_task  # noqa: E402
from r3_plugin.tools import show_config  # noqa: E402

MODEL = "/tmp/tiny-qwen"
DATA = "/tmp/e2e-data"


@pytest.mark.parametrize("stage", overrides.STAGES)
def test_stage_overrides_compose_and_validate(stage):
    items = overrides.stage_overrides(stage, model=MODEL, data_root=DATA, steps=3)
    config = show_config.compose(overrides.RECIPE, items)
    show_config.validate(config)  # guard + verl's validate_config + batch arithmetic; raises on a problem
    arr = config.actor_rollout_ref
    assert arr.model.path == MODEL
    assert config.trainer.total_training_steps == 3 and config.trainer.n_gpus_per_node == 1
    assert arr.rollout.name == "vllm" and config.algorithm.adv_estimator == "grpo"
    assert arr.model.use_remove_padding is False and arr.rollout.disable_log_stats is False
    expected_loop = "single_turn_agent" if stage == "base" else "r3_agent"
    assert arr.rollout.agent.default_agent_loop == expected_loop
    folder = {"r3": "countdown", "toy": "toy", "base": "single_turn"}[stage]
    assert config.data.train_files == f"{DATA}/{folder}/train.parquet"
    assert config.trainer.v1.trainer_mode == "sync"
    # the same number of trajectories per step in every stage
    assert config.data.train_batch_size * arr.rollout.n == overrides.PROMPTS_PER_STEP * overrides.GROUP_SIZE


def test_r3_stage_only_overrides_model_data_sizes_gpus():
    """The r3 stage is the recipe plus model, data, size and GPU-count keys (and the kit's/logging ones)."""
    allowed_prefixes = (
        "actor_rollout_ref.model.",
        "+actor_rollout_ref.model.",
        "actor_rollout_ref.actor.use_torch_compile",
        "actor_rollout_ref.actor.ppo_",
        "actor_rollout_ref.rollout.n=",
        "actor_rollout_ref.rollout.log_prob_micro",
        "actor_rollout_ref.ref.log_prob_micro",
        "actor_rollout_ref.rollout.gpu_memory_utilization",
        "actor_rollout_ref.rollout.enforce_eager",
        "actor_rollout_ref.rollout.agent.num_workers",
        "actor_rollout_ref.rollout.disable_log_stats",
        "data.",
        "r3.attempt_max_tokens",
        "r3.reflection_max_tokens",
        "r3.retry_max_tokens",
        "trainer.n_gpus_per_node",
        "trainer.nnodes",
        "trainer.total_training_steps",
        "trainer.save_freq",
        "trainer.experiment_name",
    )
    items = overrides.stage_overrides("r3", model=MODEL, data_root=DATA)
    assert [i for i in items if not i.startswith(allowed_prefixes)] == []
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert overrides.main(["r3", "--model", MODEL, "--data-root", DATA]) == 0
    assert printed.getvalue().splitlines() == ["+recipe=r3_countdown", *items]


def test_toy_task_registered_and_data(tmp_path):
    from r3_plugin.tools.data.countdown import build_countdown

    task = get_task(r3_toy_task.DATA_SOURCE)
    assert task.reflection_prompt == get_task("countdown").reflection_prompt
    assert task.verify("ab", "even").passed and not task.verify("abc", "even").passed
    assert task.verify("abc", "odd").passed

    paths = build_countdown(tmp_path / "countdown", train_size=12, test_size=4, seed=0, progress=False)
    assert prepare_data.main([str(tmp_path)]) == 0
    source = pd.read_parquet(paths["train"])
    toy = pd.read_parquet(tmp_path / "toy" / "train.parquet")
    single = pd.read_parquet(tmp_path / "single_turn" / "train.parquet")
    assert set(toy.data_source) == {r3_toy_task.DATA_SOURCE} and set(toy.agent_name) == {"r3_agent"}
    assert [list(p) for p in toy.prompt] == [list(p) for p in source.prompt]
    assert "agent_name" not in single.columns and len(single) == len(source)
    assert set(single.data_source) == {"countdown"}


@pytest.fixture(scope="module")
def toy_rollout(tiny_model_dir, tmp_path_factory):
    """Toy-task trajectories from verl's AgentLoopWorker (scripted replies) and verl's GRPO advantages."""
    import asyncio

    from transformers import AutoTokenizer

    from r3_plugin.local.local_rollout import (
        compose_config,
        grpo_advantages,
        load_batch,
        local_overrides,
        make_worker,
        rollout,
    )
    from r3_plugin.local.local_server import ScriptedTokenServer, session_script
    from r3_plugin.tools.data.countdown import build_countdown

    tmp = tmp_path_factory.mktemp("toy")
    paths = build_countdown(tmp / "countdown", train_size=2, test_size=1, seed=0, progress=False)
    r3_toy_task.build_toy_parquet(str(paths["train"]), str(tmp / "toy.parquet"))
    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    config = compose_config(local_overrides(str(tiny_model_dir), n=4, prompt_length=256, response_length=512))
    with contextlib.redirect_stdout(io.StringIO()):
        batch = load_batch(str(tmp / "toy.parquet"), config, tokenizer)
    odd, even = "abc", "abcd"  # first attempts fail (odd); retries pass (even) or fail (odd)
    sessions = [[odd, "I should count again.", even], [odd, "Count the letters.", odd]]
    server = ScriptedTokenServer(tokenizer, session_script(*sessions))
    out = asyncio.run(rollout(make_worker(config, server), batch, n=4))
    advantages = grpo_advantages(out, config)
    records = [
        {
            "step": 1,
            "key": f"k{i}",
            "response_ids": out.batch["responses"][i].tolist(),
            "response_mask": out.batch["response_mask"][i].tolist(),
            "advantages": [round(float(a), 6) for a in advantages[i].tolist()],
            "reward": float(out.batch["rm_scores"][i].sum()),
        }
        for i in range(len(out))
    ]
    return records, turn_markers(tokenizer)


def _write_dump(folder: Path, records: list[dict], meta: dict) -> Path:
    """``step_1.jsonl`` in the format r3_plugin.integration.token_dump writes (a meta line, then one line per row)."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps({"meta": meta})] + [json.dumps(r) for r in records]
    (folder / "step_1.jsonl").write_text("\n".join(lines) + "\n")
    return folder


def test_dump_analysis_finds_advantage_on_reflection_only(toy_rollout, tmp_path):
    records, meta = toy_rollout
    folder = _write_dump(tmp_path / "r3_tokens", records, meta)
    read, read_meta = report.read_dump(str(folder))
    assert read == records and read_meta == meta
    result = report.analyze_dump(read, read_meta)
    assert result["trajectories"] == 8 and result["full_episodes"] == 8
    assert result["rewards"] == [0.0, 1.0]
    assert result["with_nonzero_advantage"] == 8
    assert result["nonzero_advantage_outside_reflection"] == 0
    assert result["masked_tokens_outside_reflection"] == 0
    assert result["reflection_tokens_without_advantage_in_varied"] == 0
    assert result["only_reflection_has_advantage"] is True
    assert result["inserted_tokens_full_episode"] > 0 and result["generated_tokens_full_episode"] > 0

    # advantage on a first-attempt token is caught
    tampered = json.loads(json.dumps(read))
    tampered[0]["advantages"][0] = 0.5
    assert report.analyze_dump(tampered, read_meta)["only_reflection_has_advantage"] is False


def _console_lines(metrics_by_step: dict[int, dict], prefix: str = "(TaskRunner pid=4242) ") -> list[str]:
    """What verl's Tracking console backend prints for these metrics (captured), with Ray's line prefix."""
    from verl.utils.tracking import Tracking

    tracker = Tracking(project_name="p", experiment_name="e", default_backend=["console"])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        for step, metrics in metrics_by_step.items():
            tracker.log(data=metrics, step=step)
    return [prefix + line for line in printed.getvalue().splitlines()]


def test_parse_step_lines_reads_verl_console_logger():
    metrics = {
        "timing_s/step": np.float64(15.25),
        "timing_s/gen": 4.5,
        "response_length/mean": np.float32(812.5),
        "r3/first_try_success_rate": 0.0,
        "r3/episodes": np.int64(128),
        "critic/score/mean": float("nan"),
        "training/global_step": 2,
        "actor/pg_clipfrac": True,
        "val-core/countdown/acc/mean@1": 0.125,
        "text_is_skipped": "not a number",
    }
    lines = ["INFO noise", *_console_lines({2: metrics})]
    parsed = report.parse_step_lines(lines)
    got = parsed[2]
    assert got["timing_s/step"] == 15.25 and got["timing_s/gen"] == 4.5
    assert got["response_length/mean"] == 812.5 and got["r3/episodes"] == 128.0
    assert got["val-core/countdown/acc/mean@1"] == 0.125 and got["actor/pg_clipfrac"] == 1.0
    assert np.isnan(got["critic/score/mean"]) and "text_is_skipped" not in got


def _write_logs(folder: Path, toy_rollout) -> None:
    def steps(step_s, length, extra=None):
        return {s: {"timing_s/step": step_s * (4 if s == 1 else 1), "timing_s/gen": step_s / 3,
                    "response_length/mean": length, **(extra or {})} for s in (1, 2, 3)}  # fmt: skip

    r3 = _console_lines(steps(20.0, 900.0, {"r3/retry_success_rate": 0.0, "r3/episodes": 128}))
    r3 += ["(vLLMHttpServer pid=7) INFO Engine 000: Avg prompt throughput: 10.0 tokens/s, Avg generation "
           "throughput: 5000.0 tokens/s, Running: 3 reqs, Prefix cache hit rate: 61.5%"]  # fmt: skip
    (folder / "r3.log").write_text("\n".join(r3 + ["stage r3: exit 0 after 400 s"]) + "\n")
    (folder / "base.log").write_text(
        "\n".join(_console_lines(steps(16.0, 1000.0))) + "\nstage base: exit 0 after 380 s\n"
    )
    (folder / "toy.log").write_text("\n".join(_console_lines(steps(18.0, 700.0, {"critic/score/mean": 0.5}))) + "\n")
    records, meta = toy_rollout
    _write_dump(folder / "toy_dump" / "r3_tokens", records, meta)
    (folder / "tools").mkdir()
    tp = {
        "raw_mine": {"requests": 512, "generated_tokens": 131072, "wall_s": 4.0, "tokens_per_s": 32768.0},
        "mine": {"requests": 512, "generated_tokens": 131072, "wall_s": 4.2, "tokens_per_s": 31207.6},
        "raw_eval": {"requests": 128, "generated_tokens": 32768, "wall_s": 1.0, "tokens_per_s": 32768.0},
        "evaluate": {"requests": 384, "generated_tokens": 98304, "wall_s": 3.3, "tokens_per_s": 29789.1},
        "mine_vs_raw": 0.952,
        "evaluate_vs_raw": 0.909,
    }
    (folder / "tools" / "throughput.json").write_text(json.dumps(tp))


def test_render_report(toy_rollout, tmp_path):
    _write_logs(tmp_path, toy_rollout)
    dump = report.analyze_dump(*toy_rollout)
    cost = report.cost_summary(
        report.parse_step_lines((tmp_path / "r3.log").read_text().splitlines()),
        report.parse_step_lines((tmp_path / "base.log").read_text().splitlines()),
        dump,
    )
    assert cost["step_s_r3"] == 20.0 and cost["step_s_single_turn"] == 16.0  # step 1 (warm-up) left out
    assert cost["ratio_per_response_token"] == pytest.approx((20.0 / 900.0) / (16.0 / 1000.0))
    gen = 900.0 - dump["inserted_tokens_full_episode"]
    assert cost["ratio_per_generated_token"] == pytest.approx((20.0 / gen) / (16.0 / 1000.0))

    out = tmp_path / "REPORT.md"
    assert report.main(["--logs", str(tmp_path), "--output", str(out)]) == 0
    text = out.read_text()
    assert "| timing_s/step | 20.00 | 16.00 |" in text
    assert "R3 hit rate max 61.5%" in text
    assert "| r3/retry_success_rate |" in text
    assert "Only reflection tokens carry advantage: **yes**" in text
    assert "mine / raw = 0.952, evaluate / raw = 0.909" in text
