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
"""Function-calling builder on a local xlam-format fixture: schema conversion, tool placement,
split, row errors, and verl's RLHFDataset reading the output."""

from __future__ import annotations

import json
import os
import random

import pandas as pd
import pytest

from r3_plugin.policy.tasks import verify
from r3_plugin.tools.cli import main as r3_main
from r3_plugin.tools.data.function_calling import (
    build_function_calling,
    chat_template_renders_tools,
    openai_tools,
    xlam_type_to_schema,
)
from r3_plugin.tools.data.io import DataBuildError

WEATHER = {
    "name": "get_weather",
    "description": "Current weather for a city.",
    "parameters": {
        "city": {"description": "The city name.", "type": "str"},
        "unit": {"description": "celsius or fahrenheit.", "type": "str, optional", "default": "celsius"},
    },
}
SUM = {
    "name": "sum_numbers",
    "description": "Add a list of integers.",
    "parameters": {"numbers": {"description": "The integers to add.", "type": "List[int]"}},
}
SEARCH = {
    "name": "search_products",
    "description": "Search a product catalogue.",
    "parameters": {
        "query": {"description": "Search words.", "type": "str"},
        "max_price": {"description": "Price ceiling.", "type": "Optional[float]", "default": None},
        "filters": {"description": "Extra filters.", "type": "Dict[str, Any]", "default": {}},
        "key": {"description": "Sort key function.", "type": "Callable", "default": None},
    },
}
PRIME = {
    "name": "is_prime",
    "description": "Whether n is prime.",
    "parameters": {"n": {"description": "The number.", "type": "int", "default": 7}},
}
CITIES = ["Paris", "Lima", "Oslo", "Cairo", "Quito", "Hanoi", "Perth"]


