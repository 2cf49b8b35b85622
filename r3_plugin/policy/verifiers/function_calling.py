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
"""Function-calling verifiers for APIGen / xlam-function-calling-60k style tasks.

The gold answer is a list of ``{"name": ..., "arguments": {...}}``. Two tasks are registered:

* ``function_calling`` (the paper's rule, used for reward): correct only if the model produced the
  same calls with the same arguments. Parallel calls are compared as a multiset (order-insensitive),
  argument dicts ignore key order, and values are compared exactly after JSON parsing *with their
  types*: ``1`` is not ``1.0`` and ``true`` is not ``1``.
* ``function_calling_ast`` (an evaluation option in the spirit of BFCL's AST checker): the tool
  schemas in ``extra_info["tools"]`` decide which parameters are required or unexpected and what
  type each must have; integers are accepted where a number is expected, strings are compared after
  BFCL's normalisation (case, spaces and ``,./-_*^`` ignored), and an omitted optional parameter
  matches a gold value equal to its default.

Model output is read leniently in format and strictly in content: ``<tool_call>...</tool_call>``
blocks (Qwen/Hermes style, each an object or a list), a fenced code block, a bare JSON list or
object, ``{"tool_calls": [...]}``, OpenAI-style ``{"function": {...}}`` wrappers, ``"parameters"``
for ``"arguments"`` (Llama 3.1) and arguments encoded as a JSON string. Parsing is bounded: the text
after the reasoning (``</think>``) is capped at :data:`MAX_RESPONSE_CHARS`, JSON nesting at
:data:`MAX_JSON_DEPTH`, calls at :data:`MAX_CALLS`; ``NaN``/``Infinity`` and over-long integers are
rejected; nothing is executed.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from r3_plugin.policy.tasks import CORRECT, NO_ANSWER, VerifyResult, register_task, to_plain

__all__ = [
    "ANSWER_TOO_LONG",
    "CORRECT",
    "MISSING_REQUIRED_PARAMETER",
    "NO_ANSWER",
    "UNEXPECTED_PARAMETER",
    "UNPARSABLE",
    "WRONG_ARGUMENTS",
    "WRONG_NUMBER_OF_CALLS",
    "WRONG_TOOL",
    "WRONG_TYPE",
    "CATEGORIES",
    "AST_CATEGORIES",
    "MAX_CALLS",
    "MAX_JSON_DEPTH",
    "MAX_RESPONSE_CHARS",
    "REFLECTION_PROMPT",
    "RETRY_PROMPT",
    "ToolCallParseError",
    "ToolSpec",
    "extract_tool_calls",
    "function_calling_ast_verify",
    "function_calling_verify",
    "parse_gold_calls",
    "parse_tools",
]

# ---------------------------------------------------------------------------------------------- categories
UNPARSABLE = "unparsable"
ANSWER_TOO_LONG = "answer_too_long"
WRONG_NUMBER_OF_CALLS = "wrong_number_of_calls"
WRONG_TOOL = "wrong_tool"
WRONG_ARGUMENTS = "wrong_arguments"
# Only the schema-aware (AST) check reports these three.
MISSING_REQUIRED_PARAMETER = "missing_required_parameter"
UNEXPECTED_PARAMETER = "unexpected_parameter"
WRONG_TYPE = "wrong_type"
CATEGORIES = (NO_ANSWER, ANSWER_TOO_LONG, UNPARSABLE, WRONG_NUMBER_OF_CALLS, WRONG_TOOL, WRONG_ARGUMENTS, CORRECT)
AST_CATEGORIES = CATEGORIES[:-1] + (MISSING_REQUIRED_PARAMETER, UNEXPECTED_PARAMETER, WRONG_TYPE, CORRECT)

# ---------------------------------------------------------------------------------------------- limits
#: Longest response (after the reasoning's ``</think>``) that is searched for tool calls (about 25k tokens).
MAX_RESPONSE_CHARS = 100_000
#: Deepest JSON nesting inside one call's arguments.
MAX_JSON_DEPTH = 32
#: Most tool calls in one answer.
MAX_CALLS = 64
#: Most positions tried when looking for JSON inside free text.
MAX_DECODE_ATTEMPTS = 64

REFLECTION_PROMPT = (
    "You tried performing the task, but failed in generating the correct tool call. Reflect on what went "
    "wrong and write a short explanation that will help you do better next time."
)
RETRY_PROMPT = (
    "Now try again: produce the correct tool call(s), with every required argument, in the same format as before."
)


class ToolCallParseError(ValueError):
    """The response holds no usable tool calls; ``category`` says which way it failed."""

    def __init__(self, category: str, detail: str) -> None:
        super().__init__(detail)
        self.category = category
        self.detail = detail


# ---------------------------------------------------------------------------------------------- JSON
def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(parse_constant=_reject_constant)
_JSON_START = re.compile(r"[\[{]")
# Where a tool call can start inside prose: an object with a key, or a list of objects.
_CALL_START = re.compile(r"\{(?=\s*\")|\[(?=\s*\{)")
_FENCE = re.compile(r"```[A-Za-z0-9_+-]*[ \t]*\r?\n?(.*?)```", re.DOTALL)
_TOOL_OPEN, _TOOL_CLOSE = "<tool_call>", "</tool_call>"
_THINK_OPEN, _THINK_CLOSE = "<think>", "</think>"


def _loads(text: str, what: str) -> Any:
    try:
        return _DECODER.decode(text)
    except RecursionError:
        raise ToolCallParseError(UNPARSABLE, f"{what}: JSON nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers over Python's digit limit
        raise ToolCallParseError(UNPARSABLE, f"{what}: invalid JSON ({str(exc)[:120]})") from None


def _depth_ok(value: Any, limit: int) -> bool:
    """True if ``value`` nests at most ``limit`` containers deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        if isinstance(v, dict):
            if depth > limit:
                return False
            stack.extend((x, depth + 1) for x in v.values())
        elif isinstance(v, list):
            if depth > limit:
                return False
            stack.extend((x, depth + 1) for x in v)
    return True


