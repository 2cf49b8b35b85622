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
"""Source transforms that turn plugin modules into verl modules.

Everything here is strict: a replacement that no longer matches, or a name that is no longer
defined, raises :class:`TransformError` naming the file and the text, so a change in the plugin
that the generator does not understand stops generation instead of producing a wrong patch.
"""

from __future__ import annotations

import ast
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

#: verl's header format (see any verl source file), attributed to this project.
LICENSE_HEADER = """\
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
"""

LINE_LENGTH = 120  # verl's ruff line length
FIRST_PARTY = ("verl", "tests")  # ruff's known-first-party in verl, plus its top-level tests/ directory


class TransformError(RuntimeError):
    """The plugin source no longer matches what the generator expects."""


# ---------------------------------------------------------------------------------------------- text


def strip_license(text: str) -> str:
    """Drop the leading ``#`` comment block (the license header) and the blank lines after it."""
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines) and lines[i].startswith("#") and not lines[i].startswith("#!"):
        i += 1
    while i < len(lines) and not lines[i].strip():
        i += 1
    return "".join(lines[i:])


def with_header(body: str) -> str:
    """verl-style license header on top of a Python/shell body (which must not carry its own)."""
    return LICENSE_HEADER + body.lstrip("\n")


def replace_exact(text: str, old: str, new: str, *, where: str, count: int | None = 1) -> str:
    """Replace ``old`` by ``new``; raise if it occurs a different number of times than ``count``.

    ``count=None`` accepts any number of occurrences but at least one.
    """
    found = text.count(old)
    if found == 0 or (count is not None and found != count):
        expected = "at least once" if count is None else f"{count} time(s)"
        raise TransformError(f"{where}: expected {old!r:.120} {expected}, found it {found} time(s)")
    return text.replace(old, new)


def rewrite_modules(text: str, module_map: Mapping[str, str]) -> str:
    """Rename plugin modules to their verl locations, in code and prose alike.

    ``from r3_plugin.integration import agent_loop`` style imports are rewritten first (the mapped module may
    have a different base name), then every dotted ``r3_plugin.x.y`` is mapped by its longest
    mapped prefix. Unmapped plugin modules are left as they are, for :func:`assert_no_plugin_refs`.
    """

    def from_import(match: re.Match[str]) -> str:
        indent, package, names = match.group(1), match.group(2), [n.strip() for n in match.group(3).split(",")]
        out = []
        for name in names:
            local = name.split(" as ")[-1].strip()
            target = module_map.get(f"{package}.{name.split(' as ')[0].strip()}")
            if target is None:
                return match.group(0)
            parent, _, base = target.rpartition(".")
            alias = "" if base == local else f" as {local}"
            out.append(f"{indent}from {parent} import {base}{alias}")
        return "\n".join(out)

    text = re.sub(r"(?m)^([ \t]*)from (r3_plugin(?:\.\w+)*) import ([\w ,]+)$", from_import, text)
    keys = sorted(module_map, key=len, reverse=True)
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in keys) + r")\b(?![\w])")
    return pattern.sub(lambda m: module_map[m.group(1)], text)


def assert_no_plugin_refs(path: str, text: str, allowed: Iterable[str] = ()) -> None:
    """Generated verl files must not mention the plugin's module names."""
    allowed = tuple(allowed)
    for lineno, line in enumerate(text.splitlines(), 1):
        if "r3_plugin" in line and not any(a in line for a in allowed):
            raise TransformError(f"{path}:{lineno}: still refers to the plugin package: {line.strip()!r}")


# ---------------------------------------------------------------------------------------------- AST


@dataclass(frozen=True)
class Node:
    """A top-level statement of a module: its defined names and its source lines (with comments)."""

    names: tuple[str, ...]
    source: str
    stmt: ast.stmt


def _defined_names(stmt: ast.stmt) -> tuple[str, ...]:
    if isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
        return (stmt.name,)
    targets: list[ast.expr] = []
    if isinstance(stmt, ast.Assign):
        targets = stmt.targets
    elif isinstance(stmt, ast.AnnAssign):
        targets = [stmt.target]
    names: list[str] = []
    for t in targets:
        for n in ast.walk(t):
            if isinstance(n, ast.Name):
                names.append(n.id)
    return tuple(names)


