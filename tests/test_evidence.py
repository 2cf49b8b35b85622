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
"""The R3 evidence pipeline: synthetic conversations labelled by the real verifier, their tokens and
loss mask, and a from-scratch SFT run that saves a reloadable Qwen2."""

from __future__ import annotations

import json
import random
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from r3_plugin.evidence import corpus as ec
from r3_plugin.policy.tasks import get_task
from r3_plugin.policy.verifiers.countdown import WRONG_NUMBERS, WRONG_TARGET, countdown_verify, evaluate_expression

_NUM = re.compile(r"\d+")


def _gt(task):
    return {"target": task.target, "numbers": list(task.numbers)}


@pytest.fixture(scope="module")
def splits():
    return ec.split_tasks(20, 20, 400, seed=7)


@pytest.fixture(scope="module")
def conversations(splits):
    # Mostly failures so every diagnosis and retry path is exercised.
    return ec.build_conversations(splits.sft, seed=3, config=ec.CorpusConfig(first_right=0.2))


@pytest.fixture(scope="module")
def tokenizer(conversations):
    from r3_plugin.evidence.tokenizer import build_countdown_tokenizer

    return build_countdown_tokenizer([m["content"] for c in conversations for m in c.messages], vocab_size=512)


def _attempts(conv):
    return [a for a in (conv.first, conv.retry) if a is not None]


