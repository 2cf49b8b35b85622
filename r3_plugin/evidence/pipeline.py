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
"""The CPU evidence run in one command: SFT -> evaluate -> R3 through verl's trainer -> evaluate -> compare.

    python -m r3_plugin.evidence.pipeline --output-dir runs/evidence --seed 0

Stages (each skipped when its output already exists, so a killed run resumes where it stopped):

1. ``sft``: ``python -m r3_plugin.evidence.sft --recipe cpu`` -> OUTPUT_DIR/sft-stage1/model (first
   attempts), then ``--recipe cpu-fix --init-from`` that model (``--sft2-steps``; reflections that
   restate the task, retried without a retry prompt) -> OUTPUT_DIR/sft/{model,data,train_log.jsonl}
2. ``before``: ``r3 evaluate run --backend vllm`` of the SFT model on the held-out test split
   (first try, retry without reflection, reflect-then-retry; Wilson 95% intervals; greedy) -> OUTPUT_DIR/eval-sft
3. ``rl``: ``python -m verl.trainer.main_ppo +recipe=r3_countdown +r3_scale=cpu`` (online R3 on the RL
   split; validation on the dev split, never the test split), HF actor saved at the last step and
   copied to OUTPUT_DIR/rl-<credit>/model
4. ``after``: the same evaluation of the R3 model -> OUTPUT_DIR/eval-r3-<credit>
5. ``compare``: ``r3 evaluate compare`` -> OUTPUT_DIR/compare/{compare.md,compare.json,compare.png}
6. ``sampled``: both evaluations again at ``--sampled-temperature`` (R3's rollout temperature) ->
   OUTPUT_DIR/eval-*-tT, OUTPUT_DIR/compare-tT
7. ``given``: the SFT model evaluated with the true restatement written in place of its reflection
   (``--given-reflection``): what its retry does after the best reflection of the kind it learnt, a
   bound on what training the reflection can reach -> OUTPUT_DIR/eval-sft-given, OUTPUT_DIR/compare-given
8. ``plot``: the training curve (reward, retry success, validation) from verl's metrics -> OUTPUT_DIR/curve.png,
   and OUTPUT_DIR/reflections.md (failed episodes by kind of reflection, per R3 step and per evaluation)

Training and evaluation pose the episode the way the SFT model learnt it (``model_prompts``: its
corpus's retry prompt). ``--ablation`` adds ``r3.credit=reflection_and_retry`` as a second RL run
(and its evaluations). Every stage's command and wall time go to OUTPUT_DIR/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from r3_plugin.evidence.corpus import RESTATEMENT
from r3_plugin.local.trainer_run import prompt_overrides, validation_metric
from r3_plugin.tools.data.countdown import model_prompts

STAGES = ("sft", "before", "rl", "after", "compare", "sampled", "given", "plot")
CREDITS = ("reflection", "reflection_and_retry")
RESULTS_FILE = "results.json"
#: The second SFT stage's recipe (r3_plugin.evidence.sft.RECIPES): reflections that restate the task.
SFT2_RECIPE = "cpu-fix"
#: Per-turn token caps for evaluation and training: an attempt of the "steps" format is ~40 tokens.
TURN_TOKENS = 64


# ----------------------------------------------------------------------------------------- commands


def sft_command(
    run_dir: Path, seed: int, extra: Sequence[str] = (), python: str | None = None, recipe: str = "cpu"
) -> list[str]:
    return [
        python or sys.executable,
        "-m",
        "r3_plugin.evidence.sft",
        "--recipe",
        recipe,
        "--output-dir",
        str(run_dir),
        "--seed",
        str(seed),
        "--no-progress",
        *extra,
    ]


def evaluate_command(
    model: Path,
    data: Path,
    out_dir: Path,
    label: str,
    seed: int,
    python: str | None = None,
    limit: int | None = None,
    prompts: Mapping[str, str] | None = None,
    temperature: float | None = None,
    given_reflection: str | None = None,
) -> list[str]:
    """``r3 evaluate run`` with the vLLM backend (greedy unless ``temperature``); ``prompts`` (e.g.
    ``{"retry_prompt": ""}``) pose the episode the way the model was trained; ``given_reflection``
    (a template) replaces the model's reflection."""
    cmd = [
        python or sys.executable,
        "-m",
        "r3_plugin",
        "evaluate",
        "run",
        "--model",
        str(model),
        "--backend",
        "vllm",
        "--data",
        str(data),
        "--output-dir",
        str(out_dir),
        "--label",
        label,
        "--max-tokens",
        str(TURN_TOKENS),
        "--max-model-len",
        "1024",
        "--seed",
        str(seed),
        "--no-progress",
    ]
    if limit:
        cmd += ["--limit", str(limit)]
    for key, text in (prompts or {}).items():
        cmd += ["--" + key.replace("_", "-"), text]
    if given_reflection is not None:
        cmd += ["--given-reflection", given_reflection]
    if temperature:
        cmd += ["--temperature", str(temperature)]
    return cmd