def top_level(source: str, *, where: str) -> tuple[str | None, list[Node]]:
    """Module docstring and top-level statements, each with the comment lines directly above it."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise TransformError(f"{where}: cannot parse: {exc}") from exc
    lines = source.splitlines(keepends=True)
    body = list(tree.body)
    docstring = None
    if body and isinstance(body[0], ast.Expr) and isinstance(getattr(body[0], "value", None), ast.Constant):
        if isinstance(body[0].value.value, str):
            docstring = "".join(lines[body[0].lineno - 1 : body[0].end_lineno])
            body = body[1:]
    nodes = []
    prev_end = body[0].lineno - 1 if body else 0
    for stmt in body:
        start = min([stmt.lineno] + [d.lineno for d in getattr(stmt, "decorator_list", [])]) - 1
        # comments directly above the statement belong to it
        first = start
        while first > prev_end and lines[first - 1].lstrip().startswith("#"):
            first -= 1
        nodes.append(Node(_defined_names(stmt), "".join(lines[first : stmt.end_lineno]), stmt))
        prev_end = stmt.end_lineno
    return docstring, nodes


def find_node(nodes: list[Node], name: str, *, where: str) -> Node:
    for node in nodes:
        if name in node.names:
            return node
    raise TransformError(f"{where}: no top-level definition of {name!r}")


def module_call(nodes: list[Node], func: str, *, where: str) -> Node:
    """The single top-level expression statement calling ``func(...)`` (e.g. a registration)."""
    found = [
        n
        for n in nodes
        if isinstance(n.stmt, ast.Expr)
        and isinstance(n.stmt.value, ast.Call)
        and isinstance(n.stmt.value.func, ast.Name)
        and n.stmt.value.func.id == func
    ]
    if len(found) != 1:
        raise TransformError(f"{where}: expected one top-level call to {func}(), found {len(found)}")
    return found[0]


def used_names(stmts: Iterable[ast.AST]) -> set[str]:
    """Names a piece of code reads (roots of attribute chains included), ignoring imports."""
    used: set[str] = set()
    for stmt in stmts:
        for n in ast.walk(stmt):
            if isinstance(n, ast.Name):
                used.add(n.id)
    return used


def literal(nodes: list[Node], name: str, *, where: str):
    """The value of a top-level constant assignment (strings, numbers, tuples)."""
    node = find_node(nodes, name, where=where)
    value = node.stmt.value if isinstance(node.stmt, ast.Assign | ast.AnnAssign) else None
    try:
        return ast.literal_eval(value)
    except Exception as exc:
        raise TransformError(f"{where}: {name} is not a literal constant") from exc


# ---------------------------------------------------------------------------------------------- imports


@dataclass(frozen=True)
class Import:
    """One import statement, normalised: ``import module [as alias]`` or ``from module import names``."""

    module: str
    names: tuple[str, ...] = ()  # empty: a straight import; entries are "name" or "name as alias"
    alias: str | None = None
    comment: str = ""  # a trailing lint-suppression comment, kept

    @property
    def bound(self) -> tuple[str, ...]:
        if not self.names:
            return (self.alias or self.module.split(".")[0],)
        return tuple(n.split(" as ")[-1] for n in self.names)


def parse_imports(stmt: ast.stmt, line: str = "") -> list[Import]:
    comment = ""
    if "#" in line:
        comment = "  " + line[line.index("#") :].strip()
    if isinstance(stmt, ast.Import):
        return [Import(a.name, (), a.asname, comment) for a in stmt.names]
    if isinstance(stmt, ast.ImportFrom):
        module = "." * stmt.level + (stmt.module or "")
        names = tuple(a.name if not a.asname else f"{a.name} as {a.asname}" for a in stmt.names)
        return [Import(module, names, None, comment)]
    return []


def _section(module: str) -> int:
    if module.startswith("."):
        return 4  # ruff's local-folder section
    root = module.split(".")[0]
    if root == "__future__":
        return 0
    if root in FIRST_PARTY:
        return 3
    if root in sys.stdlib_module_names:
        return 1
    return 2


def _member_key(name: str) -> tuple[int, str]:
    base = name.split(" as ")[0]
    if base.isupper() and len(base) > 1:
        kind = 0
    elif base[:1].isupper():
        kind = 1
    else:
        kind = 2
    return kind, base


def render_imports(imports: Iterable[Import]) -> str:
    """An isort-ordered import block in ruff's style (verl's configuration)."""
    straight: dict[tuple[str, str | None], Import] = {}
    froms: dict[str, set[str]] = {}
    comments: dict[str, str] = {}
    for imp in imports:
        if imp.names:
            froms.setdefault(imp.module, set()).update(imp.names)
            if imp.comment:
                comments[imp.module] = imp.comment
        else:
            straight[(imp.module, imp.alias)] = imp
    sections: dict[int, list[str]] = {}
    for (module, alias), imp in sorted(straight.items(), key=lambda kv: (kv[0][0].lower(), kv[0][0], kv[0][1] or "")):
        text = f"import {module}" + (f" as {alias}" if alias else "") + imp.comment
        sections.setdefault(_section(module), []).append(text)
    for module in sorted(froms, key=lambda m: (m.lower(), m)):
        names = sorted(froms[module], key=_member_key)
        one_line = f"from {module} import {', '.join(names)}{comments.get(module, '')}"
        if len(one_line) <= LINE_LENGTH:
            text = one_line
        else:
            text = f"from {module} import ({comments.get(module, '')}\n" + "".join(f"    {n},\n" for n in names) + ")"
        sections.setdefault(_section(module), []).append(text)
    return "\n\n".join("\n".join(sections[k]) for k in sorted(sections)) + "\n"


def normalize_imports(source: str, *, where: str, drop_unused: bool = True) -> str:
    """Re-sort a module's leading import block; optionally drop imported names nothing uses.

    Names listed in ``__all__`` or imported with a trailing lint-suppression comment count as used.
    """
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    body = list(tree.body)
    start_idx = 1 if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) else 0
    block: list[ast.stmt] = []
    for stmt in body[start_idx:]:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            block.append(stmt)
        else:
            break
    if not block:
        return source
    rest = [s for s in body if s not in block]
    used = used_names(rest)
    exported: set[str] = set()
    for stmt in rest:
        if isinstance(stmt, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "__all__" for t in stmt.targets):
            exported = set(ast.literal_eval(stmt.value))
    imports: list[Import] = []
    for stmt in block:
        line = "".join(lines[stmt.lineno - 1 : stmt.end_lineno])
        for imp in parse_imports(stmt, line if "#" in line else ""):
            if not drop_unused or imp.comment or imp.module == "__future__":
                imports.append(imp)
                continue
            if not imp.names:
                if imp.bound[0] in used or imp.bound[0] in exported:
                    imports.append(imp)
                continue
            keep = tuple(n for n in imp.names if n.split(" as ")[-1] in used | exported)
            if keep:
                imports.append(Import(imp.module, keep))
    first, last = block[0].lineno - 1, block[-1].end_lineno
    return _normalize_nested_imports("".join(lines[:first]) + render_imports(imports) + "".join(lines[last:]))


def _normalize_nested_imports(source: str) -> str:
    """Re-sort runs of imports inside functions (their sections differ once ``verl`` is first-party)."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    runs: list[list[ast.stmt]] = []
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        run: list[ast.stmt] = []
        for stmt in fn.body + [None]:
            if isinstance(stmt, ast.Import | ast.ImportFrom):
                run.append(stmt)
                continue
            if run:
                runs.append(run)
            run = []
    for run in sorted(runs, key=lambda r: r[0].lineno, reverse=True):
        first, last = run[0].lineno - 1, run[-1].end_lineno
        indent = lines[first][: len(lines[first]) - len(lines[first].lstrip())]
        imports = [imp for stmt in run for imp in parse_imports(stmt, lines[stmt.lineno - 1])]
        block = render_imports(imports)
        rendered = "".join(indent + line if line.strip() else line for line in block.splitlines(keepends=True))
        lines[first:last] = [rendered]
    return "".join(lines)


