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
"""Function-calling verifiers: exact (the paper's reward) and BFCL-style AST, bounded on any input."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from r3_plugin.policy.tasks import CORRECT, NO_ANSWER, VERIFIER_ERROR, get_task
from r3_plugin.policy.verifiers.function_calling import (
    ANSWER_TOO_LONG,
    AST_CATEGORIES,
    MAX_RESPONSE_CHARS,
    MISSING_REQUIRED_PARAMETER,
    UNEXPECTED_PARAMETER,
    UNPARSABLE,
    WRONG_ARGUMENTS,
    WRONG_NUMBER_OF_CALLS,
    WRONG_TOOL,
    WRONG_TYPE,
    ToolCallParseError,
    extract_tool_calls,
    function_calling_ast_verify,
    function_calling_verify,
    parse_gold_calls,
    parse_tools,
)

WEATHER = {"name": "get_weather", "arguments": {"city": "Paris", "days": 3}}
TIME = {"name": "get_time", "arguments": {"tz": "CET"}}
GOLD = json.dumps([WEATHER, TIME])


def _dump(value) -> str:
    return json.dumps(value)


# ---------------------------------------------------------------------------------------------- formats
W, T = _dump(WEATHER), _dump(TIME)
FORMATS = [
    ("qwen tool_call tags", f"<tool_call>\n{W}\n</tool_call>\n<tool_call>\n{T}\n</tool_call>"),
    ("list inside one tag", f"<tool_call>[{W}, {T}]</tool_call>"),
    ("unterminated last tag", f"<tool_call>{W}</tool_call><tool_call>{T}"),
    ("fenced json", f"Here you go:\n```json\n[{W}, {T}]\n```\nDone."),
    ("bare fence", f"```\n[{T}, {W}]\n```"),
    ("bare list", f"[{T}, {W}]"),
    ("xlam tool_calls object", _dump({"tool_calls": [WEATHER, TIME]})),
    ("prose then list", f"I will call two tools: [{W}, {T}] and report back."),
    ("one object per line", f"{W}\n{T}"),
    ("mistral prefix", f"[TOOL_CALLS] [{W}, {T}]"),
    (
        "openai wrappers",
        _dump(
            [
                {"type": "function", "function": {"name": c["name"], "arguments": _dump(c["arguments"])}}
                for c in (WEATHER, TIME)
            ]
        ),
    ),
    ("llama parameters", _dump([{"name": c["name"], "parameters": c["arguments"]} for c in (TIME, WEATHER)])),
    ("after thinking", f"<think>maybe [{_dump(TIME)}] only?</think>\n[{W}, {T}]"),
    ("fence inside tag", f"<tool_call>```json\n[{W}, {T}]\n```</tool_call>"),
]


@pytest.mark.parametrize(("name", "response"), FORMATS, ids=[f[0] for f in FORMATS])
def test_accepted_formats(name, response):
    result = function_calling_verify(response, GOLD)
    assert result.passed, result
    assert json.loads(result.answer) and result.category == CORRECT


# ---------------------------------------------------------------------------------------------- exact rule
@pytest.mark.parametrize(
    ("calls", "category"),
    [
        ([TIME, WEATHER], CORRECT),  # parallel calls in any order
        ([{"name": "get_weather", "arguments": {"days": 3, "city": "Paris"}}, TIME], CORRECT),  # key order
        ([WEATHER], WRONG_NUMBER_OF_CALLS),
        ([WEATHER, TIME, TIME], WRONG_NUMBER_OF_CALLS),
        ([WEATHER, WEATHER], WRONG_TOOL),
        ([WEATHER, {"name": "get_date", "arguments": {"tz": "CET"}}], WRONG_TOOL),
        ([{"name": "get_weather", "arguments": {"city": "Paris", "days": 3.0}}, TIME], WRONG_ARGUMENTS),
        ([{"name": "get_weather", "arguments": {"city": "Paris", "days": "3"}}, TIME], WRONG_ARGUMENTS),
        ([{"name": "get_weather", "arguments": {"city": "paris", "days": 3}}, TIME], WRONG_ARGUMENTS),
        ([{"name": "get_weather", "arguments": {"city": "Paris"}}, TIME], WRONG_ARGUMENTS),
        ([{"name": "get_weather", "arguments": {"city": "Paris", "days": 3, "unit": "C"}}, TIME], WRONG_ARGUMENTS),
    ],
)
def test_exact_rule(calls, category):
    result = function_calling_verify(_dump(calls), GOLD)
    assert result.category == category, result
    assert result.passed == (category == CORRECT)


def test_types_are_compared_with_their_json_types():
    for gold_value, model_value in [(1, True), (True, 1), (1, 1.0), (1.0, 1), (0, False), (None, 0), ([1], [1.0])]:
        gold = [{"name": "f", "arguments": {"x": gold_value}}]
        result = function_calling_verify(_dump([{"name": "f", "arguments": {"x": model_value}}]), gold)
        assert result.category == WRONG_ARGUMENTS, (gold_value, model_value)
    nested = {"a": [1, {"b": None, "c": [True, "x"]}], "d": 2.5}
    gold = [{"name": "f", "arguments": {"x": nested}}]
    shuffled = {"d": 2.5, "a": [1, {"c": [True, "x"], "b": None}]}
    assert function_calling_verify(_dump([{"name": "f", "arguments": {"x": shuffled}}]), gold).passed


def test_duplicate_calls_are_a_multiset():
    gold = [TIME, TIME, WEATHER]
    assert function_calling_verify(_dump([WEATHER, TIME, TIME]), gold).passed
    other = {"name": "get_time", "arguments": {"tz": "UTC"}}
    assert function_calling_verify(_dump([WEATHER, TIME, other]), gold).category == WRONG_ARGUMENTS


def test_think_tags_and_tags_inside_strings():
    draft = _dump({"name": "get_time", "arguments": {"tz": "UTC"}})
    # Reasoning first (with or without the opener, which Qwen3's template puts in the prompt): drafts
    # inside it do not count.
    for opener in ("<think>", ""):
        response = f"{opener}draft: <tool_call>{draft}</tool_call> hmm</think>\n<tool_call>[{W}, {T}]</tool_call>"
        assert function_calling_verify(response, GOLD).passed, opener
    # Tags inside argument strings are just text.
    odd = [{"name": "echo", "arguments": {"text": "</think> and <tool_call> and ```"}}]
    for response in (_dump(odd), f"<tool_call>{_dump(odd[0])}</tool_call>"):
        assert function_calling_verify(response, odd).passed, response
    odd = [{"name": "echo", "arguments": {"text": "</think> and <tool_call>"}}]
    assert function_calling_verify(f"```json\n{_dump(odd)}\n```", odd).passed
    assert function_calling_verify("<think>still thinking [" + W, GOLD).category == NO_ANSWER


def test_no_call_expected():
    assert function_calling_verify("I can't help with that with these tools.", "[]").passed
    assert function_calling_verify("[]", "[]").passed
    assert function_calling_verify(f"[{W}]", "[]").category == WRONG_NUMBER_OF_CALLS


@pytest.mark.parametrize(
    ("response", "category"),
    [
        ("", NO_ANSWER),
        ("The weather in Paris is nice.", NO_ANSWER),
        ("<think>[" + W + "]</think>", NO_ANSWER),  # a call only inside the thinking does not count
        ('[{"name": "get_weather", "arguments": {"city": "Paris"', UNPARSABLE),
        ("<tool_call>{'name': 'get_weather'}</tool_call>", UNPARSABLE),
        ("<tool_call></tool_call>", UNPARSABLE),
        ('<tool_call>{"arguments": {}}</tool_call>', UNPARSABLE),
        ('<tool_call>{"name": "f", "arguments": [1, 2]}</tool_call>', UNPARSABLE),
        ('<tool_call>{"name": "f", "arguments": "{not json"}</tool_call>', UNPARSABLE),
        ("```json\n{oops}\n```", UNPARSABLE),
        ("[1, 2, 3]", UNPARSABLE),
    ],
)
def test_failure_categories(response, category):
    result = function_calling_verify(response, GOLD)
    assert result.category == category, result
    assert not result.passed


def test_ground_truth_formats():
    response = f"[{W}, {T}]"
    assert function_calling_verify(response, [WEATHER, TIME]).passed
    assert function_calling_verify(response, np.array([WEATHER, TIME], dtype=object)).passed
    assert function_calling_verify(response, GOLD.encode()).passed
    assert function_calling_verify(f"[{W}]", WEATHER).passed
    assert function_calling_verify(f"[{W}]", {"answers": _dump([WEATHER])}).passed
    assert parse_gold_calls(_dump([{"name": "f", "arguments": _dump({"a": 1})}])) == [
        {"name": "f", "arguments": {"a": 1}}
    ]


def test_ground_truth_survives_a_parquet_round_trip(tmp_path):
    path = tmp_path / "fc.parquet"
    rows = [
        {"data_source": "function_calling", "reward_model": {"style": "rule", "ground_truth": GOLD}},
        {"data_source": "function_calling", "reward_model": {"style": "rule", "ground_truth": _dump([TIME])}},
    ]
    pd.DataFrame(rows).to_parquet(path)
    back = pd.read_parquet(path)
    gt = back.iloc[0]["reward_model"]["ground_truth"]
    assert function_calling_verify(f"<tool_call>[{T}, {W}]</tool_call>", gt).passed


@pytest.mark.parametrize("gt", ["not json", "[1, 2]", '[{"arguments": {}}]', "42"])
def test_bad_ground_truth_is_a_clear_error(gt):
    with pytest.raises(ValueError, match="ground truth"):
        function_calling_verify("[]", gt)
    assert get_task("function_calling").verify("[]", gt).category == VERIFIER_ERROR


def test_registered_tasks_and_prompts():
    task = get_task("function_calling")
    assert task.verifier is function_calling_verify
    assert task.reflection_prompt == (
        "You tried performing the task, but failed in generating the correct tool call. Reflect on what went "
        "wrong and write a short explanation that will help you do better next time."
    )
    assert "tool call" in task.retry_prompt and "same format" in task.retry_prompt
    ast = get_task("function_calling_ast")
    assert ast.verifier is function_calling_ast_verify
    assert ast.reflection_prompt == task.reflection_prompt


# ---------------------------------------------------------------------------------------------- AST check
OPENAI_TOOLS = json.dumps(
    [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Weather forecast",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "city": {"type": "string"},
                        "days": {"type": "number"},
                        "unit": {"type": "string", "default": "celsius"},
                        "hours": {"type": "array", "items": {"type": "integer"}},
                    },
                    "required": ["city"],
                },
            },
        },
        {
            "type": "function",
            "function": {
                "name": "get_time",
                "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
            },
        },
    ]
)
XLAM_TOOLS = [
    {
        "name": "get_weather",
        "description": "Weather forecast",
        "parameters": {
            "city": {"type": "str", "description": "City"},
            "days": {"type": "float, optional", "description": "Days"},
            "unit": {"type": "str, optional", "default": "celsius"},
            "hours": {"type": "List[int]", "description": "Hours", "default": []},
        },
    },
    {"name": "get_time", "parameters": {"tz": {"type": "str"}}},
]


def _ast(args, gold_args, tools=OPENAI_TOOLS, name="get_weather"):
    gold = [{"name": name, "arguments": gold_args}]
    return function_calling_ast_verify(_dump([{"name": name, "arguments": args}]), gold, {"tools": tools})


@pytest.mark.parametrize(
    "tools", [OPENAI_TOOLS, XLAM_TOOLS, json.dumps(XLAM_TOOLS)], ids=["openai", "xlam", "xlam-json"]
)
@pytest.mark.parametrize(
    ("args", "gold_args", "category"),
    [
        ({"city": "Paris", "days": 3}, {"city": "Paris", "days": 3.0}, CORRECT),  # int accepted as a float
        ({"city": "Paris", "days": 3.0}, {"city": "Paris", "days": 3}, CORRECT),
        ({"city": "new york", "days": 3}, {"city": "New-York", "days": 3}, CORRECT),  # BFCL string normalisation
        ({"city": "Paris"}, {"city": "Paris", "unit": "celsius"}, CORRECT),  # omitted default
        ({"city": "Paris", "unit": "celsius"}, {"city": "Paris"}, CORRECT),  # explicit default
        ({"city": "Paris", "hours": [1, 2]}, {"city": "Paris", "hours": [1, 2]}, CORRECT),
        ({"city": "Paris", "hours": [1.0, 2]}, {"city": "Paris", "hours": [1, 2]}, WRONG_TYPE),  # integer items
        ({"days": 3}, {"city": "Paris", "days": 3}, MISSING_REQUIRED_PARAMETER),
        ({"city": "Paris", "country": "FR"}, {"city": "Paris"}, UNEXPECTED_PARAMETER),
        ({"city": "Paris", "days": "3"}, {"city": "Paris", "days": 3}, WRONG_TYPE),
        ({"city": "Paris", "days": True}, {"city": "Paris", "days": 1}, WRONG_TYPE),
        ({"city": "Lyon", "days": 3}, {"city": "Paris", "days": 3}, WRONG_ARGUMENTS),
        ({"city": "Paris", "unit": "kelvin"}, {"city": "Paris"}, WRONG_ARGUMENTS),
        ({"city": "Paris"}, {"city": "Paris", "days": 3}, WRONG_ARGUMENTS),
    ],
)
def test_ast_check(tools, args, gold_args, category):
    result = _ast(args, gold_args, tools)
    assert result.category == category, result
    assert result.category in AST_CATEGORIES


def test_ast_without_schema_still_relaxes_numbers_and_strings():
    assert _ast({"city": "PARIS", "days": 3}, {"city": "paris", "days": 3.0}, tools=None).passed
    assert _ast({"city": "Paris", "extra": 1}, {"city": "Paris"}, tools=None).category == WRONG_ARGUMENTS
    result = function_calling_ast_verify(f"[{W}]", [WEATHER], None)
    assert result.passed


def test_ast_parallel_calls_need_a_matching_not_a_greedy_pass():
    tools = [{"name": "f", "parameters": {"type": "object", "properties": {"n": {"type": "integer"}}}}]
    gold = [{"name": "f", "arguments": {"n": 1.0}}, {"name": "f", "arguments": {"n": 1}}]
    # Model call 1 fits both gold calls, model call 2 fits only the first: a greedy pairing fails.
    response = _dump([{"name": "f", "arguments": {"n": 1}}, {"name": "f", "arguments": {"n": 1.0}}])
    assert function_calling_ast_verify(response, gold, {"tools": tools}).passed
    response = _dump([{"name": "f", "arguments": {"n": 1.0}}, {"name": "f", "arguments": {"n": 1.0}}])
    assert function_calling_ast_verify(response, gold, {"tools": tools}).category == WRONG_TYPE


def test_parse_tools_layouts():
    specs = parse_tools(XLAM_TOOLS)
    assert specs["get_weather"].required == frozenset({"city"})
    assert specs["get_time"].required == frozenset({"tz"})
    assert specs["get_weather"].properties["hours"]["type"] == "array"
    assert parse_tools(OPENAI_TOOLS)["get_weather"].required == frozenset({"city"})
    assert parse_tools(np.array(XLAM_TOOLS, dtype=object))["get_time"].properties == {"tz": {"type": "string"}}
    assert parse_tools([{"name": "noop", "parameters": {}}])["noop"].properties == {}
    with pytest.raises(ValueError, match="tools"):
        parse_tools("{nope")


# ---------------------------------------------------------------------------------------------- properties
# No "<" in generated strings: "</think>" inside an argument is a documented ambiguity (see
# test_think_tags_and_tags_inside_strings), not something to rediscover at random.
_TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="<"), max_size=12)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**12), 10**12),
    st.floats(allow_nan=False, allow_infinity=False),
    _TEXT,
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_TEXT, inner, max_size=4),
    max_leaves=12,
)
_CALLS = st.lists(
    st.fixed_dictionaries(
        {
            "name": st.sampled_from(["a", "b", "get_weather"]),
            "arguments": st.dictionaries(_TEXT.filter(bool), _VALUES, max_size=4),
        }
    ),
    min_size=1,
    max_size=4,
)


def _render(calls, style: int) -> str:
    if style == 0:
        return "".join(f"<tool_call>\n{_dump(c)}\n</tool_call>\n" for c in calls)
    if style == 1:
        return f"```json\n{_dump(calls)}\n```"
    if style == 2:
        return "Calling now: " + _dump(calls)
    return _dump({"tool_calls": calls})


@settings(max_examples=300, deadline=None)
@given(_CALLS, st.randoms(use_true_random=False), st.integers(0, 3))
def test_same_calls_in_any_order_and_format_pass(calls, rnd, style):
    shuffled = []
    for call in calls:
        items = list(call["arguments"].items())
        rnd.shuffle(items)
        shuffled.append({"name": call["name"], "arguments": dict(items)})
    rnd.shuffle(shuffled)
    response = _render(shuffled, style)
    assert function_calling_verify(response, _dump(calls)).passed
    assert function_calling_ast_verify(response, calls, {}).passed


@settings(max_examples=300, deadline=None)
@given(_CALLS, st.data())
def test_changing_one_argument_fails(calls, data):
    with_args = [i for i, c in enumerate(calls) if c["arguments"]]
    if not with_args:
        return
    i = data.draw(st.sampled_from(with_args))
    key = data.draw(st.sampled_from(sorted(calls[i]["arguments"])))
    old = calls[i]["arguments"][key]
    new = data.draw(_VALUES.filter(lambda v: _dump(v) != _dump(old)))
    changed = [dict(c, arguments=dict(c["arguments"])) for c in calls]
    changed[i]["arguments"][key] = new
    result = function_calling_verify(_dump(changed), calls)
    # Only values that JSON cannot tell apart (0.0 vs -0.0) may still pass.
    assert not result.passed or new == old, (old, new)
    if not result.passed:
        assert result.category == WRONG_ARGUMENTS


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_never_raises_on_arbitrary_text(text):
    for verify in (function_calling_verify, function_calling_ast_verify):
        for response in (text, f"<tool_call>{text}</tool_call>", f"```json\n{text}\n```", "[" + text):
            result = verify(response, GOLD, {"tools": OPENAI_TOOLS})
            assert result.category in AST_CATEGORIES


# ---------------------------------------------------------------------------------------------- adversarial
ADVERSARIAL = [
    ("deeply nested list", "[" * 99_999, UNPARSABLE),
    ("deeply nested list closed", "[" * 50_000 + "]" * 50_000, UNPARSABLE),
    ("deeply nested in tag", "<tool_call>" + "[" * 90_000 + "</tool_call>", UNPARSABLE),
    ("deeply nested arguments", '[{"name": "f", "arguments": ' + '{"a": ' * 500 + "1" + "}" * 500 + "}]", UNPARSABLE),
    ("deep but parsable", '{"name": "get_weather", "arguments": {"city": ' + "[" * 900 + "]" * 900 + "}}", UNPARSABLE),
    ("megabyte garbage", "{" * 2**20, ANSWER_TOO_LONG),
    ("many braces under cap", "{ " * 40_000 + f"[{W}, {T}]", CORRECT),
    ("megabyte argument", _dump([{"name": "get_weather", "arguments": {"city": "x" * 2**20}}]), ANSWER_TOO_LONG),
    ("unterminated string", '[{"name": "get_weather", "arguments": {"city": "' + "x" * 90_000, UNPARSABLE),
    ("NaN", '[{"name": "get_weather", "arguments": {"city": "Paris", "days": NaN}}]', UNPARSABLE),
    ("Infinity", '[{"name": "get_weather", "arguments": {"city": "Paris", "days": -Infinity}}]', UNPARSABLE),
    ("huge integer", '[{"name": "get_weather", "arguments": {"days": ' + "9" * 5000 + "}}]", UNPARSABLE),
    (
        "huge exponent",
        '[{"name": "get_weather", "arguments": {"city": "Paris", "days": 1e999999}}]',
        WRONG_NUMBER_OF_CALLS,
    ),
    ("lone surrogate", '[{"name": "get_weather", "arguments": {"city": "\\ud800", "days": 3}}]', WRONG_NUMBER_OF_CALLS),
    ("many tool_call tags", "<tool_call>{}</tool_call>" * 3_000, UNPARSABLE),
    ("python call", "get_weather(city='Paris', days=3)", NO_ANSWER),
    ("many plausible starts", '{"' * 40_000 + f"[{W}, {T}]", UNPARSABLE),
]


@pytest.mark.parametrize(("name", "response", "category"), ADVERSARIAL, ids=[a[0] for a in ADVERSARIAL])
def test_adversarial_inputs(hang_guard, name, response, category):
    assert (len(response) > MAX_RESPONSE_CHARS) == (category == ANSWER_TOO_LONG)
    for verify in (function_calling_verify, function_calling_ast_verify):
        result = verify(response, GOLD, {"tools": OPENAI_TOOLS})
        assert result.category == category, (name, result.category, result.detail)
        if result.answer is not None:
            result.answer.encode("utf-8")  # always writable to UTF-8 reports


def test_non_utf8_bytes_through_the_task(hang_guard):
    task = get_task("function_calling")
    assert task.verify(f"[{W}, {T}]".encode() + b"\xff\xfe", GOLD).passed
    assert task.verify(b"\xff\xfe\x80", GOLD).category == NO_ANSWER
    assert task.verify(None, GOLD).category == NO_ANSWER
    with pytest.raises(ToolCallParseError) as info:
        extract_tool_calls(b"\x80[")
    assert info.value.category == UNPARSABLE