def rl_overrides(
    *,
    steps: int,
    credit: str,
    seed: int,
    batch: int,
    group: int,
    lr: float,
    val_samples: int,
    prompts: Mapping[str, str] | None = None,
) -> list[str]:
    """main_ppo overrides after ``+recipe=r3_countdown +r3_scale=cpu``: online R3, HF actor saved at the
    end; ``prompts`` (e.g. ``{"retry_prompt": ""}``) pose the episode the way the model was trained."""
    if credit not in CREDITS:
        raise ValueError(f"credit must be one of {CREDITS}, got {credit!r}")
    return [
        *prompt_overrides(prompts or {}),
        f"r3.credit={credit}",
        f"r3.attempt_max_tokens={TURN_TOKENS}",
        f"r3.reflection_max_tokens={TURN_TOKENS}",
        f"r3.retry_max_tokens={TURN_TOKENS}",
        f"data.train_batch_size={batch}",
        f"data.seed={seed}",
        f"data.val_max_samples={val_samples}",
        f"actor_rollout_ref.actor.ppo_mini_batch_size={batch}",
        f"actor_rollout_ref.rollout.n={group}",
        f"actor_rollout_ref.actor.optim.lr={lr}",
        "actor_rollout_ref.actor.checkpoint.save_contents=[model,extra,hf_model]",
        f"trainer.total_training_steps={steps}",
        f"trainer.save_freq={steps}",
        f"trainer.test_freq={steps}",
        "trainer.val_before_train=True",
        "trainer.resume_mode=disable",
        f"trainer.experiment_name=evidence-{credit}",
    ]


def run_label(credit: str) -> str:
    """How reports name the model R3 trained with ``credit``."""
    return "SFT + R3" if credit == "reflection" else f"SFT + R3 ({credit})"


# ----------------------------------------------------------------------------------------- results


def load_results(out: Path) -> dict[str, Any]:
    path = out / RESULTS_FILE
    if path.exists():
        return json.loads(path.read_text())
    return {"stages": {}}


def save_results(out: Path, results: Mapping[str, Any]) -> None:
    path = out / RESULTS_FILE
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n")
    os.replace(tmp, path)