# ---------------------------------------------------------------------------------------------- assembly


def assemble_module(
    docstring: str,
    parts: Iterable[tuple[str, str]],
    *,
    module_map: Mapping[str, str],
    local_modules: Iterable[str] = (),
    extra_imports: Iterable[str] = (),
    keep: Callable[[Node], bool] = lambda node: True,
) -> str:
    """Build one module from top-level statements of several plugin modules.

    ``parts`` are ``(where, source)`` pairs; their imports are merged (imports of ``local_modules``,
    whose definitions end up in this very module, are dropped; the others are rewritten with
    ``module_map``), their other statements are concatenated in order when ``keep`` accepts them.
    Imports that no remaining code uses are dropped.
    """
    local = set(local_modules)
    imports: list[Import] = [Import("__future__", ("annotations",))]
    for text in extra_imports:
        stmt = ast.parse(text).body[0]
        imports.extend(parse_imports(stmt, text))
    chunks: list[str] = []
    for where, source in parts:
        _, nodes = top_level(strip_license(source), where=where)
        for node in nodes:
            if isinstance(node.stmt, ast.Import | ast.ImportFrom):
                for imp in parse_imports(node.stmt, node.source):
                    if imp.module in local:
                        continue
                    module = module_map.get(imp.module, imp.module)
                    imports.append(Import(module, imp.names, imp.alias, imp.comment))
                continue
            if keep(node):
                chunks.append(rewrite_modules(node.source.rstrip("\n"), module_map))
    # ruff's isort: two blank lines after the imports before a def/class, one before anything else
    gap = "\n\n" if chunks and chunks[0].lstrip().startswith(("def ", "async def ", "class ", "@")) else "\n"
    body = render_imports(imports) + gap + "\n\n\n".join(chunks) + "\n"
    text = docstring.rstrip("\n") + "\n\n" + body
    return normalize_imports(text, where="assembled module")