def xlam_rows(n: int = 40, seed: int = 0) -> list[dict]:
    """Rows in xlam-function-calling-60k's layout: tools and answers are JSON strings."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        kind = i % 4
        if kind == 0:
            city = rng.choice(CITIES)
            query, tools, answers = (
                f"What is the weather in {city} in fahrenheit?",
                [WEATHER, PRIME],
                [{"name": "get_weather", "arguments": {"city": city, "unit": "fahrenheit"}}],
            )
        elif kind == 1:
            nums = [rng.randint(1, 50) for _ in range(3)]
            query, tools, answers = (
                f"Add {nums} and tell me if {nums[0]} is prime.",
                [SUM, PRIME],
                [
                    {"name": "sum_numbers", "arguments": {"numbers": nums}},
                    {"name": "is_prime", "arguments": {"n": nums[0]}},
                ],
            )
        elif kind == 2:
            price = rng.randint(10, 99) + 0.5
            query, tools, answers = (
                f"Find running shoes under {price} dollars.",
                [SEARCH],
                [{"name": "search_products", "arguments": {"query": "running shoes", "max_price": price}}],
            )
        else:
            query, tools, answers = (
                f"Is {i} a prime number?",
                [PRIME, WEATHER],
                [{"name": "is_prime", "arguments": {"n": i}}],
            )
        rows.append({"id": i, "query": query, "tools": json.dumps(tools), "answers": json.dumps(answers)})
    return rows


@pytest.fixture()
def xlam_file(tmp_path):
    path = tmp_path / "xlam_function_calling.json"
    path.write_text(json.dumps(xlam_rows()))
    return path


def _read(paths: dict) -> dict[str, pd.DataFrame]:
    return {split: pd.read_parquet(path) for split, path in paths.items()}


def _no_tools_tokenizer_dir(tmp_path):
    """A tokenizer whose chat template ignores ``tools`` (like many base and older chat models)."""
    from r3_plugin.local.tiny_model import build_tiny_tokenizer

    tok = build_tiny_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    out = tmp_path / "no-tools-tokenizer"
    tok.save_pretrained(out)
    return out


@pytest.mark.parametrize(
    "type_str, schema, optional",
    [
        ("str", {"type": "string"}, False),
        ("int", {"type": "integer"}, False),
        ("float", {"type": "number"}, False),
        ("bool", {"type": "boolean"}, False),
        ("List[int]", {"type": "array", "items": {"type": "integer"}}, False),
        ("List[List[str]]", {"type": "array", "items": {"type": "array", "items": {"type": "string"}}}, False),
        ("List", {"type": "array"}, False),
        ("Dict[str, Any]", {"type": "object"}, False),
        ("str, optional", {"type": "string"}, True),
        ("Optional[int]", {"type": "integer"}, True),
        ("Union[int, float]", {"type": "number"}, False),
        ("Union[str, int]", {"type": ["string", "integer"]}, False),
        ("Tuple[int, int]", {"type": "array"}, False),
        ("Literal['a', 'b']", {"enum": ["a", "b"]}, False),
        ("Any", {}, False),
        ("Callable", None, False),
        ("pd.DataFrame", None, False),
    ],
)
def test_xlam_types_map_to_json_schema(type_str, schema, optional):
    assert xlam_type_to_schema(type_str) == (schema, optional)


def test_system_prompt_build_without_tokenizer(xlam_file, tmp_path):
    frames = _read(
        build_function_calling(tmp_path / "out", source=str(xlam_file), test_size=10, seed=0, progress=False)
    )
    assert len(frames["train"]) == 30 and len(frames["test"]) == 10
    source = xlam_rows()
    for split, df in frames.items():
        assert list(df.columns) == ["data_source", "prompt", "ability", "reward_model", "extra_info", "agent_name"]
        assert set(df["data_source"]) == {"function_calling"} and set(df["agent_name"]) == {"r3_agent"}
        for i, (prompt, rm, info) in enumerate(zip(df["prompt"], df["reward_model"], df["extra_info"], strict=True)):
            system, user = list(prompt)
            original = source[info["source_row"] - 1]  # rows count from 1
            assert (system["role"], user["role"]) == ("system", "user")
            assert user["content"] == original["query"]
            assert info["index"] == i and info["split"] == split and info["tools_in_chat_template"] is False
            tools = openai_tools(info)
            for tool in tools:
                assert tool["type"] == "function"
                assert json.dumps(tool["function"]["name"]) in system["content"]
            assert "<tool_call>" in system["content"]
            assert json.loads(info["xlam_tools"]) == json.loads(original["tools"])
            assert json.loads(rm["ground_truth"]) == json.loads(original["answers"])
            assert rm["style"] == "rule"


def test_tools_are_converted_to_openai_schemas(xlam_file, tmp_path):
    frames = _read(build_function_calling(tmp_path / "out", source=str(xlam_file), test_size=10, progress=False))
    schemas = {}
    for info in pd.concat(frames.values())["extra_info"]:
        for tool in openai_tools(info):
            schemas[tool["function"]["name"]] = tool["function"]
    weather = schemas["get_weather"]["parameters"]
    assert weather["type"] == "object" and weather["required"] == ["city"]
    assert weather["properties"]["unit"] == {
        "type": "string",
        "description": "celsius or fahrenheit.",
        "default": "celsius",
    }
    assert schemas["sum_numbers"]["parameters"]["properties"]["numbers"]["type"] == "array"
    search = schemas["search_products"]["parameters"]
    assert search["required"] == ["query"]
    assert search["properties"]["max_price"]["type"] == "number"
    assert (
        "type" not in search["properties"]["key"] and "(type: Callable)" in search["properties"]["key"]["description"]
    )
    assert schemas["is_prime"]["parameters"]["required"] == []


def test_gold_answers_pass_the_real_verifier(xlam_file, tmp_path):
    frames = _read(build_function_calling(tmp_path / "out", source=str(xlam_file), test_size=10, progress=False))
    for rm, info in zip(frames["test"]["reward_model"], frames["test"]["extra_info"], strict=True):
        gt = rm["ground_truth"]
        # the answer format the system prompt asks for
        assert verify("function_calling", f"<tool_call>{gt}</tool_call>", gt, info).passed
        # the converted schemas agree with the gold calls (required parameters, types)
        assert verify("function_calling_ast", f"<tool_call>{gt}</tool_call>", gt, info).passed
        wrong = json.loads(gt)
        wrong[0]["arguments"] = {k: "nope" for k in wrong[0]["arguments"]}
        assert not verify("function_calling", f"<tool_call>{json.dumps(wrong)}</tool_call>", gt, info).passed


def test_chat_template_with_tools_keeps_the_prompt_to_the_query(xlam_file, tmp_path, tiny_model_dir, tiny_tokenizer):
    assert chat_template_renders_tools(tiny_tokenizer)
    paths = build_function_calling(
        tmp_path / "out", source=str(xlam_file), test_size=10, tokenizer=str(tiny_model_dir), progress=False
    )
    df = _read(paths)["train"]
    for prompt, info in zip(df["prompt"], df["extra_info"], strict=True):
        (user,) = list(prompt)
        assert user["role"] == "user" and info["tools_in_chat_template"] is True
        text = tiny_tokenizer.apply_chat_template(
            [dict(user)], tools=openai_tools(info), tokenize=False, add_generation_prompt=True
        )
        for tool in openai_tools(info):
            assert tool["function"]["name"] in text
        assert user["content"] in text


def test_template_without_tools_falls_back_to_a_system_prompt(xlam_file, tmp_path):
    tok_dir = _no_tools_tokenizer_dir(tmp_path)
    df = _read(
        build_function_calling(
            tmp_path / "out", source=str(xlam_file), test_size=10, tokenizer=str(tok_dir), progress=False
        )
    )["train"]
    assert all(info["tools_in_chat_template"] is False for info in df["extra_info"])
    assert all(list(p)[0]["role"] == "system" for p in df["prompt"])
    forced = _read(
        build_function_calling(
            tmp_path / "forced", source=str(xlam_file), test_size=10, tool_placement="chat-template", progress=False
        )
    )["train"]
    assert all(
        info["tools_in_chat_template"] is True and len(p) == 1
        for p, info in zip(forced["prompt"], forced["extra_info"], strict=True)
    )


def test_jsonl_and_parquet_inputs_give_the_same_data(xlam_file, tmp_path):
    rows = xlam_rows()
    jsonl = tmp_path / "x.jsonl"
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
    parquet = tmp_path / "x.parquet"
    pd.DataFrame(rows).to_parquet(parquet)
    built = [
        _read(build_function_calling(tmp_path / name, source=str(src), test_size=8, seed=3, progress=False))
        for name, src in (("a", xlam_file), ("b", jsonl), ("c", parquet))
    ]
    for other in built[1:]:
        for split in ("train", "test"):
            pd.testing.assert_frame_equal(built[0][split], other[split])


def test_same_seed_same_split_other_seed_other_split(xlam_file, tmp_path):
    a = _read(build_function_calling(tmp_path / "a", source=str(xlam_file), test_size=10, seed=5, progress=False))
    b = _read(build_function_calling(tmp_path / "b", source=str(xlam_file), test_size=10, seed=5, progress=False))
    c = _read(build_function_calling(tmp_path / "c", source=str(xlam_file), test_size=10, seed=6, progress=False))
    for split in ("train", "test"):
        pd.testing.assert_frame_equal(a[split], b[split])

    def rows_of(frames):
        return {info["source_row"] for info in frames["test"]["extra_info"]}

    assert rows_of(a) != rows_of(c)
    assert not rows_of(a) & {info["source_row"] for info in a["train"]["extra_info"]}


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"tools": "[{'name': 'x'}]"}, "'tools' is not valid JSON"),
        ({"tools": json.dumps({"name": "get_weather"})}, "'tools' must be a list"),
        (
            {"answers": json.dumps([{"name": "delete_all", "arguments": {}}])},
            "'delete_all', which is not among the tools",
        ),
        ({"answers": json.dumps([{"arguments": {}}])}, "answer 0 must be an object with a 'name'"),
        ({"query": ""}, "'query' must be non-empty text"),
        ({"tools": json.dumps([{"name": "f", "parameters": {"a": "int"}}])}, "tool 'f', parameter 'a'"),
    ],
)
def test_bad_row_names_file_and_row_and_writes_nothing(tmp_path, bad, message):
    rows = xlam_rows(12)
    rows[6].update(bad)
    src = tmp_path / "broken.json"
    src.write_text(json.dumps(rows))
    out = tmp_path / "out"
    with pytest.raises(DataBuildError) as err:
        build_function_calling(out, source=str(src), test_size=2, progress=False)
    assert f"{src}, row 7: " in str(err.value) and message in str(err.value)
    assert not out.exists() or os.listdir(out) == []


def test_skip_invalid_drops_bad_rows_with_a_warning(tmp_path, capsys):
    rows = xlam_rows(12)
    rows[2]["answers"] = "not json"
    rows[9]["query"] = None
    src = tmp_path / "some_bad.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    frames = _read(
        build_function_calling(tmp_path / "out", source=str(src), test_size=2, skip_invalid=True, progress=False)
    )
    assert len(frames["train"]) + len(frames["test"]) == 10
    kept = {info["source_row"] for df in frames.values() for info in df["extra_info"]}
    assert kept == set(range(1, 13)) - {3, 10}
    warning = capsys.readouterr().out
    assert "skipped 2 invalid rows" in warning and "row 3" in warning and "row 10" in warning


def test_default_test_size_needs_enough_rows(xlam_file, tmp_path):
    with pytest.raises(DataBuildError, match="not enough for a test split of 12000"):
        build_function_calling(tmp_path / "out", source=str(xlam_file), progress=False)


def test_missing_file_and_unknown_tokenizer_are_clear_errors(tmp_path, xlam_file):
    with pytest.raises(DataBuildError, match="input file not found"):
        build_function_calling(tmp_path / "out", source=str(tmp_path / "nope.jsonl"), progress=False)
    with pytest.raises(DataBuildError, match="could not load tokenizer.*--tool-placement"):
        build_function_calling(
            tmp_path / "out", source=str(xlam_file), tokenizer=str(tmp_path / "no-such-model"), progress=False
        )


@pytest.mark.parametrize("placement", ["system-prompt", "chat-template"])
def test_verl_rlhf_dataset_reads_the_files(xlam_file, tmp_path, tiny_tokenizer, placement):
    from omegaconf import OmegaConf
    from verl.utils.dataset.rl_dataset import RLHFDataset

    paths = build_function_calling(
        tmp_path / "out", source=str(xlam_file), test_size=10, tool_placement=placement, progress=False
    )
    config = OmegaConf.create(
        {"max_prompt_length": 4096, "cache_dir": str(tmp_path / "cache"), "filter_overlong_prompts_workers": 1}
    )
    ds = RLHFDataset(str(paths["test"]), tiny_tokenizer, config)
    assert len(ds) == 10
    item = ds[0]
    assert item["data_source"] == "function_calling" and item["agent_name"] == "r3_agent"
    assert item["raw_prompt"][-1]["role"] == "user"
    assert json.loads(item["reward_model"]["ground_truth"])[0]["name"]
    assert item["extra_info"]["tools_in_chat_template"] is (placement == "chat-template")
    assert openai_tools(item["extra_info"])[0]["type"] == "function"


def test_cli_builds_and_explains(xlam_file, tmp_path, tiny_model_dir, capsys):
    out = tmp_path / "cli"
    argv = ["data", "function-calling", "--source", str(xlam_file), "--output-dir", str(out), "--test-size", "5"]
    assert r3_main([*argv, "--tokenizer", str(tiny_model_dir), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "35 rows" in printed and "5 rows" in printed and "chat template" in printed
    assert r3_main([*argv, "--no-progress"]) == 0
    assert "system message" in capsys.readouterr().out

    with pytest.raises(SystemExit):
        r3_main(["data", "function-calling", "--help"])
    help_text = capsys.readouterr().out
    for words in ("--tokenizer", "--tool-placement", "system message", "12000", "xlam", "--skip-invalid"):
        assert words in help_text
