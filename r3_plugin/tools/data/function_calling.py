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
"""Function-calling data: APIGen's xlam-function-calling-60k (or a local file in its layout).

Each input row has ``query`` (text), ``tools`` and ``answers`` (JSON strings or lists). xlam tools
describe parameters as ``{param: {"type": "str", "description": ..., "default": ...}}``, which is
not JSON Schema; they are converted to OpenAI function schemas, which is what chat templates'
``tools=`` argument expects. Where the tools go is decided here, once, at build time:

* the model's chat template renders tools (checked by rendering a probe tool with the tokenizer
  given by ``tokenizer``): the prompt holds only the query and ``extra_info["tools_in_chat_template"]``
  is True, so the agent loop passes ``tools=json.loads(extra_info["tools"])`` to the template;
* otherwise (or with no tokenizer): the tools are written as JSON into a system message.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from r3_plugin.policy.config import AGENT_NAME
from r3_plugin.tools.data.io import SPLITS, DataBuildError, SourceRow, load_rows, split_indices, where, write_splits
from r3_plugin.tools.data.prompts import function_calling_messages

DATA_SOURCE = "function_calling"
ABILITY = "function_calling"
HF_DATASET = "Salesforce/xlam-function-calling-60k"
DEFAULT_OUTPUT_DIR = "~/data/r3/function_calling"
DEFAULT_TEST_SIZE = 12_000  # the paper's APIGen test set
TOOL_PLACEMENTS = ("auto", "chat-template", "system-prompt")

_PROBE_TOOL_NAME = "r3_probe_tool_q7x"

_SIMPLE_TYPES = {
    "str": "string",
    "string": "string",
    "text": "string",
    "int": "integer",
    "integer": "integer",
    "float": "number",
    "number": "number",
    "double": "number",
    "decimal": "number",
    "bool": "boolean",
    "boolean": "boolean",
    "dict": "object",
    "object": "object",
    "mapping": "object",
    "list": "array",
    "array": "array",
    "tuple": "array",
    "set": "array",
    "sequence": "array",
    "null": "null",
    "none": "null",
}
_ARRAY_HEADS = {"list", "tuple", "set", "sequence", "iterable"}
_OBJECT_HEADS = {"dict", "mapping"}


# --------------------------------------------------------------------------- type and schema conversion


def _split_top_level(text: str) -> list[str]:
    """Split ``"int, List[str]"`` on commas that are not inside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i].strip())
            start = i + 1
    parts.append(text[start:].strip())
    return [p for p in parts if p]


def xlam_type_to_schema(type_str: str) -> tuple[dict[str, Any] | None, bool]:
    """Map an xlam/Python type string to a JSON-Schema fragment.

    Returns ``(schema, optional)``: ``schema`` None when the type cannot be expressed (the caller
    keeps the original string in the description); ``optional`` True for ``Optional[...]`` and
    ``"..., optional"``.
    """
    s = type_str.strip()
    optional = False
    m = re.fullmatch(r"(.*?),\s*optional", s, flags=re.IGNORECASE)
    if m:
        s, optional = m.group(1).strip(), True
    m = re.fullmatch(r"(?:typing\.)?Optional\[(.*)\]", s)
    if m:
        s, optional = m.group(1).strip(), True
    return _type_schema(s), optional