def drop_nodes(source: str, nodes: Iterable[Node], *, where: str) -> str:
    """Remove top-level statements (with their leading comments) and tidy the blank lines left."""
    for node in nodes:
        source = replace_exact(source, node.source, "", where=where)
    return re.sub(r"\n{4,}", "\n\n\n", source).rstrip("\n") + "\n"


def render_all(names: Iterable[str]) -> str:
    """An ``__all__`` list in ruff-format style."""
    names = list(names)
    one_line = "__all__ = [" + ", ".join(f'"{n}"' for n in names) + "]"
    if len(one_line) <= LINE_LENGTH:
        return one_line
    return "__all__ = [\n" + "".join(f'    "{n}",\n' for n in names) + "]"


def amend_docstring(source: str, paragraph: str, *, where: str) -> str:
    """Append a paragraph to the module docstring."""
    docstring, _ = top_level(source, where=where)
    if docstring is None:
        raise TransformError(f"{where}: no module docstring to amend")
    closing = docstring.rstrip().rstrip('"').rstrip()
    quote = docstring.rstrip()[-3:]
    new = closing + "\n\n" + paragraph.strip("\n") + "\n" + quote + "\n"
    return replace_exact(source, docstring, new, where=where)


def add_imports(source: str, lines: Iterable[str], *, where: str) -> str:
    """Insert import lines after the module's last leading import (then re-sort the block)."""
    _, nodes = top_level(source, where=where)
    imports = [n for n in nodes if isinstance(n.stmt, ast.Import | ast.ImportFrom)]
    if not imports:
        raise TransformError(f"{where}: no import block to extend")
    last = imports[-1].source
    return replace_exact(source, last, last.rstrip("\n") + "\n" + "".join(f"{x}\n" for x in lines), where=where)


def replace_docstring(source: str, new: str, *, where: str) -> str:
    """Swap the module docstring for ``new`` (a complete triple-quoted literal)."""
    docstring, _ = top_level(source, where=where)
    if docstring is None:
        raise TransformError(f"{where}: no module docstring to replace")
    return replace_exact(source, docstring, new.rstrip("\n") + "\n", where=where)


def docstring_paragraphs(source: str, *, where: str) -> list[str]:
    """The module docstring's paragraphs (text only)."""
    docstring, _ = top_level(source, where=where)
    if docstring is None:
        raise TransformError(f"{where}: no module docstring")
    text = ast.literal_eval(docstring.strip())
    return [p.strip("\n") for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
