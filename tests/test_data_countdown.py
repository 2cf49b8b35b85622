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
"""Countdown builder: synthetic generator, local sources, split, errors, and verl's RLHFDataset reading it."""

from __future__ import annotations

import json
import os
import random
from collections import Counter

import pandas as pd
import pytest

from r3_plugin.policy.tasks import verify
from r3_plugin.tools.cli import main as r3_main
from r3_plugin.tools.data.countdown import (
    build_countdown,
    check_solution,
    describe_distribution,
    generate_tasks,
    model_distribution,
    solve,
)
from r3_plugin.tools.data.io import DataBuildError, write_splits


def _read(paths: dict) -> dict[str, pd.DataFrame]:
    return {split: pd.read_parquet(path) for split, path in paths.items()}


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    out = tmp_path_factory.mktemp("countdown")
    paths = build_countdown(out, train_size=400, test_size=100, seed=7, progress=False)
    return paths, _read(paths)


def test_synthetic_build_writes_verl_columns_and_sizes(synthetic):
    paths, frames = synthetic
    assert set(paths) == {"train", "test"}
    assert [p.name for p in paths.values()] == ["train.parquet", "test.parquet"]
    assert len(frames["train"]) == 400 and len(frames["test"]) == 100
    for split, df in frames.items():
        assert list(df.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info", "agent_name"]
        assert set(df["data_source"]) == {"countdown"}
        assert set(df["ability"]) == {"math"}
        assert set(df["agent_name"]) == {"r3_agent"}
        infos = list(df["extra_info"])
        assert [i["index"] for i in infos] == list(range(len(df)))
        assert {i["split"] for i in infos} == {split}
        row = df.iloc[0]
        gt = row["reward_model"]["ground_truth"]
        assert row["reward_model"]["style"] == "rule"
        (message,) = list(row["prompt"])
        assert message["role"] == "user"
        assert (
            f"Using the numbers {gt['numbers'].tolist()}, create an equation that equals {gt['target']}."
            in message["content"]
        )
        assert "<answer> </answer>" in message["content"]


def test_synthetic_tasks_are_solvable_and_in_the_paper_ranges(synthetic):
    _, frames = synthetic
    df = pd.concat(frames.values())
    sizes = Counter()
    for info, rm in zip(df["extra_info"], df["reward_model"], strict=True):
        gt = rm["ground_truth"]
        numbers, target = [int(n) for n in gt["numbers"]], int(gt["target"])
        sizes[len(numbers)] += 1
        assert 1 <= target <= 100 and all(1 <= n <= 100 for n in numbers)
        # the stored witness is a proof, checked by our parser and by the task's real verifier
        assert check_solution(info["solution"], numbers, target)
        answer = f"<think> work </think> <answer> {info['solution']} </answer>"
        assert verify("countdown", answer, {"target": target, "numbers": numbers}).passed
    assert set(sizes) == {3, 4}
    assert 0.35 < sizes[3] / sum(sizes.values()) < 0.65  # 3 and 4 numbers about equally often


def test_independent_solver_agrees_with_generator():
    tasks = generate_tasks(200, seed=3, progress=False)
    for task in tasks:
        found = solve(task.numbers, task.target)
        assert found is not None and check_solution(found, task.numbers, task.target)
    assert solve([1, 1, 1], 100) is None
    assert solve([2, 3, 4], 24) is not None


@pytest.mark.parametrize(
    "equation, ok",
    [
        ("(44 - 19) + 35", False),  # 60, not 98
        ("44 + 19 + 35", True),
        ("44 + 19 + 35 + 0", False),  # an extra number
        ("44 + 44 + 10", False),  # a number reused, one missing
        ("44 * 19 ** 35", False),  # power is not allowed
        ("-44 + 19 + 35 + 88", False),
        ("__import__('os').getcwd()", False),
        ("44 + 19 + 35 / 0", False),
        ("44 + 19 +", False),
    ],
)
def test_check_solution_rejects_anything_but_an_exact_equation(equation, ok):
    assert check_solution(equation, [44, 19, 35], 98) is ok


def test_same_seed_same_data_other_seed_other_data(tmp_path):
    a = _read(build_countdown(tmp_path / "a", train_size=200, test_size=50, seed=1, progress=False))
    b = _read(build_countdown(tmp_path / "b", train_size=200, test_size=50, seed=1, progress=False))
    c = _read(build_countdown(tmp_path / "c", train_size=200, test_size=50, seed=2, progress=False))
    for split in ("train", "test"):
        pd.testing.assert_frame_equal(a[split], b[split])
    assert not a["train"]["reward_model"].equals(c["train"]["reward_model"])
    assert (tmp_path / "a" / "train.parquet").read_bytes() == (tmp_path / "b" / "train.parquet").read_bytes()


def test_synthetic_test_split_shares_no_task_with_train(synthetic):
    _, frames = synthetic

    def keys(df):
        return {
            (gt["target"], tuple(sorted(gt["numbers"]))) for gt in (rm["ground_truth"] for rm in df["reward_model"])
        }

    assert not keys(frames["train"]) & keys(frames["test"])


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl", ".json"])
def test_local_file_in_hub_layout_is_split_and_kept_whole(tmp_path, suffix):
    rng = random.Random(0)
    rows = [
        {"target": rng.randint(1, 100), "nums": [rng.randint(1, 100) for _ in range(rng.choice((3, 4)))]}
        for _ in range(60)
    ]
    src = tmp_path / f"countdown{suffix}"
    if suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(src)
    elif suffix == ".jsonl":
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        src.write_text(json.dumps(rows))
    frames = _read(build_countdown(tmp_path / "out", source=str(src), test_size=15, seed=0, progress=False))
    assert len(frames["test"]) == 15 and len(frames["train"]) == 45
    built = Counter()
    for df in frames.values():
        for rm, info in zip(df["reward_model"], df["extra_info"], strict=True):
            gt = rm["ground_truth"]
            built[(int(gt["target"]), tuple(int(n) for n in gt["numbers"]))] += 1
            assert 1 <= info["source_row"] <= 60
    assert built == Counter((r["target"], tuple(r["nums"])) for r in rows)


def test_local_copy_of_the_hub_dataset_repository(tmp_path):
    """A directory (e.g. a clone of Jiayi-Pan/Countdown-Tasks-3to4) is read with datasets.load_dataset."""
    repo = tmp_path / "Countdown-Tasks-3to4"
    (repo / "data").mkdir(parents=True)
    rows = pd.DataFrame({"target": [10 + i for i in range(12)], "nums": [[i + 1, 2, 3] for i in range(12)]})
    rows.to_parquet(repo / "data" / "train-00000-of-00001.parquet")
    frames = _read(build_countdown(tmp_path / "out", source=str(repo), test_size=3, max_rows=10, progress=False))
    assert (len(frames["train"]), len(frames["test"])) == (7, 3)
    rows_used = sorted(info["source_row"] for df in frames.values() for info in df["extra_info"])
    assert rows_used == list(range(1, 11))


def test_max_rows_takes_a_quick_subset(tmp_path):
    src = tmp_path / "c.jsonl"
    src.write_text("".join(json.dumps({"target": 10 + i, "nums": [1, 2, 3 + i]}) + "\n" for i in range(100)))
    frames = _read(build_countdown(tmp_path / "out", source=str(src), test_size=5, max_rows=20, progress=False))
    assert len(frames["train"]) + len(frames["test"]) == 20
    frames = _read(build_countdown(tmp_path / "syn", max_rows=30, test_size=10, progress=False))
    assert (len(frames["train"]), len(frames["test"])) == (20, 10)


def test_bad_row_names_file_and_row_and_leaves_nothing(tmp_path):
    src = tmp_path / "bad.jsonl"
    src.write_text(
        json.dumps({"target": 5, "nums": [1, 2, 3]})
        + "\n"
        + json.dumps({"target": 6, "nums": [1, 2, 4]})
        + "\n"
        + json.dumps({"target": "six", "nums": [1, 2, 4]})
        + "\n"
    )
    out = tmp_path / "out"
    with pytest.raises(DataBuildError) as err:
        build_countdown(out, source=str(src), test_size=1, progress=False)
    assert str(src) in str(err.value) and "row 3" in str(err.value) and "target" in str(err.value)
    assert not out.exists() or not os.listdir(out)

    src.write_text('{"target": 5, "nums": [1, 2, 3]}\n{"target": 5, "nums": [1, 2\n')
    with pytest.raises(DataBuildError, match=r"bad\.jsonl, row 2: invalid JSON"):
        build_countdown(out, source=str(src), test_size=1, progress=False)

    src.write_text('{"target": 5, "nums": [1, 2, 3]}\n{"target": 5}\n')
    with pytest.raises(DataBuildError, match=r"row 2: missing 'nums'"):
        build_countdown(out, source=str(src), test_size=1, progress=False)


def test_sizes_larger_than_the_source_are_an_error(tmp_path):
    src = tmp_path / "c.json"
    src.write_text(json.dumps([{"target": 6, "nums": [1, 2, 3]}] * 10))
    with pytest.raises(DataBuildError, match="has 10 usable rows, not enough for a test split of 15000"):
        build_countdown(tmp_path / "out", source=str(src), progress=False)
    with pytest.raises(DataBuildError, match="--train-size 8 \\+ --test-size 5"):
        build_countdown(tmp_path / "out", source=str(src), train_size=8, test_size=5, progress=False)
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")


def test_failed_write_leaves_old_outputs_and_no_temp_files(tmp_path):
    out = tmp_path / "out"
    paths = build_countdown(out, train_size=20, test_size=5, seed=0, progress=False)
    before = {p.name: p.read_bytes() for p in paths.values()}
    good = [{"data_source": "countdown", "x": 1}]
    with pytest.raises(Exception):  # noqa: B017 - pyarrow's own error for an unconvertible value
        write_splits(out, {"train": good, "test": [{"data_source": "countdown", "x": object()}]})
    assert sorted(os.listdir(out)) == ["test.parquet", "train.parquet"]
    assert {name: (out / name).read_bytes() for name in before} == before

    fresh = tmp_path / "fresh"
    with pytest.raises(Exception):  # noqa: B017
        write_splits(fresh, {"train": good, "test": [{"x": object()}]})
    assert os.listdir(fresh) == []


def test_hub_dataset_error_suggests_offline_sources(tmp_path, monkeypatch):
    import datasets

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach 'Jiayi-Pan/Countdown-Tasks-3to4' on the Hub")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataBuildError) as err:
        build_countdown(tmp_path / "out", source="Jiayi-Pan/Countdown-Tasks-3to4", progress=False)
    message = str(err.value)
    assert "Jiayi-Pan/Countdown-Tasks-3to4" in message and "--source synthetic" in message
    assert "local" in message


def test_verl_rlhf_dataset_reads_the_files(synthetic, tiny_tokenizer, tmp_path):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset, collate_fn

    paths, frames = synthetic
    config = OmegaConf.create(
        {"max_prompt_length": 1024, "cache_dir": str(tmp_path / "cache"), "filter_overlong_prompts_workers": 1}
    )
    ds = RLHFDataset(str(paths["train"]), tiny_tokenizer, config)
    assert len(ds) == len(frames["train"])  # nothing filtered: every prompt renders with the chat template
    item = ds[3]
    expected = frames["train"].iloc[3]
    assert item["data_source"] == "countdown" and item["agent_name"] == "r3_agent"
    assert item["raw_prompt"] == [dict(m) for m in expected["prompt"]]
    assert item["index"] == 3
    assert item["reward_model"]["ground_truth"]["target"] == expected["reward_model"]["ground_truth"]["target"]
    batch = collate_fn([ds[i] for i in range(4)])
    assert list(batch["index"]) == [0, 1, 2, 3]


def test_cli_builds_and_explains(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["data", "countdown", "--output-dir", str(out), "--max-rows", "60", "--test-size", "10", "--no-progress"]
    assert r3_main(argv) == 0
    printed = capsys.readouterr().out
    assert "50 rows" in printed and "10 rows" in printed and str(out / "train.parquet") in printed
    assert r3_main(["data", "countdown", "--output-dir", str(tmp_path / "x"), "--max-rows", "5"]) == 1
    assert "lower --test-size" in capsys.readouterr().err

    with pytest.raises(SystemExit) as exit_:
        r3_main(["data", "countdown", "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    for words in ("synthetic", "--train-size", "--test-size", "--seed", "--output-dir", "--max-rows", "15000"):
        assert words in help_text


@pytest.mark.parametrize("source", ["my_tasks.parqet", "./my_tasks", "~/no/such/tasks.jsonl", "a/b/c"])
def test_missing_local_source_fails_at_once_without_the_hub(tmp_path, monkeypatch, capsys, source):
    import datasets

    def no_hub(*args, **kwargs):
        raise AssertionError("a local-looking source must never reach the Hub")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    monkeypatch.chdir(tmp_path)
    assert r3_main(["data", "countdown", "--source", source, "--output-dir", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert f"--source {source}: input file not found" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("flag", "value", "message"),
    [
        ("--test-size", "-5", "argument --test-size: must be >= 0, got -5"),
        ("--train-size", "0", "argument --train-size: must be a positive integer (>= 1), got 0"),
        ("--max-rows", "-1", "argument --max-rows: must be a positive integer (>= 1), got -1"),
        ("--train-size", "ten", "argument --train-size: must be an integer, got 'ten'"),
    ],
)
def test_bad_sizes_name_the_flag(tmp_path, capsys, flag, value, message):
    for dataset in ("countdown", "function-calling"):
        with pytest.raises(SystemExit) as exit_:
            r3_main(["data", dataset, "--output-dir", str(tmp_path / "out"), flag, value])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_test_size_zero_removes_a_stale_test_split(tmp_path, capsys):
    out = tmp_path / "data"
    argv = ["data", "countdown", "--output-dir", str(out), "--max-rows", "30", "--no-progress"]
    assert r3_main([*argv, "--test-size", "10"]) == 0
    assert (out / "test.parquet").exists()
    capsys.readouterr()
    assert r3_main([*argv, "--test-size", "0"]) == 0
    printed = capsys.readouterr().out
    assert sorted(os.listdir(out)) == ["train.parquet"]
    assert f"removed {out / 'test.parquet'}" in printed and "--test-size 0" in printed
    assert len(pd.read_parquet(out / "train.parquet")) == 30


def test_a_model_of_the_evidence_pipeline_gets_tasks_of_its_own_distribution(tmp_path):
    """The demo asks the shipped evidence model for the tasks it was trained on (r3_evidence.json);
    any other model gets the paper's distribution."""
    model = tmp_path / "model"
    model.mkdir()
    assert model_distribution(model) is None
    assert describe_distribution(None) == "3 or 4 numbers in 1..100, targets in 1..100"
    recorded = {"description": "...", "operand_counts": [2], "number_range": [1, 50], "target_range": [1, 100]}
    (model / "r3_evidence.json").write_text(json.dumps({"seed": 0, "distribution": recorded}))
    dist = model_distribution(model)
    assert dist == {"operand_counts": [2], "number_range": [1, 50], "target_range": [1, 100]}
    assert describe_distribution(dist) == "2 numbers in 1..50, targets in 1..100"
    paths = build_countdown(tmp_path / "data", train_size=40, test_size=8, seed=0, progress=False, distribution=dist)
    for split in ("train", "test"):
        for row in pd.read_parquet(paths[split]).itertuples():
            gt = row.reward_model["ground_truth"]
            assert len(gt["numbers"]) == 2 and max(gt["numbers"]) <= 50 and 1 <= gt["target"] <= 100
            assert check_solution(row.extra_info["solution"], list(gt["numbers"]), int(gt["target"]))
    with pytest.raises(DataBuildError, match="unknown keys \\['numbers'\\]"):
        build_countdown(tmp_path / "bad", train_size=4, test_size=0, distribution={"numbers": [2]})
    (model / "r3_evidence.json").write_text("{not json")
    with pytest.raises(DataBuildError, match="r3_evidence.json: not readable JSON"):
        model_distribution(model)