def _type_schema(s: str) -> dict[str, Any] | None:
    s = s.strip()
    if s.lower() in ("any", "typing.any"):
        return {}
    simple = _SIMPLE_TYPES.get(s.lower())
    if simple is not None:
        return {"type": simple}
    m = re.fullmatch(r"(?:typing\.)?(\w+)\[(.*)\]", s)
    if not m:
        return None
    head, args = m.group(1).lower(), _split_top_level(m.group(2))
    if head in _ARRAY_HEADS:
        schema: dict[str, Any] = {"type": "array"}
        if len(args) == 1 or (head == "tuple" and len(args) == 2 and args[1] == "..."):
            items = _type_schema(args[0])
            if items:
                schema["items"] = items
        return schema
    if head in _OBJECT_HEADS:
        return {"type": "object"}
    if head == "optional" and len(args) == 1:
        inner = _type_schema(args[0])
        return None if inner is None else inner
    if head == "union":
        members = [_type_schema(a) for a in args]
        if any(m is None or "type" not in m for m in members):
            return None
        types = []
        for member in members:
            if member["type"] not in types:
                types.append(member["type"])
        if set(types) == {"integer", "number"}:
            return {"type": "number"}
        return {"type": types[0]} if len(types) == 1 else {"type": types}
    if head == "literal":
        values = []
        for a in args:
            try:
                values.append(json.loads(a.replace("'", '"')))
            except json.JSONDecodeError:
                return None
        return {"enum": values}
    return None


def xlam_tool_to_openai(tool: dict[str, Any], at: str) -> dict[str, Any]:
    """Convert one tool (xlam layout, or already an OpenAI/JSON-Schema function) to an OpenAI schema."""
    if tool.get("type") == "function" and isinstance(tool.get("function"), dict):
        tool = tool["function"]
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise DataBuildError(f"{at}: a tool has no 'name' (keys: {sorted(tool)})")
    description = tool.get("description") or ""
    if not isinstance(description, str):
        raise DataBuildError(f"{at}: tool {name!r}: 'description' must be text")
    params = tool.get("parameters") or {}
    if not isinstance(params, dict):
        raise DataBuildError(f"{at}: tool {name!r}: 'parameters' must be an object, got {type(params).__name__}")
    if params.get("type") == "object" and isinstance(params.get("properties", {}), dict):
        schema = params  # already JSON Schema
    else:
        properties: dict[str, Any] = {}
        required: list[str] = []
        for pname, spec in params.items():
            if not isinstance(spec, dict):
                raise DataBuildError(f"{at}: tool {name!r}, parameter {pname!r}: expected an object, got {spec!r}")
            prop: dict[str, Any] = {}
            pdesc = spec.get("description") or ""
            type_str = spec.get("type")
            optional = False
            if isinstance(type_str, str) and type_str.strip():
                type_schema, optional = xlam_type_to_schema(type_str)
                if type_schema is None:
                    pdesc = f"{pdesc} (type: {type_str})".strip()
                else:
                    prop.update(type_schema)
            prop["description"] = pdesc
            if "default" in spec:
                prop["default"] = spec["default"]
            properties[pname] = prop
            if "default" not in spec and not optional:
                required.append(pname)
        schema = {"type": "object", "properties": properties, "required": required}
    return {"type": "function", "function": {"name": name, "description": description, "parameters": schema}}


# --------------------------------------------------------------------------- row validation


def _parse_json_field(record: dict[str, Any], key: str, at: str) -> Any:
    if key not in record:
        raise DataBuildError(f"{at}: missing '{key}' (keys: {sorted(record)})")
    value = record[key]
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataBuildError(f"{at}: '{key}' is not valid JSON ({exc.msg} at column {exc.colno})") from exc
    if hasattr(value, "tolist"):  # numpy arrays from parquet
        value = value.tolist()
    return value


def parse_tools(record: dict[str, Any], at: str) -> list[dict[str, Any]]:
    """The row's tools as a list of objects, each with a name."""
    tools = _parse_json_field(record, "tools", at)
    if not isinstance(tools, list) or not all(isinstance(t, dict) for t in tools):
        raise DataBuildError(f"{at}: 'tools' must be a list of tool objects, got {type(tools).__name__}")
    if not tools:
        raise DataBuildError(f"{at}: 'tools' is empty")
    return tools