def _say(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def run_logged(command: Sequence[str], log: Path, env: Mapping[str, str] | None = None) -> tuple[int, float]:
    """Run ``command`` with its output appended to ``log``; returns (exit code, seconds)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "ab") as fh:
        fh.write(("$ " + shlex.join(command) + "\n").encode())
        fh.flush()
        rc = subprocess.call(list(command), stdout=fh, stderr=subprocess.STDOUT, env=dict(env or os.environ))
    return rc, round(time.monotonic() - started, 1)


# ----------------------------------------------------------------------------------------- RL model


def find_hf_actor(ckpt_dir: Path) -> Path | None:
    """The newest ``global_step_N/actor/huggingface`` with weights, or None."""
    found = []
    for d in ckpt_dir.glob("global_step_*/actor/huggingface"):
        if any(d.glob("*.safetensors")) or any(d.glob("*.bin")):
            found.append((int(d.parent.parent.name.rsplit("_", 1)[1]), d))
    return max(found)[1] if found else None


def export_rl_model(hf_dir: Path, sft_model: Path, target: Path, metadata: Mapping[str, Any]) -> Path:
    """Re-save verl's HF actor in float32 with the SFT model's tokenizer and generation config, so that
    vLLM, transformers and the demo load it exactly like the SFT model."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tmp = target.parent / f".{target.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.generation_config = type(model.generation_config).from_pretrained(sft_model)
    model.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(sft_model).save_pretrained(tmp)
    (tmp / "r3_evidence.json").write_text(json.dumps(dict(metadata), indent=2) + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return target


# ----------------------------------------------------------------------------------------- curve


def curve_series(steps: Mapping[int, Mapping[str, Any]]) -> dict[str, list[tuple[int, float]]]:
    """Per-step training series and validation points from verl's merged step metrics."""
    series: dict[str, list[tuple[int, float]]] = {
        "reward": [],
        "retry_success": [],
        "first_try": [],
        "val_first_try": [],
        "val_second_try": [],
    }
    keys = {
        "reward": "r3/reward/mean",
        "retry_success": "r3/retry_success_rate",
        "first_try": "r3/first_try_success_rate",
    }
    for step in sorted(steps):
        m = steps[step]
        for name, key in keys.items():
            if key in m and step > 0:
                series[name].append((step, float(m[key])))
        for name, metric in (("val_first_try", "first_try_acc"), ("val_second_try", "second_try_acc")):
            value = validation_metric(m, metric)
            if value is not None:
                series[name].append((step, value))
    return series


def plot_curve(runs: Mapping[str, Mapping[int, Mapping[str, Any]]], path: Path) -> Path:
    """Training reward and retry success per step (left), greedy dev validation (right), one line per run."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for label, steps in runs.items():
        s = curve_series(steps)
        for name, style in (("reward", "-"), ("retry_success", "--")):
            if s[name]:
                xs, ys = zip(*s[name], strict=True)
                left.plot(xs, ys, style, marker=".", label=f"{label}: {name.replace('_', ' ')}")
        for name, style in (("val_first_try", ":"), ("val_second_try", "-")):
            if s[name]:
                xs, ys = zip(*s[name], strict=True)
                right.plot(xs, ys, style, marker="o", label=f"{label}: {name[4:].replace('_', ' ')}")
    left.set(title="R3 training (sampled episodes, temperature 1)", xlabel="step", ylabel="rate", ylim=(-0.02, 1.02))
    right.set(title="validation on dev tasks (greedy)", xlabel="step", ylabel="accuracy", ylim=(-0.02, 1.02))
    for ax in (left, right):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------------------- stages


def _eval_done(out_dir: Path) -> bool:
    return (out_dir / "summary.json").exists()


def run_pipeline(args: argparse.Namespace) -> int:
    from r3_plugin.local.trainer_run import TrainerRun, main_ppo_command, read_metrics, run_env

    out = Path(args.output_dir).expanduser().resolve()
    out.mkdir(parents=True, exist_ok=True)
    results = load_results(out)
    results.update(
        seed=args.seed, argv=["python", "-m", "r3_plugin.evidence.pipeline", *getattr(args, "argv", sys.argv[1:])]
    )
    stages = results.setdefault("stages", {})
    wanted = set(args.stages.split(",")) if args.stages else set(STAGES)
    unknown = wanted - set(STAGES)
    if unknown:
        raise SystemExit(f"--stages: unknown {sorted(unknown)}; known: {', '.join(STAGES)}")
    forced = set(args.force.split(",")) if args.force else set()
    credits = list(CREDITS) if args.ablation else [CREDITS[0]]
    sft_dir = out / "sft"
    sft_model, data = sft_dir / "model", sft_dir / "data"

    def record(name: str, command: Sequence[str] | None, seconds: float, **extra: Any) -> None:
        stages[name] = {"command": shlex.join(command) if command else None, "seconds": seconds, **extra}
        results["total_seconds"] = round(sum(s.get("seconds") or 0 for s in stages.values()), 1)
        save_results(out, results)

    def fail(name: str, rc: int, log: Path) -> int:
        record(name, None, 0, status=f"failed (exit {rc})", log=str(log))
        _say(f"{name}: FAILED (exit {rc}); see {log}")
        return rc or 1

    def evaluate(
        name: str,
        stage: str,
        model: Path,
        target: Path,
        label: str,
        temperature: float | None = None,
        given_reflection: str | None = None,
    ) -> int:
        """``r3 evaluate run`` of ``model`` on the test split into ``target``, posed as the SFT model
        learnt the episode; skipped when done (unless ``stage`` is forced). Returns the exit code."""
        if _eval_done(target) and stage not in forced:
            _say(f"{name}: done ({target})")
            return 0
        cmd = evaluate_command(
            model,
            data / "test.parquet",
            target,
            label,
            args.seed,
            limit=args.eval_limit,
            prompts=model_prompts(sft_model),
            temperature=temperature,
            given_reflection=given_reflection,
        )
        _say(f"{name}: " + shlex.join(cmd))
        log = out / "logs" / f"{target.name}.log"
        rc, secs = run_logged(cmd, log)
        if rc:
            return fail(name, rc, log)
        record(name, cmd, secs, summary=str(target / "summary.json"))
        _say(f"{name}: done in {secs:.0f} s")
        return 0

    def compare(name: str, runs: Sequence[Path], target: Path, labels: Sequence[str] = ()) -> int:
        """``r3 evaluate compare`` of ``runs`` into ``target``; returns the exit code."""
        cmd = [sys.executable, "-m", "r3_plugin", "evaluate", "compare", *map(str, runs)]
        cmd += (["--labels", ",".join(labels)] if labels else []) + ["--output-dir", str(target)]
        log = out / "logs" / f"{target.name}.log"
        rc, secs = run_logged(cmd, log)
        if rc:
            return fail(name, rc, log)
        record(name, cmd, secs, table=str(target / "compare.md"))
        _say(f"{name}:\n" + (target / "compare.md").read_text())
        return 0

    # 1. SFT (optionally in two stages: the second continues the first's model with its own schedule)
    sft_runs: list[tuple[str, Path, list[str], str]] = []
    extra = shlex.split(args.sft_args or "")
    if args.sft2_steps:
        stage1 = out / "sft-stage1"
        cont = ["--init-from", str(stage1 / "model"), "--steps", str(args.sft2_steps), "--lr", str(args.sft2_lr)]
        cont += shlex.split(args.sft2_args or "")
        sft_runs = [("sft-stage1", stage1, extra, "cpu"), ("sft", sft_dir, cont, SFT2_RECIPE)]
    else:
        sft_runs = [("sft", sft_dir, extra, "cpu")]
    final_done = (sft_model / "config.json").exists() and "sft" not in forced
    for name, run_dir, flags, recipe in sft_runs if "sft" in wanted else []:
        model_dir = run_dir / "model"
        if final_done and run_dir != sft_dir:  # the stage that continues it is done: nothing to redo
            continue
        if (model_dir / "config.json").exists() and "sft" not in forced:
            _say(f"{name}: done ({model_dir})")
            meta_path = model_dir / "r3_evidence.json"
            if name not in stages and meta_path.exists():  # trained before this pipeline ran: take its record
                meta = json.loads(meta_path.read_text())
                secs = sum((meta.get("seconds") or {}).values())
                record(name, None, round(secs, 1), model=str(model_dir), sft_command=meta.get("command"))
        else:
            cmd = sft_command(run_dir, args.seed, flags, recipe=recipe)
            _say(f"{name}: " + shlex.join(cmd))
            rc, secs = run_logged(cmd, out / "logs" / f"{name}.log")
            if rc:
                return fail(name, rc, out / "logs" / f"{name}.log")
            record(name, cmd, secs, model=str(model_dir))
            _say(f"{name}: done in {secs:.0f} s")

    # 2. before
    evals = {"sft": out / "eval-sft"}
    if "before" in wanted and (rc := evaluate("before", "before", sft_model, evals["sft"], "SFT")):
        return rc

    # 3. RL and 4. after, per credit rule
    for credit in credits:
        rl_dir = out / f"rl-{credit}"
        rl_model = rl_dir / "model"
        stage = f"rl-{credit}"
        if "rl" in wanted:
            if (rl_model / "config.json").exists() and "rl" not in forced:
                _say(f"{stage}: done ({rl_model})")
            else:
                if "rl" in forced:
                    shutil.rmtree(rl_dir, ignore_errors=True)
                overrides = rl_overrides(
                    steps=args.rl_steps,
                    credit=credit,
                    seed=args.seed,
                    batch=args.rl_batch,
                    group=args.rl_group,
                    lr=args.rl_lr,
                    val_samples=args.val_samples,
                    prompts=model_prompts(sft_model),
                )
                cmd = main_ppo_command(
                    "r3_countdown",
                    model=sft_model,
                    train_files=data / "train.parquet",
                    val_files=data / "dev.parquet",
                    out_dir=rl_dir,
                    overrides=overrides,
                )
                _say(f"{stage}: " + shlex.join(cmd))
                # A Ray temp dir of its own: other verl runs on the machine must not share its cluster.
                env = run_env(
                    rl_dir, {"RAY_TMPDIR": os.environ.get("R3_EVIDENCE_RAY_TMPDIR", f"/tmp/ray-ev{os.getpid()}")}
                )
                run = TrainerRun(cmd, rl_dir, env).start()
                for item in run.follow_steps(poll_s=10):
                    if item is None:
                        continue
                    step, m = item
                    if step == 0:
                        first, second = validation_metric(m, "first_try_acc"), validation_metric(m, "second_try_acc")
                        _say(f"{stage}: validation before training: first {first:.3f}, second {second:.3f}")
                        continue
                    nan = float("nan")
                    reward, retry = m.get("r3/reward/mean", nan), m.get("r3/retry_success_rate", nan)
                    _say(
                        f"{stage}: step {step}/{args.rl_steps} reward {reward:.3f} retry ok {retry:.3f} "
                        f"step {m.get('timing_s/step', nan):.1f} s"
                    )
                rc = run.process.returncode
                secs = round(run.seconds, 1)
                if rc:
                    return fail(stage, rc, run.log_path)
                hf = find_hf_actor(rl_dir / "checkpoints")
                if hf is None:
                    _say(f"{stage}: no HF actor in {rl_dir / 'checkpoints'}")
                    return fail(stage, 1, run.log_path)
                meta = {
                    "built_by": "r3_plugin.evidence.pipeline",
                    "command": shlex.join(cmd),
                    "pipeline_command": shlex.join(results["argv"]),
                    "seed": args.seed,
                    "base_model": str(sft_model),
                    "credit": credit,
                    "steps": args.rl_steps,
                }
                export_rl_model(hf, sft_model, rl_model, meta)
                record(stage, cmd, secs, model=str(rl_model), checkpoint=str(hf))
                _say(f"{stage}: done in {secs:.0f} s -> {rl_model}")
        evals[f"r3-{credit}"] = out / f"eval-r3-{credit}"
        if "after" in wanted and rl_model.exists():
            rc = evaluate(f"after-{credit}", "after", rl_model, evals[f"r3-{credit}"], run_label(credit))
            if rc:
                return rc

    # 5. compare
    if "compare" in wanted:
        present = {k: v for k, v in evals.items() if _eval_done(v)}
        if len(present) >= 2:
            labels = [run_label(k.removeprefix("r3-")) if k != "sft" else "SFT" for k in present]
            if rc := compare("compare", list(present.values()), out / "compare", labels):
                return rc
        else:
            _say("compare: skipped (needs the before and an after evaluation)")

    # 5b. the same evaluations with sampling, at the temperature R3 trains with
    if "sampled" in wanted and args.sampled_temperature > 0:
        t = args.sampled_temperature
        sampled: dict[str, Path] = {}
        models = {"sft": (sft_model, "SFT")} | {f"r3-{c}": (out / f"rl-{c}" / "model", run_label(c)) for c in credits}
        for key, (model, label) in models.items():
            if (model / "config.json").exists():
                sampled[key] = out / f"eval-{key}-t{t:g}"
                if rc := evaluate(f"sampled-{key}", "sampled", model, sampled[key], f"{label}, T={t:g}", t):
                    return rc
        if len(sampled) >= 2 and (rc := compare("compare-sampled", list(sampled.values()), out / f"compare-t{t:g}")):
            return rc
        evals |= {f"{k}-t{t:g}": v for k, v in sampled.items()}

    # 5c. the bound: the SFT model's retry after the best restatement there is (the true one, given)
    if "given" in wanted and (sft_model / "config.json").exists():
        target = out / "eval-sft-given"
        label = "SFT (given true restatement)"  # no comma: compare --labels splits on commas
        if rc := evaluate("given", "given", sft_model, target, label, given_reflection=RESTATEMENT):
            return rc
        evals["sft-given"] = target
        if _eval_done(evals["sft"]) and (
            rc := compare("compare-given", [evals["sft"], target], out / "compare-given", ["SFT", label])
        ):
            return rc

    # 6. plot
    if "plot" in wanted:
        runs = {c: read_metrics(out / f"rl-{c}" / "metrics.jsonl") for c in credits}
        runs = {c: m for c, m in runs.items() if m}
        if runs:
            started = time.monotonic()
            png = plot_curve(runs, out / "curve.png")
            record("plot", None, round(time.monotonic() - started, 1), png=str(png))
            _say(f"plot: {png}")
        table = write_reflection_tables(out, credits, evals)
        if table:
            _say(f"reflections: {table}")
    results["summaries"] = {k: _headline(v) for k, v in evals.items() if _eval_done(v)}
    save_results(out, results)
    _say(f"all done; {out / RESULTS_FILE}")
    return 0


def write_reflection_tables(out: Path, credits: Sequence[str], evals: Mapping[str, Path]) -> Path | None:
    """OUTPUT_DIR/reflections.md: per R3 step and per evaluation, the failed episodes by kind of
    reflection and how many retries after each passed (:mod:`r3_plugin.evidence.reflections`)."""
    from r3_plugin.evidence import reflections

    parts = []
    for credit in credits:
        if (out / f"rl-{credit}" / "rollout").is_dir():
            table = reflections.render(reflections.by_step(out / f"rl-{credit}"), "step")
            parts.append(f"## R3 training, credit={credit} (sampled, temperature 1)\n\n{table}")
    done = {k: v / "episodes.jsonl" for k, v in evals.items() if (v / "episodes.jsonl").exists()}
    if done:
        rows = {k: reflections.tally(reflections.evaluation_reflections(p)) for k, p in done.items()}
        table = reflections.render(rows, "run")
        parts.append(f"## Evaluations on the test tasks (greedy; -tT: sampled at temperature T)\n\n{table}")
    if not parts:
        return None
    path = out / "reflections.md"
    head = "# Failed episodes by kind of reflection: episodes (retries that passed)\n\n"
    path.write_text(head + "\n\n".join(parts) + "\n")
    return path


def _headline(eval_dir: Path) -> dict[str, Any]:
    """First try, retry without reflection and reflect-then-retry with their intervals and n."""
    m = json.loads((eval_dir / "summary.json").read_text())["metrics"]
    out = {"n": m["n"], "first_try": m["first_try"], "reflect_then_retry": m["second_try"]}
    if m.get("control"):
        out["retry_without_reflection"] = m["control"]["second_try"]
        out["mcnemar_p"] = m["control"]["mcnemar_p"]
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m r3_plugin.evidence.pipeline",
        description=__doc__.split("\n\n")[0],
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--output-dir", required=True, help="run directory (stages already done there are skipped)")
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the SFT run (tasks, corpus, weights), RL data order, evaluation"
    )
    p.add_argument("--stages", help=f"comma-separated subset of {','.join(STAGES)}; None: all")
    p.add_argument("--force", help="comma-separated stages to redo even if their output exists")
    p.add_argument("--sft-args", help="extra flags for r3_plugin.evidence.sft (after --recipe cpu), one string")
    p.add_argument(
        "--sft2-steps",
        type=int,
        default=1000,
        help="a second SFT stage of this many steps that continues the first stage's model (0: one stage)",
    )
    p.add_argument("--sft2-lr", type=float, default=1e-3, help="peak learning rate of the second SFT stage")
    p.add_argument(
        "--sft2-args",
        help=f"extra flags for the second SFT stage (after --recipe {SFT2_RECIPE} and its --init-from/--steps/--lr), "
        "one string",
    )
    p.add_argument("--rl-steps", type=int, default=60, help="R3 training steps")
    p.add_argument("--rl-batch", type=int, default=16, help="prompts per R3 step")
    p.add_argument("--rl-group", type=int, default=8, help="episodes per prompt (GRPO group)")
    p.add_argument("--rl-lr", type=float, default=1e-4, help="actor learning rate")
    p.add_argument("--val-samples", type=int, default=200, help="dev tasks validated before and after R3 training")
    p.add_argument(
        "--sampled-temperature",
        type=float,
        default=1.0,
        help="also evaluate every model at this sampling temperature (R3's rollouts use 1.0); 0: greedy only",
    )
    p.add_argument("--eval-limit", type=int, help="evaluate only the first N test tasks (smoke runs)")
    p.add_argument("--ablation", action="store_true", help="also train and evaluate r3.credit=reflection_and_retry")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    return run_pipeline(args)


if __name__ == "__main__":
    raise SystemExit(main())