# ---------------------------------------------------------------------------------------------- extraction
def _one_call(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise ToolCallParseError(UNPARSABLE, f"{where}: a call must be a JSON object, got {type(item).__name__}")
    if "name" not in item and isinstance(item.get("function"), dict):  # OpenAI {"type": "function", "function": ...}
        item = item["function"]
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise ToolCallParseError(UNPARSABLE, f"{where}: a call has no 'name' string (keys: {sorted(item)[:8]})")
    if "arguments" in item:
        args = item["arguments"]
    else:
        args = item.get("parameters", {})
    if isinstance(args, str):  # OpenAI encodes arguments as a JSON string
        args = _loads(args, f"{where}: arguments of {name!r}") if args.strip() else {}
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ToolCallParseError(UNPARSABLE, f"{where}: arguments of {name!r} must be an object")
    if not _depth_ok(args, MAX_JSON_DEPTH):
        raise ToolCallParseError(UNPARSABLE, f"{where}: arguments of {name!r} nest deeper than {MAX_JSON_DEPTH}")
    return {"name": name, "arguments": args}


def _calls_from_value(value: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(value, dict) and "name" not in value and isinstance(value.get("tool_calls"), list):
        value = value["tool_calls"]  # xLAM's {"tool_calls": [...]}
    items = value if isinstance(value, list) else [value]
    if len(items) > MAX_CALLS:
        raise ToolCallParseError(UNPARSABLE, f"{where}: more than {MAX_CALLS} calls")
    return [_one_call(item, where) for item in items]


def _tool_call_blocks(text: str) -> list[str]:
    blocks: list[str] = []
    pos = 0
    while True:
        start = text.find(_TOOL_OPEN, pos)
        if start < 0:
            return blocks
        start += len(_TOOL_OPEN)
        end = text.find(_TOOL_CLOSE, start)
        if len(blocks) >= MAX_CALLS:
            raise ToolCallParseError(UNPARSABLE, f"more than {MAX_CALLS} <tool_call> blocks")
        if end < 0:  # generation stopped before the closing tag
            blocks.append(text[start:])
            return blocks
        blocks.append(text[start:end])
        pos = end + len(_TOOL_CLOSE)


def _scan_for_calls(text: str) -> list[dict[str, Any]] | None:
    """Call-shaped JSON values embedded in free text, left to right; None if there are none.

    Only positions that can start a call are tried (``{"`` or ``[{``), at most
    MAX_DECODE_ATTEMPTS of them, and nesting deep enough to hit the recursion limit ends the scan,
    so the work stays a small multiple of the text length.
    """
    calls: list[dict[str, Any]] = []
    found = False
    pos = 0
    for _ in range(MAX_DECODE_ATTEMPTS):
        m = _CALL_START.search(text, pos)
        if m is None:
            break
        try:
            value, end = _DECODER.raw_decode(text, m.start())
        except RecursionError:
            break
        except ValueError:
            pos = m.start() + 1
            continue
        pos = end
        try:
            got = _calls_from_value(value, "response")
        except ToolCallParseError:
            continue
        if got:
            found = True
            calls.extend(got)
            if len(calls) > MAX_CALLS:
                raise ToolCallParseError(UNPARSABLE, f"more than {MAX_CALLS} calls")
    return calls if found else None


def extract_tool_calls(response: str | bytes) -> list[dict[str, Any]]:
    """The tool calls in a model response, as ``[{"name": str, "arguments": dict}, ...]``.

    Looks, in order, at ``<tool_call>`` blocks, the last fenced code block, the whole text as JSON,
    and finally JSON values embedded in prose (all call-shaped ones, concatenated). A leading
    ``<think>...</think>`` block is ignored. Raises :class:`ToolCallParseError` (with a category) when there
    is nothing usable; never executes anything and never recurses on model-controlled depth.
    """
    if isinstance(response, bytes):
        response = response.decode("utf-8", errors="replace")
    if not isinstance(response, str):
        raise ToolCallParseError(NO_ANSWER, f"response is {type(response).__name__}, not text")
    lead = response.lstrip()
    if lead.startswith(_THINK_OPEN):  # reasoning first: only what follows the first </think> counts
        end = lead.find(_THINK_CLOSE)
        if end < 0:
            raise ToolCallParseError(NO_ANSWER, "the response is an unfinished <think> block")
        return _extract(lead[end + len(_THINK_CLOSE) :])
    end = response.find(_THINK_CLOSE)
    if end < 0:
        return _extract(response)
    opener = response.rfind(_TOOL_OPEN, 0, end)
    if opener >= 0 and response.find(_TOOL_CLOSE, opener, end) < 0:  # inside a <tool_call> block
        return _extract(response)
    # "</think>" without an opener: a template opened the reasoning (Qwen3), or the tag sits inside
    # an argument string. Prefer the text after it; fall back to the whole response.
    try:
        return _extract(response[end + len(_THINK_CLOSE) :])
    except ToolCallParseError as exc:
        try:
            return _extract(response)
        except ToolCallParseError:
            raise exc from None


def _extract(text: str) -> list[dict[str, Any]]:
    if len(text) > MAX_RESPONSE_CHARS:
        raise ToolCallParseError(ANSWER_TOO_LONG, f"response longer than {MAX_RESPONSE_CHARS} characters")
    stripped = text.strip()
    if _TOOL_OPEN in text:
        try:
            return _calls_from_tool_call_blocks(text)
        except ToolCallParseError as exc:
            # Tags inside string values of a plain or fenced JSON answer are not tags; broken blocks
            # stay broken (no free-text scan).
            calls, _ = _fenced_calls(text)
            if calls is None:
                calls = _whole_text_calls(stripped)
            if calls is None:
                raise exc from None
            return calls
    calls, fence_error = _fenced_calls(text)
    if calls is not None:
        return calls
    if not stripped:
        raise ToolCallParseError(NO_ANSWER, "empty response")
    calls = _whole_text_calls(stripped)
    if calls is None:
        calls = _scan_for_calls(stripped)
    if calls is not None:
        return calls
    if fence_error is not None:
        raise fence_error
    if _JSON_START.search(stripped) is None:
        raise ToolCallParseError(NO_ANSWER, "no JSON tool call in the response")
    raise ToolCallParseError(UNPARSABLE, "no parsable tool call in the response")


def _fenced_calls(text: str) -> tuple[list[dict[str, Any]] | None, ToolCallParseError | None]:
    """Calls from the last non-empty fenced code block: (calls, None), (None, error) or (None, None)."""
    if "```" not in text:
        return None, None
    blocks = [b.strip() for b in _FENCE.findall(text)]
    blocks = [b for b in blocks if b]
    if not blocks:
        return None, None
    try:
        return _calls_from_value(_loads(blocks[-1], "code block"), "code block"), None
    except ToolCallParseError as exc:  # maybe "```" inside a JSON string: the caller tries the rest
        return None, exc


def _calls_from_tool_call_blocks(text: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(_tool_call_blocks(text)):
        where = f"<tool_call> block {i + 1}"
        block = block.strip()
        fenced = _FENCE.search(block)
        if fenced:
            block = fenced.group(1).strip()
        if not block:
            raise ToolCallParseError(UNPARSABLE, f"{where} is empty")
        calls.extend(_calls_from_value(_loads(block, where), where))
        if len(calls) > MAX_CALLS:
            raise ToolCallParseError(UNPARSABLE, f"more than {MAX_CALLS} calls")
    return calls


def _whole_text_calls(stripped: str) -> list[dict[str, Any]] | None:
    """The calls if the whole (stripped) text is one call-shaped JSON value, else None."""
    if not stripped or stripped[0] not in "[{":
        return None
    try:
        return _calls_from_value(_loads(stripped, "response"), "response")
    except ToolCallParseError:
        return None


# ---------------------------------------------------------------------------------------------- gold
def parse_gold_calls(ground_truth: Any) -> list[dict[str, Any]]:
    """Gold calls from a JSON string, a list (or numpy array) of dicts, or one dict.

    Raises ValueError naming the problem (a bad ground truth is a data bug, not a model failure).
    Store the gold answer as a JSON string: parquet turns lists of dicts into structs whose keys are
    the union over all rows, which silently adds ``None`` arguments.
    """
    gt = ground_truth
    if isinstance(gt, bytes):
        gt = gt.decode("utf-8")
    if isinstance(gt, str):
        try:
            gt = json.loads(gt)
        except ValueError as exc:
            raise ValueError(f"function-calling ground truth is not valid JSON: {ground_truth!r:.200}") from exc
    gt = to_plain(gt)
    if isinstance(gt, dict) and "name" not in gt and isinstance(gt.get("answers"), list | str):
        return parse_gold_calls(gt["answers"])
    try:
        return _calls_from_value(gt, "ground truth")
    except ToolCallParseError as exc:
        raise ValueError(f"function-calling ground truth is not a list of {{name, arguments}}: {exc.detail}") from None


# ---------------------------------------------------------------------------------------------- exact check
def _canon(value: Any) -> Any:
    """A hashable form that keeps JSON types apart (so 1, 1.0 and true all differ)."""
    t = type(value)
    if t is dict:
        return ("d", tuple(sorted((k, _canon(v)) for k, v in value.items())))
    if t is list:
        return ("l", tuple(_canon(v) for v in value))
    if t is str:
        return ("s", value)
    if t is bool:
        return ("b", value)
    if t is int:
        return ("i", value)
    if t is float:
        return ("f", value)
    if value is None:
        return ("n", None)
    return ("?", repr(value))


def _answer_text(calls: list[dict[str, Any]]) -> str:
    text = json.dumps(calls, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from "\ud800"-style escapes: keep the text writable
        text = json.dumps(calls)
    return text


def _count_and_names(pred: list[dict[str, Any]], gold: list[dict[str, Any]], answer: str) -> VerifyResult | None:
    if len(pred) != len(gold):
        return VerifyResult(False, WRONG_NUMBER_OF_CALLS, answer, f"{len(pred)} calls, expected {len(gold)}")
    pred_names = Counter(c["name"] for c in pred)
    gold_names = Counter(c["name"] for c in gold)
    if pred_names != gold_names:
        wrong = sorted((pred_names - gold_names).elements())
        return VerifyResult(False, WRONG_TOOL, answer, f"called {wrong}, expected {sorted(gold_names.elements())}")
    return None


def _extract_and_match_names(
    response: str, gold: list[dict[str, Any]]
) -> VerifyResult | tuple[list[dict[str, Any]], str]:
    """The checks both verifiers share, written once: parse the response, then compare call count and names.

    Returns the final verdict when these already decide it (unparseable response, no call expected
    and none made, wrong number of calls, wrong tools), else the parsed calls and their answer text.
    """
    try:
        pred = extract_tool_calls(response)
    except ToolCallParseError as exc:
        if not gold and exc.category == NO_ANSWER:
            return VerifyResult(True, CORRECT, "[]", "no call expected and none made")
        return VerifyResult(False, exc.category, None, exc.detail)
    answer = _answer_text(pred)
    mismatch = _count_and_names(pred, gold, answer)
    if mismatch is not None:
        return mismatch
    return pred, answer


def function_calling_verify(
    response: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None
) -> VerifyResult:
    """The paper's exact rule: same calls (as a multiset), same arguments, same JSON types."""
    gold = parse_gold_calls(ground_truth)
    checked = _extract_and_match_names(response, gold)
    if isinstance(checked, VerifyResult):
        return checked
    pred, answer = checked
    pred_c = Counter((c["name"], _canon(c["arguments"])) for c in pred)
    gold_c = Counter((c["name"], _canon(c["arguments"])) for c in gold)
    if pred_c == gold_c:
        return VerifyResult(True, CORRECT, answer)
    wrong = sorted({name for name, _ in (pred_c - gold_c)})
    return VerifyResult(False, WRONG_ARGUMENTS, answer, f"arguments differ for {wrong}")


# ---------------------------------------------------------------------------------------------- AST check
@dataclass(frozen=True)
class ToolSpec:
    """What the AST check needs from one tool schema."""

    name: str
    #: Parameter schemas by name; None when the tool's parameters are not described.
    properties: Mapping[str, Mapping[str, Any]] | None = None
    required: frozenset[str] = frozenset()


_PY_TYPES = {
    "str": "string",
    "string": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "list": "array",
    "array": "array",
    "tuple": "array",
    "set": "array",
    "dict": "object",
    "object": "object",
    "none": "null",
    "null": "null",
}
_OPTIONAL_SUFFIX = re.compile(r",\s*optional\s*$", re.IGNORECASE)
_GENERIC = re.compile(r"^(?:typing\.)?(\w+)\s*\[(.*)\]$", re.DOTALL)


def _python_type_schema(type_str: str) -> tuple[dict[str, Any], bool]:
    """xlam's Python-style type string (``"List[int]"``, ``"str, optional"``) to a schema + optional flag."""
    s = type_str.strip()
    optional = False
    if _OPTIONAL_SUFFIX.search(s):
        s, optional = _OPTIONAL_SUFFIX.sub("", s).strip(), True
    m = _GENERIC.match(s)
    if m and m.group(1).lower() == "optional":
        s, optional = m.group(2).strip(), True
        m = _GENERIC.match(s)
    if m:
        head = _PY_TYPES.get(m.group(1).lower())
        if head == "array":
            inner = m.group(2).strip()
            items, _ = _python_type_schema(inner) if "," not in inner else ({}, False)
            return ({"type": "array", "items": items} if items else {"type": "array"}), optional
        return ({"type": head} if head else {}), optional
    simple = _PY_TYPES.get(s.lower())
    return ({"type": simple} if simple else {}), optional


def _tool_spec(tool: Any) -> ToolSpec | None:
    if not isinstance(tool, dict):
        return None
    if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        tool = tool["function"]
    name = tool.get("name")
    if not isinstance(name, str):
        return None
    params = tool.get("parameters") or {}
    if not isinstance(params, dict):
        return ToolSpec(name)
    if params.get("type") == "object" or isinstance(params.get("properties"), dict):  # JSON Schema
        props = params.get("properties") or {}
        required = params.get("required") or []
        return ToolSpec(
            name,
            {str(k): v for k, v in props.items() if isinstance(v, dict)},
            frozenset(r for r in required if isinstance(r, str)),
        )
    props: dict[str, dict[str, Any]] = {}
    required_names: set[str] = set()
    for pname, spec in params.items():  # xlam layout: {param: {"type": "str", "default": ...}}
        if not isinstance(spec, dict):
            continue
        schema, optional = _python_type_schema(spec["type"]) if isinstance(spec.get("type"), str) else ({}, False)
        if "default" in spec:
            schema = {**schema, "default": spec["default"]}
        props[str(pname)] = schema
        if not optional and "default" not in spec:
            required_names.add(str(pname))
    return ToolSpec(name, props, frozenset(required_names))


def parse_tools(tools: Any) -> dict[str, ToolSpec]:
    """Tool specs by name from ``extra_info["tools"]``: a JSON string or a list (OpenAI or xlam layout)."""
    if tools is None:
        return {}
    if isinstance(tools, bytes):
        tools = tools.decode("utf-8")
    if isinstance(tools, str):
        try:
            tools = json.loads(tools)
        except ValueError as exc:
            raise ValueError(f"extra_info['tools'] is not valid JSON: {exc}") from exc
    tools = to_plain(tools)
    if isinstance(tools, dict):
        tools = [tools]
    if not isinstance(tools, list):
        raise ValueError(f"extra_info['tools'] must be a list of tool schemas, got {type(tools).__name__}")
    specs = {}
    for tool in tools:
        spec = _tool_spec(tool)
        if spec is not None:
            specs[spec.name] = spec
    return specs


_BFCL_STRIP = re.compile(r"[ ,./\-_*^]")


def _norm_str(s: str) -> str:
    """BFCL's string standardisation: drop spaces and ``,./-_*^``, lowercase, single to double quotes."""
    return _BFCL_STRIP.sub("", s).lower().replace("'", '"')


def _is_number(v: Any) -> bool:
    return type(v) is int or type(v) is float


def _schema_types(schema: Mapping[str, Any] | None) -> tuple[str, ...]:
    if not schema:
        return ()
    t = schema.get("type")
    if isinstance(t, str):
        return (t,)
    if isinstance(t, list):
        return tuple(x for x in t if isinstance(x, str))
    return ()


def _type_ok(value: Any, schema: Mapping[str, Any] | None) -> bool:
    """Does ``value`` have a type the schema allows? Unknown or missing types allow anything."""
    types = _schema_types(schema)
    if not types:
        return True
    for t in types:
        if t == "string" and type(value) is str:
            return True
        if t == "integer" and type(value) is int:
            return True
        if t in ("number", "float") and _is_number(value):  # ints are accepted as floats
            return True
        if t == "boolean" and type(value) is bool:
            return True
        if t == "null" and value is None:
            return True
        if t == "object" and type(value) is dict:
            return True
        if t == "array" and type(value) is list:
            items = schema.get("items") if schema else None
            return all(_type_ok(v, items) for v in value) if isinstance(items, dict) else True
        if t not in ("string", "integer", "number", "float", "boolean", "null", "object", "array"):
            return True
    return False


def _ast_equal(model: Any, gold: Any, schema: Mapping[str, Any] | None) -> bool:
    """Value match with BFCL-style leniency: int/float by value (not for integer parameters), strings normalised."""
    if type(model) is bool or type(gold) is bool:
        return type(model) is type(gold) and model == gold
    if _is_number(model) and _is_number(gold):
        if type(model) is float and type(gold) is int and "integer" in _schema_types(schema):
            return False
        return model == gold
    if type(model) is str and type(gold) is str:
        return model == gold or _norm_str(model) == _norm_str(gold)
    if type(model) is list and type(gold) is list:
        items = schema.get("items") if schema else None
        items = items if isinstance(items, dict) else None
        return len(model) == len(gold) and all(_ast_equal(m, g, items) for m, g in zip(model, gold, strict=True))
    if type(model) is dict and type(gold) is dict:
        props = schema.get("properties") if schema else None
        props = props if isinstance(props, dict) else {}
        return model.keys() == gold.keys() and all(_ast_equal(model[k], gold[k], props.get(k)) for k in model)
    return model is None and gold is None


def _check_call(pred: dict[str, Any], gold: dict[str, Any], spec: ToolSpec | None) -> tuple[str, str]:
    """(category, detail) for one same-name pair; category CORRECT when they match."""
    margs, gargs = pred["arguments"], gold["arguments"]
    props = (spec.properties if spec else None) or {}
    name = gold["name"]
    if spec is not None and spec.properties is not None:
        unexpected = sorted(k for k in margs if k not in props)
        if unexpected:
            return UNEXPECTED_PARAMETER, f"{name}: parameters not in the schema: {unexpected}"
    if spec is not None:
        missing = sorted(k for k in spec.required if k not in margs)
        if missing:
            return MISSING_REQUIRED_PARAMETER, f"{name}: missing required parameters {missing}"
    for key in sorted(margs.keys() | gargs.keys()):
        schema = props.get(key)
        if key in margs and key in gargs:
            if _ast_equal(margs[key], gargs[key], schema):
                continue
            if not _type_ok(margs[key], schema):
                return WRONG_TYPE, f"{name}: {key!r} has the wrong type ({type(margs[key]).__name__})"
            return WRONG_ARGUMENTS, f"{name}: {key!r} is {margs[key]!r:.80}, expected {gargs[key]!r:.80}"
        has_default = schema is not None and "default" in schema
        if key in gargs:  # omitted: fine when optional and the gold value is the default
            if has_default and key not in (spec.required if spec else ()):
                if _ast_equal(schema["default"], gargs[key], schema):
                    continue
            if spec is not None and key in spec.required:
                return MISSING_REQUIRED_PARAMETER, f"{name}: missing required parameter {key!r}"
            return WRONG_ARGUMENTS, f"{name}: missing argument {key!r}"
        # given but not in the gold call: fine when it equals the default
        if has_default and _ast_equal(margs[key], schema["default"], schema):
            continue
        if not _type_ok(margs[key], schema):
            return WRONG_TYPE, f"{name}: {key!r} has the wrong type ({type(margs[key]).__name__})"
        return WRONG_ARGUMENTS, f"{name}: unexpected argument {key!r}"
    return CORRECT, ""


def _perfect_matching(ok: list[list[bool]]) -> bool:
    """Kuhn's augmenting paths: can every gold call be paired with its own passing model call?"""
    n = len(ok)
    owner = [-1] * n  # model call j -> gold call

    def augment(i: int, seen: list[bool]) -> bool:
        for j in range(n):
            if ok[i][j] and not seen[j]:
                seen[j] = True
                if owner[j] < 0 or augment(owner[j], seen):
                    owner[j] = i
                    return True
        return False

    return all(augment(i, [False] * n) for i in range(n))


def function_calling_ast_verify(
    response: str, ground_truth: Any, extra_info: Mapping[str, Any] | None = None
) -> VerifyResult:
    """Schema-aware check in the spirit of BFCL's AST checker (see the module docstring)."""
    gold = parse_gold_calls(ground_truth)
    specs = parse_tools(extra_info.get("tools")) if extra_info else {}
    checked = _extract_and_match_names(response, gold)
    if isinstance(checked, VerifyResult):
        return checked
    pred, answer = checked
    n = len(gold)
    ok = [[False] * n for _ in range(n)]
    first_error: tuple[str, str] | None = None
    for i, g in enumerate(gold):
        for j, p in enumerate(pred):
            if p["name"] != g["name"]:
                continue
            category, detail = _check_call(p, g, specs.get(g["name"]))
            ok[i][j] = category == CORRECT
            if category != CORRECT and first_error is None:
                first_error = (category, detail)
    if _perfect_matching(ok):
        return VerifyResult(True, CORRECT, answer)
    category, detail = first_error or (WRONG_ARGUMENTS, "calls cannot be paired")
    return VerifyResult(False, category, answer, detail)


register_task(
    "function_calling",
    function_calling_verify,
    reflection_prompt=REFLECTION_PROMPT,
    retry_prompt=RETRY_PROMPT,
    description="APIGen/xlam function calling: exact calls and arguments (types included), order-insensitive.",
    categories=CATEGORIES,
)
register_task(
    "function_calling_ast",
    function_calling_ast_verify,
    reflection_prompt=REFLECTION_PROMPT,
    retry_prompt=RETRY_PROMPT,
    description="Function calling, BFCL-style AST check against the tool schemas in extra_info['tools'].",
    categories=AST_CATEGORIES,
)