def parse_answers(record: dict[str, Any], at: str) -> list[dict[str, Any]]:
    """The gold calls as ``[{"name": str, "arguments": dict}, ...]`` (JSON-string arguments are parsed)."""
    answers = _parse_json_field(record, "answers", at)
    if not isinstance(answers, list):
        raise DataBuildError(f"{at}: 'answers' must be a list of calls, got {type(answers).__name__}")
    calls = []
    for k, call in enumerate(answers):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise DataBuildError(f"{at}: answer {k} must be an object with a 'name', got {call!r}")
        args = call.get("arguments", {})
        if isinstance(args, str):
            try:
                args = json.loads(args)
            except json.JSONDecodeError as exc:
                raise DataBuildError(f"{at}: answer {k} ('{call['name']}'): arguments are not valid JSON") from exc
        if not isinstance(args, dict):
            raise DataBuildError(f"{at}: answer {k} ('{call['name']}'): 'arguments' must be an object")
        calls.append({"name": call["name"], "arguments": args})
    return calls


def parse_example(record: Any, origin: str, row: int) -> dict[str, Any]:
    """Validate one input row; returns query, the original tools, OpenAI tools and the gold calls."""
    at = where(origin, row)
    if not isinstance(record, dict):
        raise DataBuildError(f"{at}: expected an object with query, tools and answers")
    query = record.get("query")
    if not isinstance(query, str) or not query.strip():
        raise DataBuildError(f"{at}: 'query' must be non-empty text, got {query!r}")
    tools = parse_tools(record, at)
    openai_tools = [xlam_tool_to_openai(t, at) for t in tools]
    names = {t["function"]["name"] for t in openai_tools}
    answers = parse_answers(record, at)
    for call in answers:
        if call["name"] not in names:
            raise DataBuildError(f"{at}: answer calls {call['name']!r}, which is not among the tools {sorted(names)}")
    return {"query": query, "xlam_tools": tools, "tools": openai_tools, "answers": answers, "row": row}


# --------------------------------------------------------------------------- tool placement


def chat_template_renders_tools(tokenizer: Any) -> bool:
    """True when ``tokenizer.apply_chat_template(..., tools=[...])`` puts the tools into the prompt."""
    probe = {
        "type": "function",
        "function": {
            "name": _PROBE_TOOL_NAME,
            "description": "probe",
            "parameters": {"type": "object", "properties": {"x": {"type": "string"}}, "required": ["x"]},
        },
    }
    try:
        text = tokenizer.apply_chat_template(
            [{"role": "user", "content": "hello"}], tools=[probe], tokenize=False, add_generation_prompt=True
        )
    except Exception:
        return False
    return isinstance(text, str) and _PROBE_TOOL_NAME in text