def test_every_attempt_label_agrees_with_the_verifier(conversations):
    task_prompts = get_task("countdown")
    seen_kinds = Counter()
    for conv in conversations:
        assistant = [m["content"] for m in conv.messages if m["role"] == "assistant"]
        assert [a.text for a in _attempts(conv)] == [assistant[0], *assistant[1 if conv.plain_retry else 2 :]]
        for attempt in _attempts(conv):
            result = countdown_verify(attempt.text, _gt(conv.task))
            assert (attempt.category, attempt.passed) == (result.category, result.passed)
            assert attempt.category == ec.EXPECTED_CATEGORY[attempt.kind]
            seen_kinds[attempt.kind] += 1
        roles = [m["role"] for m in conv.messages]
        assert roles == ["user", "assistant"] * (len(roles) // 2)
        if conv.first.passed:
            assert len(conv.messages) == 2 and conv.retry is None
        elif conv.plain_retry:
            assert len(conv.messages) == 4 and conv.reflection is None and conv.diagnosis is None
            assert conv.messages[2]["content"] == task_prompts.plain_retry_prompt
        else:
            assert conv.messages[2]["content"] == task_prompts.reflection_prompt
            assert conv.messages[4]["content"] == task_prompts.retry_prompt
            assert conv.messages[3]["content"] == conv.reflection and conv.diagnosis in ec.DIAGNOSES
    assert set(seen_kinds) == {ec.RIGHT, *ec.ERROR_KINDS}


def test_retry_success_follows_the_diagnosis(conversations):
    stats = ec.corpus_stats(conversations)
    by = stats["retry_accuracy_by_diagnosis"]
    assert by[ec.ACCURATE] > by[ec.VAGUE] > by[ec.WRONG]
    assert stats["first_try_accuracy"] < stats["second_try_accuracy"]


@pytest.mark.parametrize("kind", ec.ERROR_KINDS)
def test_each_error_kind_produces_its_error(splits, kind):
    rng = random.Random(11)
    made = 0
    for task in splits.sft[:60]:
        attempt = ec.wrong_attempt(task, kind, rng)
        if attempt is None:  # e.g. "reused" needs two different numbers
            continue
        made += 1
        verdict = countdown_verify(attempt.text, _gt(task))
        used = Counter(int(x) for x in _NUM.findall(attempt.expression))
        given = Counter(task.numbers)
        if kind == ec.WRONG_VALUE:
            assert verdict.category == WRONG_TARGET
            assert used == given and evaluate_expression(attempt.expression) != task.target
        else:
            assert verdict.category == WRONG_NUMBERS
        if kind == ec.NOT_IN_LIST:
            assert any(v not in given for v in used)
        elif kind == ec.LEFT_OUT:
            assert sum(used.values()) == len(task.numbers) - 1 and not (used - given)
        elif kind == ec.REUSED:
            assert any(used[v] > given[v] and v in given for v in used)
            assert sum(used.values()) == len(task.numbers)
    assert made >= 50


def test_accurate_diagnoses_name_the_real_error(conversations):
    checked = Counter()
    for conv in conversations:
        if conv.diagnosis != ec.ACCURATE:
            continue
        expr, text = conv.first.expression, conv.reflection
        used = Counter(int(x) for x in _NUM.findall(expr))
        given = Counter(conv.task.numbers)
        mentioned = {int(x) for x in _NUM.findall(text)}
        for v in (used - given) | (given - used):
            assert v in mentioned, (expr, text)
        if conv.first.kind == ec.WRONG_VALUE:
            value = evaluate_expression(expr)
            shown = str(value.numerator) if value.denominator == 1 else f"{value.numerator}/{value.denominator}"
            assert f"equals {shown}, not {conv.task.target}" in text
        checked[conv.first.kind] += 1
    assert set(checked) == set(ec.ERROR_KINDS)


def test_wrong_diagnoses_do_not_name_the_real_error(conversations):
    for conv in conversations:
        if conv.diagnosis == ec.WRONG:
            assert conv.reflection != ec.accurate_diagnosis(conv.task, conv.first)


def _template_ids(tokenizer, messages):
    out = tokenizer.apply_chat_template(messages, tokenize=True)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    return list(out)


def test_corpus_ids_equal_the_chat_template(conversations, tokenizer):
    ids, masks = ec.tokenize_conversations(tokenizer, [c.messages for c in conversations])
    for conv, x, m in zip(conversations, ids, masks, strict=True):
        assert x == _template_ids(tokenizer, conv.messages)
        assert len(m) == len(x)
    texts = sorted({m["content"] for c in conversations for m in c.messages})
    assert ec.isolates_digits(tokenizer)
    assert ec.encode_texts(tokenizer, texts) == tokenizer(texts, add_special_tokens=False)["input_ids"]


@pytest.mark.parametrize("split_digits", [True, False])
def test_sft_trains_on_the_ids_a_saved_qwen2_directory_serves(conversations, tmp_path, split_digits):
    """transformers 5 loads any qwen2 directory with its Qwen2Tokenizer (another pre-tokenizer); the
    SFT trains on ``as_served``, so vLLM and verl see the ids the model was trained on."""
    from transformers import AutoTokenizer

    from r3_plugin.evidence.tokenizer import as_served, build_countdown_tokenizer

    texts = [m["content"] for c in conversations for m in c.messages]
    built = build_countdown_tokenizer(texts, vocab_size=512, split_digits=split_digits)
    served = as_served(built)
    served.save_pretrained(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    sample = sorted(set(texts))[:200]
    assert ec.encode_texts(served, sample) == ec.encode_texts(loaded, sample)
    messages = [c.messages for c in conversations[:20]]
    ids, _ = ec.tokenize_conversations(served, messages)
    assert ids == ec.tokenize_conversations(loaded, messages)[0]
    assert all(x == _template_ids(loaded, m) for x, m in zip(ids, messages, strict=True))
    if not split_digits:  # merged numbers: the in-memory tokenizer would have trained on other ids
        assert ec.encode_texts(built, sample) != ec.encode_texts(loaded, sample)


@pytest.mark.parametrize("train_wrong_first", [False, True])
def test_loss_mask_covers_exactly_the_trained_assistant_turns(conversations, tokenizer, train_wrong_first):
    trained = [c.trained_turns(train_wrong_first) for c in conversations]
    ids, masks = ec.tokenize_conversations(tokenizer, [c.messages for c in conversations], trained=trained)
    eos = tokenizer.eos_token
    for conv, x, m in zip(conversations, ids, masks, strict=True):
        runs, current = [], []
        for tok, keep in zip(x, m, strict=True):
            if keep:
                current.append(tok)
            elif current:
                runs.append(current)
                current = []
        if current:
            runs.append(current)
        assistant = [msg["content"] for msg in conv.messages if msg["role"] == "assistant"]
        if not (train_wrong_first or conv.first.passed):  # the wrong first attempt is context only
            assert assistant[0] == conv.first.text
            assistant = assistant[1:]
        decoded = [tokenizer.decode(r, skip_special_tokens=False) for r in runs]
        assert decoded == [a + eos for a in assistant]
    # None trains every assistant turn, as before.
    _, all_masks = ec.tokenize_conversations(tokenizer, [c.messages for c in conversations])
    assert sum(map(sum, all_masks)) > sum(map(sum, masks)) or train_wrong_first


def test_plain_retry_conversations_are_the_evaluation_control(splits):
    prompts = get_task("countdown")
    config = ec.CorpusConfig(first_right=0.0, plain_retry=0.5, plain_retry_success=0.4)
    convs = ec.build_conversations(splits.sft, seed=5, config=config)
    plain = [c for c in convs if c.plain_retry]
    assert 0.4 < len(plain) / len(convs) < 0.6
    for conv in plain:
        assert [m["role"] for m in conv.messages] == ["user", "assistant", "user", "assistant"]
        assert conv.messages[2]["content"] == prompts.plain_retry_prompt
        assert conv.messages[1]["content"] == conv.first.text and not conv.first.passed
        assert conv.messages[3]["content"] == conv.retry.text
        assert conv.reflection is None and prompts.reflection_prompt not in [m["content"] for m in conv.messages]
        assert conv.trained_turns() == [False, False, False, True]  # the retry is trained, not the failure
        assert conv.record()["plain_retry"] is True
    rate = ec.corpus_stats(convs)["retry_accuracy_by_diagnosis"]["plain"]
    assert 0.3 < rate < 0.5
    assert not any(c.plain_retry for c in ec.build_conversations(splits.sft, 5, ec.CorpusConfig(plain_retry=0.0)))


def _carried_out(splits, seed, style, **overrides):
    """Failed-first conversations of ``style``, every diagnosis alike (retry_success is ignored
    wherever the reflection decides the retry)."""
    config = ec.CorpusConfig(
        first_right=0.0,
        plain_retry=0.0,
        think="steps",
        solution="canonical",
        reflection_style=style,
        diagnosis_weights={"accurate": 1, "vague": 1, "wrong": 1},
        retry_success={"accurate": 0.0, "vague": 0.5, "wrong": 1.0},
        **overrides,
    )
    convs = [c for c in ec.build_conversations(splits.sft[:150], seed=seed, config=config) if c.retry]
    seen = Counter(c.diagnosis for c in convs)
    assert min(seen.values()) > 20, seen
    return convs


def test_proposing_reflections_decide_the_retry(splits):
    """reflection_style="propose": an accurate reflection restates the task and proposes the canonical
    solution, and the retry carries it out (passes); a wrong one proposes an equation that misses the
    target and the retry carries that out (fails the verifier); a vague one proposes nothing and its
    retry is a fresh attempt."""
    for conv in _carried_out(splits, 11, "propose"):
        reflection, retry = conv.messages[3]["content"], conv.retry
        if conv.diagnosis == ec.VAGUE:
            assert "Using [" not in reflection
            continue
        assert reflection == ec.fix_text(conv.task, retry.expression)  # the task restated, then the steps
        assert reflection.startswith(f"Using {list(conv.task.numbers)} to make {conv.task.target}: ")
        steps = reflection.split(": ", 1)[1].rstrip(".")
        assert retry.text == f"<think> {steps} </think> <answer> {retry.expression} </answer>"
        verdict = countdown_verify(retry.text, _gt(conv.task))
        if conv.diagnosis == ec.ACCURATE:
            assert retry.expression == ec.canonical_solution(conv.task.numbers, conv.task.target)
            assert verdict.passed and retry.passed
        else:
            assert not verdict.passed and verdict.category == WRONG_TARGET and not retry.passed
            assert sorted(map(int, _NUM.findall(retry.expression))) == sorted(conv.task.numbers)
    with pytest.raises(ValueError, match="needs think"):
        ec.CorpusConfig(reflection_style="propose", think="equation")
    with pytest.raises(ValueError, match="reflection_style must be one of"):
        ec.CorpusConfig(reflection_style="poetic")


def test_restating_reflections_decide_the_retry(splits):
    """reflection_style="restate": the reflection restates the numbers (the task's, or a miscopied
    list) and the target, and the retry uses the restated numbers: it passes exactly when they were
    right. One wording of the vague reflection when asked."""
    convs = _carried_out(splits, 12, "restate", vague_variants=1)
    assert {c.reflection for c in convs if c.diagnosis == ec.VAGUE} == {ec._VAGUE[0]}
    for conv in (c for c in convs if c.diagnosis != ec.VAGUE):
        match = re.fullmatch(r"I must use each of \[([\d, ]+)\] exactly once to make (\d+)\.", conv.reflection)
        assert match and int(match.group(2)) == conv.task.target
        shown = [int(v) for v in match.group(1).split(", ")]
        used = sorted(map(int, _NUM.findall(conv.retry.expression)))
        assert used == sorted(shown)  # the retry uses the numbers the reflection wrote
        verdict = countdown_verify(conv.retry.text, _gt(conv.task))
        assert verdict.passed is conv.retry.passed is (conv.diagnosis == ec.ACCURATE)
        if conv.diagnosis == ec.WRONG:
            assert sorted(shown) != sorted(conv.task.numbers) and verdict.category == WRONG_NUMBERS
            assert conv.retry.kind in (ec.REUSED, ec.NOT_IN_LIST)
        # A retry that follows its reflection is trained even when it fails: it teaches the retry to
        # use what the reflection says (else it would copy the task's numbers and ignore the reflection).
        assert conv.carried and conv.trained_turns(False, train_wrong_retry=False)[-1] is True
    fresh = [c for c in convs if c.diagnosis == ec.VAGUE]
    assert not any(c.carried for c in fresh)


def test_wrong_retries_can_be_context_only(splits):
    config = ec.CorpusConfig(first_right=0.0, plain_retry=0.3, train_wrong_retry=False)
    convs = [c for c in ec.build_conversations(splits.sft[:100], seed=2, config=config) if c.retry]
    assert {c.retry.passed for c in convs} == {True, False}
    for conv in convs:
        flags = conv.trained_turns(False, train_wrong_retry=False)
        assert flags[-1] is conv.retry.passed  # the retry's tokens are trained only when it passed
        assert sum(flags) == (conv.retry.passed + (not conv.plain_retry))  # the reflection always is
        assert conv.trained_turns()[-1] is True  # the default trains every retry, as before


def test_wrong_reflections_can_be_context_only(splits):
    """train_wrong_reflection=False: a miscopied restatement is context only (the model never learns to
    miscopy on purpose), while the retry that carries it out is still trained, so the retry still
    learns to use what its reflection wrote; the tokenized loss mask follows the flags."""
    convs = _carried_out(splits, 5, "restate", train_wrong_retry=False, train_wrong_reflection=False, retry_prompt="")
    config = ec.CorpusConfig(train_wrong_retry=False, train_wrong_reflection=False)
    from r3_plugin.evidence.tokenizer import build_countdown_tokenizer

    tokenizer = build_countdown_tokenizer([m["content"] for c in convs for m in c.messages], vocab_size=512)
    for conv in convs:
        flags = conv.trained_by(config)
        roles = [m["role"] for m in conv.messages]
        assert roles == ["user", "assistant", "user", "assistant", "assistant"]
        assert flags[3] is (conv.diagnosis != ec.WRONG)  # the reflection
        assert flags[4] is (conv.retry.passed or conv.carried)  # the retry
        assert conv.trained_turns(False, False)[3] is True  # the default trains every reflection, as before
        if conv.diagnosis == ec.WRONG:
            (ids,), (mask,) = ec.tokenize_conversations(tokenizer, [conv.messages], trained=[flags])
            retry_ids = tokenizer.encode(conv.messages[4]["content"], add_special_tokens=False)
            reflection_ids = tokenizer.encode(conv.messages[3]["content"], add_special_tokens=False)
            trained = [t for t, m in zip(ids, mask, strict=True) if m]
            assert trained[: len(retry_ids)] == retry_ids  # only the retry (and its end of turn) is trained
            assert len(trained) == len(retry_ids) + 1 and len(reflection_ids) > 5


@pytest.mark.parametrize(
    ("expr", "steps"),
    [
        ("5 + 20 / 10", ["20 / 10 = 2", "5 + 2 = 7"]),
        ("20 / (10 / 5)", ["10 / 5 = 2", "20 / 2 = 10"]),
        ("3 - (4 - 5) * 2", ["4 - 5 = -1", "-1 * 2 = -2", "3 - -2 = 5"]),
        ("10 / 4 * 6", ["10 / 4 = 5/2", "5/2 * 6 = 15"]),
    ],
)
def test_equation_steps_evaluate_in_order(expr, steps):
    got = ec.equation_steps(expr)
    assert [text for text, _ in got] == steps
    assert got[-1][1] == evaluate_expression(expr)


def test_steps_think_format_keeps_the_verifier_labels(splits):
    convs = ec.build_conversations(splits.sft[:100], seed=4, config=ec.CorpusConfig(first_right=0.3, think="steps"))
    for conv in convs:
        for attempt in _attempts(conv):
            assert (attempt.category, attempt.passed) == (
                countdown_verify(attempt.text, _gt(conv.task)).category,
                countdown_verify(attempt.text, _gt(conv.task)).passed,
            )
            think = attempt.text.split("<think>")[1].split("</think>")[0]
            assert len(think.split(",")) == len(_NUM.findall(attempt.expression)) - 1
            if attempt.passed:
                assert think.strip().endswith(f"= {conv.task.target}")
    with pytest.raises(ValueError, match="think"):
        ec.CorpusConfig(think="poem")


def test_canonical_solution_prefers_the_given_order_and_whole_steps(splits):
    from r3_plugin.tools.data.countdown import check_solution

    assert ec.canonical_solution((3, 4, 5), 12) == "3 + 4 + 5"
    assert ec.canonical_solution((3, 4, 5), 35) == "(3 + 4) * 5"
    assert ec.canonical_solution((2, 11, 4), 13) == "11 - 2 + 4"  # 2 - 11 = -9 only as a last resort
    assert ec.canonical_solution((1, 1, 1), 100) is None
    in_order = 0
    for task in splits.sft[:150]:
        found = ec.canonical_solution(task.numbers, task.target)
        assert found is not None and check_solution(found, task.numbers, task.target)
        in_order += [int(x) for x in _NUM.findall(found)] == list(task.numbers)
    assert in_order > 75
    config = ec.CorpusConfig(first_right=1.0, solution="canonical")
    for conv in ec.build_conversations(splits.sft[:20], seed=1, config=config):
        assert conv.first.expression == ec.canonical_solution(conv.task.numbers, conv.task.target)


def test_split_tasks_with_a_dev_split_and_ranges():
    old = ec.split_tasks(10, 10, 30, seed=3)
    same = ec.split_tasks(10, 10, 30, seed=3, n_dev=0)
    assert (old.test, old.rl_train, old.sft, old.dev) == (same.test, same.rl_train, same.sft, [])
    dist = ec.Distribution(number_range=(1, 20), target_range=(1, 100))
    sp = dist.split(30, 40, 200, seed=1, n_dev=25)
    assert [len(sp.test), len(sp.dev), len(sp.rl_train), len(sp.sft)] == [30, 25, 40, 200]
    keys = [{(t.target, tuple(sorted(t.numbers))) for t in part} for part in (sp.test, sp.dev, sp.rl_train, sp.sft)]
    assert sum(map(len, keys)) == len(set().union(*keys))  # disjoint
    for t in sp.test + sp.dev + sp.rl_train + sp.sft:
        assert len(t.numbers) == 3 and all(1 <= n <= 20 for n in t.numbers) and 1 <= t.target <= 100
    assert dist.describe() == "3 numbers in 1..20, integer targets in 1..100"
    with pytest.raises(ValueError, match="number_range"):
        ec.Distribution(number_range=(5, 1))


def test_recipe_data_only_writes_the_rl_splits_of_the_same_distribution(tmp_path):
    from r3_plugin.evidence import sft

    args = ["--recipe", "cpu", "--output-dir", str(tmp_path), "--seed", "0", "--data-only"]
    assert sft.main(args) == 0
    cfg = sft._parse_args(args)
    splits = sft.make_splits(cfg)
    frames = {s: pd.read_parquet(tmp_path / "data" / f"{s}.parquet") for s in ("train", "dev", "test")}
    sizes = {s: len(f) for s, f in frames.items()}
    assert sizes == {"train": cfg.rl_train_size, "dev": cfg.dev_size, "test": cfg.test_size}
    first = frames["test"]["reward_model"].iloc[0]["ground_truth"]
    assert (int(first["target"]), list(first["numbers"])) == (splits.test[0].target, list(splits.test[0].numbers))
    for gt in frames["train"]["reward_model"].map(lambda r: r["ground_truth"]):
        assert len(gt["numbers"]) == 2 and max(gt["numbers"]) <= 50 and 1 <= gt["target"] <= 100
    assert sft._parse_args([*args, "--steps", "7"]).steps == 7  # flags override the recipe


def test_a_first_attempts_only_stage_still_learns_the_reflection_vocabulary():
    """--first-right 1 trains first attempts alone; the stage that continues it (--init-from) keeps
    this tokenizer, so the tokenizer must have seen reflections and both retry prompts too."""
    from r3_plugin.evidence import sft

    cfg = sft._parse_args(["--recipe", "cpu", "--output-dir", "unused", "--first-right", "1"])
    splits = sft.make_splits(cfg)
    convs = ec.build_conversations(splits.sft[:50], 1, cfg.mix, progress=False)
    assert all(len(c.messages) == 2 for c in convs)  # user, assistant: first attempts only
    texts = [m["content"] for c in sft._tokenizer_conversations(cfg, splits, convs) for m in c.messages]
    task = get_task("countdown")
    assert task.reflection_prompt in texts and task.plain_retry_prompt in texts
    mixed = sft._parse_args(["--recipe", "cpu", "--output-dir", "unused"])
    assert sft._tokenizer_conversations(mixed, splits, convs) is convs  # a full mix is used as it is


def test_corpus_writers_round_trip(tmp_path, conversations, tokenizer):
    convs = conversations[:10]
    ids, masks = ec.tokenize_conversations(tokenizer, [c.messages for c in convs])
    pq = ec.write_corpus(tmp_path / "c.parquet", convs, ids, masks)
    df = pd.read_parquet(pq)
    assert [list(v) for v in df["input_ids"]] == ids and [list(v) for v in df["loss_mask"]] == masks
    assert df["messages"].iloc[0][0]["content"] == convs[0].messages[0]["content"]
    jl = ec.write_corpus(tmp_path / "c.jsonl", convs)
    rows = [json.loads(line) for line in jl.read_text().splitlines()]
    assert [r["messages"] for r in rows] == [c.messages for c in convs]
    with pytest.raises(ValueError, match=r"\.parquet or \.jsonl"):
        ec.write_corpus(tmp_path / "c.csv", convs)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.jsonl", "c.parquet"]  # no temp files left


def test_corpus_config_rejects_bad_mixes():
    with pytest.raises(ValueError, match="first_right"):
        ec.CorpusConfig(first_right=1.5)
    with pytest.raises(ValueError, match="unknown keys"):
        ec.CorpusConfig(error_weights={"typo": 1.0})
    with pytest.raises(ValueError, match="positive sum"):
        ec.CorpusConfig(diagnosis_weights={ec.ACCURATE: 0.0})


def test_tiny_sft_lowers_the_loss_and_saves_a_loadable_qwen2(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from r3_plugin.evidence import sft
    from r3_plugin.tools.backends.hf import render_prompt_ids
    from r3_plugin.tools.data.prompts import countdown_messages

    out = tmp_path / "run"
    args = [
        "--output-dir", str(out), "--device", "cpu", "--preset", "tiny", "--steps", "40", "--batch-size", "16",
        "--conversations", "800", "--test-size", "16", "--rl-train-size", "16", "--dev-size", "8",
        "--eval-every", "40", "--log-every", "10", "--lr", "3e-3", "--warmup-steps", "5", "--vocab-size", "400",
        "--max-new-tokens", "24", "--write-corpus", "--no-progress",
    ]  # fmt: skip
    assert sft.main(args) == 0
    log = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["event"] == "train"]
    assert len(losses) == 4 and losses[-1] < losses[0] - 1.0
    evals = [r for r in log if r["event"] == "eval"]
    assert evals and evals[-1]["n"] == 8 and sum(evals[-1]["categories"].values()) == 8

    model_dir = out / "model"
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    assert type(model).__name__ == "Qwen2ForCausalLM"
    assert model.config.vocab_size == len(tok)
    assert tok.eos_token == "<|im_end|>" and "<|im_start|>" in tok.chat_template
    meta = json.loads((model_dir / "r3_evidence.json").read_text())
    assert meta["seed"] == 0 and "--preset tiny" in meta["command"]
    prompt = render_prompt_ids(tok, countdown_messages(10, [2, 3, 4]), None)
    gen = model.generate(torch.tensor([prompt]), max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert gen.shape[1] > len(prompt)

    # RL data: verl rows; the held-out tasks never appear in the SFT corpus.
    test = pd.read_parquet(out / "data" / "test.parquet")
    corpus = pd.read_parquet(out / "sft.parquet")
    assert len(test) == 16 and set(test["agent_name"]) == {"r3_agent"}
    dev = pd.read_parquet(out / "data" / "dev.parquet")

    def keys(frame):
        return {
            (int(gt["target"]), tuple(sorted(gt["numbers"])))
            for gt in frame["reward_model"].map(lambda r: r["ground_truth"])
        }

    held_out, dev_keys = keys(test), keys(dev)
    seen = {(int(t), tuple(sorted(n))) for t, n in zip(corpus["target"], corpus["numbers"], strict=True)}
    assert len(dev) == 8 and not held_out & seen and not dev_keys & seen and not held_out & dev_keys


# ----------------------------------------------------------------------------------------- pipeline


def test_pipeline_rl_overrides_compose_and_validate_with_the_cpu_scale():
    from r3_plugin import show_config
    from r3_plugin.evidence import pipeline

    overrides = pipeline.rl_overrides(
        steps=7, credit="reflection_and_retry", seed=3, batch=4, group=2, lr=2e-5, val_samples=9
    )
    cfg = show_config.compose("r3_countdown", ["+r3_scale=cpu", *overrides])
    assert not show_config.validate(cfg)  # r3 guard + verl validate_config + batch arithmetic
    assert cfg.r3.credit == "reflection_and_retry" and cfg.r3.mode == "online"
    assert cfg.trainer.total_training_steps == cfg.trainer.save_freq == cfg.trainer.test_freq == 7
    assert "hf_model" in cfg.actor_rollout_ref.actor.checkpoint.save_contents
    assert cfg.actor_rollout_ref.rollout.n == 2 and cfg.data.train_batch_size == 4 and cfg.data.val_max_samples == 9
    assert cfg.actor_rollout_ref.actor.optim.lr == 2e-5 and cfg.trainer.device == "cpu"
    with pytest.raises(ValueError, match="credit"):
        pipeline.rl_overrides(steps=1, credit="retry", seed=0, batch=1, group=2, lr=1e-5, val_samples=1)
    # A model trained without a retry prompt is trained without one: "" survives Hydra as "".
    prompts = {"retry_prompt": "", "reflection_prompt": "Wrong, it's [x]. Why? \\ Be brief."}
    overrides = pipeline.rl_overrides(
        steps=2, credit="reflection", seed=0, batch=4, group=2, lr=1e-5, val_samples=1, prompts=prompts
    )
    cfg = show_config.compose("r3_countdown", ["+r3_scale=cpu", *overrides])
    assert not show_config.validate(cfg)
    assert cfg.r3.retry_prompt == "" and cfg.r3.reflection_prompt == prompts["reflection_prompt"]


def test_pipeline_commands_name_the_recipe_the_data_and_the_seed(tmp_path):
    from r3_plugin.evidence import pipeline

    sft = pipeline.sft_command(tmp_path / "sft", 5, ["--steps", "9"], python="py")
    assert sft[:5] == ["py", "-m", "r3_plugin.evidence.sft", "--recipe", "cpu"]
    assert sft[sft.index("--output-dir") + 1] == str(tmp_path / "sft")
    assert sft[sft.index("--seed") + 1] == "5" and sft[-2:] == ["--steps", "9"]
    ev = pipeline.evaluate_command(tmp_path / "m", tmp_path / "test.parquet", tmp_path / "e", "SFT", 5, python="py")
    assert ev[1:5] == ["-m", "r3_plugin", "evaluate", "run"] and "--no-control" not in ev  # the control runs
    assert ev[ev.index("--backend") + 1] == "vllm" and ev[ev.index("--seed") + 1] == "5"
    assert ev[ev.index("--data") + 1] == str(tmp_path / "test.parquet")
    assert "--retry-prompt" not in ev
    ev = pipeline.evaluate_command(tmp_path / "m", tmp_path / "t", tmp_path / "e", "x", 0, prompts={"retry_prompt": ""})
    assert ev[ev.index("--retry-prompt") + 1] == ""


def test_model_prompts_come_from_the_corpus_the_model_learnt(tmp_path):
    """A model of the evidence corpus records the prompts it was trained with; training and evaluation
    read them back (other models: the task's own)."""
    from r3_plugin.tools.data.countdown import DataBuildError, model_prompts

    assert model_prompts(tmp_path) == {}
    meta = {"corpus_config": ec.corpus_record_config(ec.CorpusConfig(retry_prompt=""))}
    (tmp_path / "r3_evidence.json").write_text(json.dumps(meta))
    assert model_prompts(tmp_path) == {"retry_prompt": ""}
    (tmp_path / "r3_evidence.json").write_text(
        json.dumps({"corpus_config": ec.corpus_record_config(ec.CorpusConfig())})
    )
    assert model_prompts(tmp_path) == {}  # None: the task's prompt
    (tmp_path / "r3_evidence.json").write_text("{not json")
    with pytest.raises(DataBuildError, match="r3_evidence.json"):
        model_prompts(tmp_path)


def test_an_empty_retry_prompt_puts_the_retry_straight_after_the_reflection(splits, tokenizer):
    config = ec.CorpusConfig(first_right=0.0, plain_retry=0.0, retry_prompt="", train_wrong_retry=False)
    conv = next(c for c in ec.build_conversations(splits.sft[:40], seed=1, config=config) if c.retry)
    assert [m["role"] for m in conv.messages] == ["user", "assistant", "user", "assistant", "assistant"]
    assert get_task("countdown").retry_prompt not in [m["content"] for m in conv.messages]
    ids, masks = ec.tokenize_conversations(tokenizer, [conv.messages], trained=[conv.trained_turns(False, False)])
    text = tokenizer.decode(ids[0], skip_special_tokens=False)
    assert f"{conv.reflection}{tokenizer.eos_token}" in text and text.count("assistant") == 3


def _val_key(name):
    return f"val-aux/countdown/{name}/mean@1"


def test_pipeline_curve_reads_verl_step_metrics_and_draws_a_png(tmp_path):
    from r3_plugin.evidence import pipeline
    from r3_plugin.local.trainer_run import read_metrics

    lines = [
        {"step": 0, "data": {_val_key("first_try_acc"): 0.3, _val_key("second_try_acc"): 0.4}},
        {"step": 1, "data": {"r3/reward/mean": 0.25, "r3/retry_success_rate": 0.25, "timing_s/step": 9.0}},
        {"step": 2, "data": {"r3/reward/mean": 0.5, "r3/retry_success_rate": 0.5}},
        {"step": 2, "data": {_val_key("first_try_acc"): 0.3, _val_key("second_try_acc"): 0.55}},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    steps = read_metrics(tmp_path / "metrics.jsonl")
    s = pipeline.curve_series(steps)
    assert s["reward"] == [(1, 0.25), (2, 0.5)] and s["retry_success"] == [(1, 0.25), (2, 0.5)]
    assert s["val_second_try"] == [(0, 0.4), (2, 0.55)] and s["val_first_try"] == [(0, 0.3), (2, 0.3)]
    png = pipeline.plot_curve({"reflection": steps}, tmp_path / "out" / "curve.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000


def test_pipeline_finds_the_newest_hf_actor_with_weights(tmp_path):
    from r3_plugin.evidence import pipeline

    for step, weights in ((3, True), (10, True), (12, False)):
        d = tmp_path / f"global_step_{step}" / "actor" / "huggingface"
        d.mkdir(parents=True)
        (d / "config.json").write_text("{}")
        if weights:
            (d / "model.safetensors").write_bytes(b"x")
    assert pipeline.find_hf_actor(tmp_path) == tmp_path / "global_step_10" / "actor" / "huggingface"
    assert pipeline.find_hf_actor(tmp_path / "nothing") is None


def test_pipeline_skips_finished_stages_and_records_results(tmp_path, monkeypatch):
    from r3_plugin.evidence import pipeline

    (tmp_path / "sft" / "model").mkdir(parents=True)
    (tmp_path / "sft" / "model" / "config.json").write_text("{}")
    summary = {
        "metrics": {
            "n": 10,
            "first_try": {"count": 3, "n": 10, "rate": 0.3, "ci95": [0.1, 0.6]},
            "second_try": {"count": 5, "n": 10, "rate": 0.5, "ci95": [0.2, 0.8]},
            "control": {"second_try": {"count": 4, "n": 10, "rate": 0.4, "ci95": [0.2, 0.7]}, "mcnemar_p": 0.5},
        }
    }
    (tmp_path / "eval-sft").mkdir()
    (tmp_path / "eval-sft" / "summary.json").write_text(json.dumps(summary))
    calls = []
    monkeypatch.setattr(pipeline, "run_logged", lambda cmd, log, env=None: calls.append(cmd) or (0, 0.0))
    args = pipeline._parser().parse_args(["--output-dir", str(tmp_path), "--stages", "sft,before,compare"])
    assert pipeline.run_pipeline(args) == 0
    assert calls == []  # SFT and the evaluation were already there; compare needs two evaluations
    results = json.loads((tmp_path / pipeline.RESULTS_FILE).read_text())
    head = results["summaries"]["sft"]
    assert head["n"] == 10 and head["retry_without_reflection"]["rate"] == 0.4 and head["mcnemar_p"] == 0.5
    assert results["seed"] == 0
    # The sampled stage evaluates each model there is again at the rollout temperature.
    args = pipeline._parser().parse_args(["--output-dir", str(tmp_path), "--stages", "sampled"])
    assert pipeline.run_pipeline(args) == 0
    (sampled,) = calls
    assert sampled[sampled.index("--temperature") + 1] == "1.0"
    assert sampled[sampled.index("--output-dir") + 1] == str(tmp_path / "eval-sft-t1")
    # The given stage evaluates the SFT model with the true restatement in place of its reflection,
    # then compares it with the SFT model's own evaluation.
    calls.clear()

    def fake_run(cmd, log, env=None):
        calls.append(cmd)
        if "compare" in cmd:
            target = Path(cmd[cmd.index("--output-dir") + 1])
            target.mkdir(parents=True, exist_ok=True)
            (target / "compare.md").write_text("| table |\n")
        return 0, 0.0

    monkeypatch.setattr(pipeline, "run_logged", fake_run)
    args = pipeline._parser().parse_args(["--output-dir", str(tmp_path), "--stages", "given"])
    assert pipeline.run_pipeline(args) == 0
    given, compare = calls
    assert given[given.index("--given-reflection") + 1] == ec.RESTATEMENT
    assert given[given.index("--output-dir") + 1] == str(tmp_path / "eval-sft-given")
    assert "--temperature" not in given  # greedy, like the results table
    assert compare[3:7] == ["evaluate", "compare", str(tmp_path / "eval-sft"), str(tmp_path / "eval-sft-given")]
    assert compare[compare.index("--labels") + 1] == "SFT,SFT (given true restatement)"
    assert "given" in json.loads((tmp_path / pipeline.RESULTS_FILE).read_text())["stages"]
    monkeypatch.setattr(pipeline, "run_logged", lambda cmd, log, env=None: calls.append(cmd) or (0, 0.0))
    calls.clear()
    args = pipeline._parser().parse_args(
        ["--output-dir", str(tmp_path), "--stages", "sft", "--force", "sft", "--sft2-steps", "0"]
    )
    assert pipeline.run_pipeline(args) == 0
    assert len(calls) == 1 and calls[0][2] == "r3_plugin.evidence.sft" and calls[0][4] == "cpu"
    assert json.loads((tmp_path / pipeline.RESULTS_FILE).read_text())["stages"]["sft"]["command"]
    # Two SFT stages: the second continues the first's model and writes the model the later stages use.
    calls.clear()
    args = pipeline._parser().parse_args(
        ["--output-dir", str(tmp_path / "two"), "--stages", "sft", "--sft2-steps", "5", "--sft2-lr", "1e-4"]
    )
    assert pipeline.run_pipeline(args) == 0
    first, second = calls
    assert first[first.index("--output-dir") + 1] == str(tmp_path / "two" / "sft-stage1")
    assert second[second.index("--output-dir") + 1] == str(tmp_path / "two" / "sft")
    assert second[second.index("--init-from") + 1] == str(tmp_path / "two" / "sft-stage1" / "model")
    assert second[second.index("--steps") + 1] == "5" and second[second.index("--lr") + 1] == "0.0001"
    assert first[4] == "cpu" and second[4] == pipeline.SFT2_RECIPE
    # Extra flags reach the second stage only; once its model exists, neither stage runs again.
    calls.clear()
    args = pipeline._parser().parse_args(
        ["--output-dir", str(tmp_path / "three"), "--stages", "sft", "--sft2-steps", "5", "--sft2-args", "--threads 1"]
    )
    assert pipeline.run_pipeline(args) == 0
    first, second = calls
    assert "--threads" not in first and second[-2:] == ["--threads", "1"]
    (tmp_path / "three" / "sft" / "model").mkdir(parents=True)
    (tmp_path / "three" / "sft" / "model" / "config.json").write_text("{}")
    calls.clear()
    assert pipeline.run_pipeline(args) == 0
    assert calls == []


def test_sft_init_from_continues_a_saved_model(tmp_path):
    import torch
    from safetensors.torch import load_file

    from r3_plugin.evidence import sft

    common = [
        "--device", "cpu", "--preset", "tiny", "--batch-size", "8", "--conversations", "120", "--test-size", "4",
        "--rl-train-size", "4", "--dev-size", "0", "--eval-every", "0", "--log-every", "5", "--vocab-size", "400",
        "--save-dtype", "float32", "--no-progress",
    ]  # fmt: skip
    assert sft.main(["--output-dir", str(tmp_path / "a"), "--steps", "5", *common]) == 0
    first = tmp_path / "a" / "model"
    args = ["--output-dir", str(tmp_path / "b"), "--steps", "3", "--init-from", str(first), *common]
    assert sft.main(args) == 0
    second = tmp_path / "b" / "model"
    assert (second / "tokenizer.json").read_text() == (first / "tokenizer.json").read_text()
    a, b = load_file(first / "model.safetensors"), load_file(second / "model.safetensors")
    assert a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((second / "r3_evidence.json").read_text())
    assert meta["config"]["init_from"] == str(first) and "--init-from" in meta["command"]


def test_follow_steps_yields_each_logged_step_once_and_waits_for_validation(tmp_path):
    """The step follower the demo and the evidence pipeline share, on a child that logs like verl."""
    import os
    import sys

    from r3_plugin.local.trainer_run import TrainerRun

    lines = [
        {"step": 0, "data": {"other": 1}},  # step 0 before its validation values: not yet shown
        {"step": 0, "data": {"val-aux/toy/first_try_acc/mean@1": 0.5, "val-aux/toy/second_try_acc/mean@1": 0.75}},
        {"step": 1, "data": {"r3/reward/mean": 0.25}},
        {"step": 2, "data": {"r3/reward/mean": 0.5}},
    ]
    script = "import json, sys, time\n" + "".join(
        f"open('metrics.jsonl', 'a').write(json.dumps({x!r}) + '\\n'); time.sleep(0.3)\n" for x in lines
    )
    run = TrainerRun([sys.executable, "-c", script], tmp_path, dict(os.environ)).start()
    seen = [item for item in run.follow_steps(poll_s=0.1) if item is not None]
    assert [step for step, _ in seen] == [0, 1, 2]
    assert seen[0][1]["val-aux/toy/first_try_acc/mean@1"] == 0.5 and seen[2][1]["r3/reward/mean"] == 0.5
    assert run.process.returncode == 0


# ----------------------------------------------------------------------------------------- reflections


def test_reflection_kinds_are_counted_from_verl_rollout_dumps_and_evaluations(tmp_path, capsys):
    """The diagnostic behind docs/evidence.md's reflection tables, on files shaped like verl's
    ``rollout/N.jsonl`` (decoded responses, score, ground truth) and ``r3 evaluate``'s episodes."""
    from r3_plugin.evidence import reflections as rf

    assert rf.reflection_kind("I must use each of [26, 42] exactly once to make 68.", [42, 26], 68) == "restate-right"
    assert rf.reflection_kind("I must use each of [26, 26] exactly once to make 68.", [42, 26], 68) == "restate-wrong"
    assert rf.reflection_kind("Using [26, 42] to make 67: 26 + 42 = 68.", [42, 26], 68) == "restate-wrong"
    assert rf.reflection_kind(ec._VAGUE[2], [1, 2], 3) == "vague"
    assert rf.reflection_kind("I used 4 more than once.", [1, 2], 3) == "other"

    def row(reflection, score, numbers=(26, 42), target=68):
        turns = ["<think> 26 * 42 = 1092 </think> <answer> 26 * 42 </answer>\nuser\nReflect.", reflection]
        output = "\nassistant\n".join([*turns[:1], reflection + "\nuser\nNow try again.", "<think> x </think>"])
        return {"output": output, "score": score, "gts": {"numbers": list(numbers), "target": target}}

    run = tmp_path / "run"
    (run / "rollout").mkdir(parents=True)
    first_try_passed = {
        "output": "<think> 26 + 42 = 68 </think>",
        "score": 1.0,
        "gts": {"numbers": [26, 42], "target": 68},
    }
    lines = [row("I must use each of [26, 42] exactly once to make 68.", 1.0), row(ec._VAGUE[0], 0.0), first_try_passed]
    (run / "rollout" / "2.jsonl").write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    (run / "rollout" / "10.jsonl").write_text(
        json.dumps(row("I must use each of [2, 42] exactly once to make 68.", 0.0))
    )
    steps = rf.by_step(run)
    assert list(steps) == [2, 10]
    assert steps[2]["restate-right"] == {"n": 1, "passed": 1} and steps[2]["vague"] == {"n": 1, "passed": 0}
    assert steps[10]["restate-wrong"] == {"n": 1, "passed": 0} and sum(t["n"] for t in steps[10].values()) == 1
    assert rf.main([str(run)]) == 0
    table = capsys.readouterr().out
    assert "| 2 | 1 (1) | 0 | 1 (0) | 0 |" in table and "| 10 | 0 | 1 (0) | 0 | 0 |" in table
    assert rf.main([str(tmp_path / "missing")]) == 2
    assert rf.main([str(tmp_path)]) == 2 and "no N.jsonl rollout dumps" in capsys.readouterr().err

    episode = {
        "ground_truth": {"numbers": [26, 42], "target": 68},
        "reflect": {
            "first_try_passed": False,
            "second_try_passed": True,
            "rounds": [{"reflection": {"text": "I must use each of [42, 26] exactly once to make 68."}}],
        },
    }
    (tmp_path / "episodes.jsonl").write_text(json.dumps(episode) + "\n")
    assert rf.tally(rf.evaluation_reflections(tmp_path / "episodes.jsonl"))["restate-right"] == {"n": 1, "passed": 1}
    # The pipeline writes both tables into OUTPUT_DIR/reflections.md.
    from r3_plugin.evidence import pipeline

    out = tmp_path / "pipe"
    (out / "rl-reflection").mkdir(parents=True)
    (out / "rl-reflection" / "rollout").symlink_to(run / "rollout")
    (out / "eval-sft").mkdir()
    (out / "eval-sft" / "episodes.jsonl").write_text(json.dumps(episode) + "\n")
    md = pipeline.write_reflection_tables(out, ["reflection"], {"sft": out / "eval-sft"}).read_text()
    assert "credit=reflection" in md and "| 2 | 1 (1) | 0 | 1 (0) | 0 |" in md and "| sft | 1 (1) | 0 | 0 | 0 |" in md
    assert pipeline.write_reflection_tables(tmp_path / "empty", ["reflection"], {}) is None