def load_tokenizer(name_or_path: str) -> Any:
    """Load a tokenizer only to inspect its chat template."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(os.path.expanduser(name_or_path), trust_remote_code=False)
    except Exception as exc:
        raise DataBuildError(
            f"could not load tokenizer {name_or_path!r} ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            "pass a local model directory, or --tool-placement system-prompt / chat-template to decide without one"
        ) from exc


def decide_tool_placement(placement: str = "auto", tokenizer: Any | str | None = None) -> bool:
    """Return ``tools_in_chat_template`` for ``placement`` (auto: ask the tokenizer, if any)."""
    if placement not in TOOL_PLACEMENTS:
        raise DataBuildError(f"--tool-placement must be one of {', '.join(TOOL_PLACEMENTS)}, got {placement!r}")
    if placement == "chat-template":
        return True
    if placement == "system-prompt" or tokenizer is None:
        return False
    if isinstance(tokenizer, str | os.PathLike):
        tokenizer = load_tokenizer(os.fspath(tokenizer))
    return chat_template_renders_tools(tokenizer)


# --------------------------------------------------------------------------- building


def example_row(
    example: dict[str, Any], split: str, index: int, tools_in_chat_template: bool, system_prompt: str | None = None
) -> dict[str, Any]:
    """One parquet row in the layout verl's RLHFDataset and R3's function-calling verifier read."""
    return {
        "data_source": DATA_SOURCE,
        "prompt": function_calling_messages(
            example["query"],
            example["tools"],
            tools_in_chat_template=tools_in_chat_template,
            system_prompt=system_prompt,
        ),
        "ability": ABILITY,
        "reward_model": {"style": "rule", "ground_truth": json.dumps(example["answers"], ensure_ascii=False)},
        "extra_info": {
            "index": index,
            "split": split,
            "tools": json.dumps(example["tools"], ensure_ascii=False),
            "tools_in_chat_template": tools_in_chat_template,
            "xlam_tools": json.dumps(example["xlam_tools"], ensure_ascii=False),
            "source_row": example["row"],
        },
        "agent_name": AGENT_NAME,
    }


def load_examples(
    source: str, *, max_rows: int | None = None, skip_invalid: bool = False, progress: bool | None = None
) -> tuple[list[dict[str, Any]], list[str]]:
    """Validated examples, and the errors of skipped rows (only with ``skip_invalid``)."""
    rows: list[SourceRow] = load_rows(
        source,
        max_rows=max_rows,
        hf_hint=(
            f"{HF_DATASET} is gated: accept its terms on the Hub and log in, or download "
            "xlam_function_calling_60k.json and pass its path."
        ),
    )
    examples, skipped = [], []
    it = tqdm(rows, desc=f"reading {os.path.basename(source) or source}", unit="row", disable=_disable(progress))
    for r in it:
        try:
            examples.append(parse_example(r.data, source, r.row))
        except DataBuildError as exc:
            if not skip_invalid:
                raise
            skipped.append(str(exc))
    return examples, skipped


def build_function_calling(
    output_dir: str | os.PathLike | None = None,
    *,
    source: str = HF_DATASET,
    train_size: int | None = None,
    test_size: int = DEFAULT_TEST_SIZE,
    seed: int = 0,
    tokenizer: Any | str | None = None,
    tool_placement: str = "auto",
    max_rows: int | None = None,
    skip_invalid: bool = False,
    system_prompt: str | None = None,
    progress: bool | None = None,
) -> dict[str, Path]:
    """Write ``train.parquet`` and ``test.parquet`` for function calling; returns their paths.

    ``source``: a Hub dataset name or a local .json/.jsonl/.parquet file with query/tools/answers.
    ``tokenizer`` (a tokenizer object or a local path) decides, with ``tool_placement="auto"``,
    whether tools go through the chat template or into a system message. ``skip_invalid`` drops bad
    rows (with a warning) instead of stopping at the first one.
    """
    output_dir = output_dir if output_dir is not None else DEFAULT_OUTPUT_DIR
    in_template = decide_tool_placement(tool_placement, tokenizer)
    examples, skipped = load_examples(source, max_rows=max_rows, skip_invalid=skip_invalid, progress=progress)
    if skipped:
        shown = "\n  ".join(skipped[:5])
        more = f"\n  ... and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        print(f"warning: skipped {len(skipped)} invalid rows:\n  {shown}{more}")
    train_idx, test_idx = split_indices(len(examples), test_size, train_size, seed, source)
    splits: dict[str, list[dict[str, Any]]] = {}
    for split, indices in (("train", train_idx), ("test", test_idx)):
        if not indices:
            continue
        it = tqdm(indices, desc=f"building {split}", unit="row", disable=_disable(progress))
        splits[split] = [example_row(examples[k], split, i, in_template, system_prompt) for i, k in enumerate(it)]
    return write_splits(output_dir, splits, known_splits=SPLITS)


def openai_tools(extra_info: dict[str, Any]) -> Sequence[dict[str, Any]]:
    """The row's tools for ``apply_chat_template(tools=...)`` (decoded from ``extra_info["tools"]``)."""
    tools = extra_info.get("tools")
    return json.loads(tools) if isinstance(tools, str) else list(tools or [])


def _disable(progress: bool | None) -> bool | None:
    return None if progress is None else not progress
