"""The compile-time policy: what an action's source may contain, checked once when it is uploaded.

`check_source` returns every problem as a `Diagnostic` (line 1-based, column 0-based) and never
raises; `compile_action` returns the code object or raises `CompileFailed`. Both run
RestrictedPython's `RestrictingNodeTransformer` (which rewrites attribute reads, subscripts, writes,
iteration and `print` into calls of the guards in `sandbox.guards`) extended with our refusals:

- imports of anything but the facade modules (`sandbox.facades.ALLOWED_IMPORTS`), kind "import";
- class definitions (no metaclasses, `super()`, descriptors, or subclasses of str/dict to lie to
  the guards), `global` of a `_` name, identifiers written with look-alike characters that
  NFKC-normalize to something else (e.g. to a leading `_`), the attributes `format`,
  `format_map`, `mro`, `getattr`/`hasattr` of a constant `_` name, and forbidden builtins (`open`,
  `eval`, `type`, ...) that the action does not bind itself — all kind "policy";
- no top-level `def on_execute_post_challenge(event, api)`, kind "missing_handler".

RestrictedPython itself refuses names and attributes starting with `_`, `async`/`await`, `nonlocal`,
`match`, `try/except*`, frame and code attributes (`gi_frame`, `f_back`, `tb_frame`, ...).
The run-time half (guards, builtins, `Violation`) is `sandbox.guards`; it is re-exported here.
"""

from __future__ import annotations

import ast
import io
import tokenize
import unicodedata
from types import CodeType
from typing import Any

from RestrictedPython.transformer import RestrictingNodeTransformer

from sandbox.errors import CompileFailed
from sandbox.facades import ALLOWED_IMPORTS
from sandbox.guards import (
    DENIED_ATTRIBUTES, FORBIDDEN_BUILTIN_NAMES, RunState, Violation, new_globals,
)
from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import Diagnostic

__all__ = ["check_source", "compile_action", "new_globals", "RunState", "Violation",
           "REQUIRED_HANDLER", "HANDLERS"]

REQUIRED_HANDLER = "on_execute_post_challenge"
HANDLERS = (REQUIRED_HANDLER, "on_continue_post_challenge")
CHECK_FILENAME = "<action (check)>"
DIAGNOSTICS_MAX_COUNT = 100
BUILTIN_HINTS = {
    "type": " (use isinstance())", "format": " (use an f-string)", "id": "", "dir": "",
    "open": ": actions cannot read or write files", "input": ": actions cannot read input",
    "setattr": " (use a dict)", "object": " (use a dict)", "property": " (use functions)",
}


def check_source(source: str | bytes, *, limits: Limits = DEFAULT_LIMITS) -> list[Diagnostic]:
    """Every problem of `source` under the policy, in source order ([] if none). Never raises."""
    return _analyse(source, limits, CHECK_FILENAME)[0]


def compile_action(source: str | bytes, *, name: str, limits: Limits = DEFAULT_LIMITS) -> CodeType:
    """The restricted code object of `source`, filename f"<action {name}>".

    Raises CompileFailed(name, diagnostics) when `source` does not pass `check_source`.
    """
    diagnostics, code = _analyse(source, limits, f"<action {name}>")
    if code is None:
        raise CompileFailed(name, diagnostics)
    return code


def _analyse(source: str | bytes, limits: Limits, filename: str,
             ) -> tuple[list[Diagnostic], CodeType | None]:
    text, problem = _decode(source, limits)
    if problem is not None:
        return [problem], None
    try:
        tree = ast.parse(text, filename, "exec")
    except SyntaxError as exc:
        column = max((exc.offset or 1) - 1, 0)
        return [Diagnostic(line=exc.lineno or 1, column=column, message=f"{type(exc).__name__}: "
                           f"{exc.msg}", kind="syntax")], None
    except (ValueError, RecursionError, MemoryError) as exc:
        return [Diagnostic(line=1, column=0, message=f"source does not parse: {exc}",
                           kind="limit" if not isinstance(exc, ValueError) else "syntax")], None
    diagnostics = _lookalikes(text) + _handler_problems(tree)
    policy = ActionPolicy(_bound_names(tree))
    try:
        tree = policy.visit(tree)
    except RecursionError:
        return [Diagnostic(line=1, column=0, message="source is nested too deeply",
                           kind="limit")], None
    diagnostics += policy.diagnostics
    if diagnostics:
        diagnostics.sort(key=lambda d: (d.line, d.column))
        if len(diagnostics) > DIAGNOSTICS_MAX_COUNT:
            rest = diagnostics[DIAGNOSTICS_MAX_COUNT - 1:]
            diagnostics = diagnostics[:DIAGNOSTICS_MAX_COUNT - 1] + [Diagnostic(
                line=rest[0].line, column=rest[0].column, kind="limit",
                message=f"{len(rest)} more problems from here on are not listed")]
        return diagnostics, None
    try:
        # SECURITY: dont_inherit, so no __future__ flag of this module leaks into the action's code.
        return [], compile(tree, filename, "exec", dont_inherit=True)
    except (SyntaxError, ValueError, RecursionError, MemoryError) as exc:
        line = getattr(exc, "lineno", None) or 1
        return [Diagnostic(line=line, column=0, message=f"does not compile: {exc}",
                           kind="limit")], None


def _decode(source: str | bytes, limits: Limits) -> tuple[str, Diagnostic | None]:
    if isinstance(source, str):
        data = source.encode("utf-8", "surrogatepass")
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
    else:
        return "", Diagnostic(line=1, column=0, kind="encoding",
                              message=f"source must be text, not {type(source).__name__}")
    try:
        # A str holding lone surrogates fails here too: it has no UTF-8 form.
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1)
        return "", Diagnostic(line=line, column=column, kind="encoding",
                              message=f"source is not UTF-8: byte 0x{data[exc.start]:02x} at "
                                      f"line {line}, column {column}")
    if len(data) > limits.source_max_bytes:
        return "", Diagnostic(line=1, column=0, kind="size",
                              message=f"source is {len(data)} bytes, more than the limit of "
                                      f"{limits.source_max_bytes} bytes")
    return text.removeprefix("\ufeff"), None


def _lookalikes(text: str) -> list[Diagnostic]:
    found = []
    try:
        for tok in tokenize.generate_tokens(io.StringIO(text).readline):
            if tok.type == tokenize.NAME and not tok.string.isascii():
                normal = unicodedata.normalize("NFKC", tok.string)
                if normal != tok.string:
                    found.append(Diagnostic(
                        line=tok.start[0], column=tok.start[1], kind="policy",
                        message=f"identifier {tok.string!r} uses look-alike characters (Python "
                                f"reads it as {normal!r}); write it in its normal form"))
    except (tokenize.TokenError, SyntaxError, IndentationError):
        pass  # ast.parse accepted the text; the tokenizer disagreeing is no reason to refuse
    return found


def _handler_problems(tree: ast.Module) -> list[Diagnostic]:
    found = []
    defined = {node.name: node for node in tree.body if isinstance(node, ast.FunctionDef)}
    if REQUIRED_HANDLER not in defined:
        found.append(Diagnostic(line=1, column=0, kind="missing_handler",
                                message=f"no top-level `def {REQUIRED_HANDLER}(event, api)`: "
                                        "every action must define it"))
    for name in HANDLERS:
        node = defined.get(name)
        if node is not None and not _takes_event_and_api(node.args):
            found.append(Diagnostic(line=node.lineno, column=node.col_offset,
                                    kind="missing_handler",
                                    message=f"`{name}` must take two arguments: (event, api)"))
    return found


def _takes_event_and_api(args: ast.arguments) -> bool:
    positional = len(args.posonlyargs) + len(args.args)
    required = positional - len(args.defaults)
    kw_required = sum(default is None for default in args.kw_defaults)
    return required <= 2 and (positional >= 2 or args.vararg is not None) and kw_required == 0


def _bound_names(tree: ast.AST) -> frozenset[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).partition(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
    return frozenset(names)


class ActionPolicy(RestrictingNodeTransformer):
    """RestrictedPython's transformer plus the refusals listed in this module's docstring."""

    def __init__(self, bound_names: frozenset[str]) -> None:
        super().__init__()
        self.bound_names = bound_names
        self.diagnostics: list[Diagnostic] = []

    def error(  # type: ignore[override]
            self, node: ast.AST, info: str, kind: str = "policy") -> None:
        """Record a refusal with its line and column (RestrictedPython calls this too)."""
        super().error(node, info)
        line = getattr(node, "lineno", None) or 1
        column = getattr(node, "col_offset", None) or 0
        self.diagnostics.append(Diagnostic(line=line, column=column, message=info, kind=kind))

    def visit_ClassDef(self, node: ast.ClassDef) -> Any:
        self.error(node, f'class definitions are not allowed in actions (class "{node.name}"): use '
                         "functions and dicts")
        return node

    def visit_Global(self, node: ast.Global) -> Any:
        for name in node.names:
            if name.startswith("_"):
                self.error(node, f'"global {name}" is not allowed: names must not start with "_"')
        return self.node_contents_visit(node)

    def visit_Import(self, node: ast.Import) -> Any:
        for alias in node.names:
            if alias.name not in ALLOWED_IMPORTS:
                self.error(node, f"import of {alias.name!r} is not allowed; actions may import: "
                                 f"{', '.join(sorted(ALLOWED_IMPORTS))}", kind="import")
        return super().visit_Import(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> Any:
        module = node.module or ""
        if node.level != 0 or module not in ALLOWED_IMPORTS:
            self.error(node, f"import from {'.' * node.level}{module!s} is not allowed; actions "
                             f"may import: {', '.join(sorted(ALLOWED_IMPORTS))}", kind="import")
        else:
            for alias in node.names:
                if alias.name != "*" and alias.name not in ALLOWED_IMPORTS[module]:
                    self.error(node, f"{module} has no {alias.name!r} that actions may import",
                               kind="import")
        return super().visit_ImportFrom(node)

    def visit_Name(self, node: ast.Name) -> Any:
        if (isinstance(node.ctx, ast.Load) and node.id in FORBIDDEN_BUILTIN_NAMES
                and node.id not in self.bound_names):
            hint = BUILTIN_HINTS.get(node.id, "")
            self.error(node, f'"{node.id}" is not available in actions{hint}')
        return super().visit_Name(node)

    def visit_Attribute(self, node: ast.Attribute) -> Any:
        if node.attr in DENIED_ATTRIBUTES:
            hint = " (use an f-string)" if node.attr.startswith("format") else ""
            self.error(node, f'"{node.attr}" is not allowed{hint}')
        return super().visit_Attribute(node)

    def visit_Call(self, node: ast.Call) -> Any:
        if (isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr")
                and len(node.args) >= 2 and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
                and unicodedata.normalize("NFKC", node.args[1].value).startswith("_")):
            self.error(node, f'{node.func.id}(..., "{node.args[1].value}") is not allowed: '
                             'attribute names must not start with "_"')
        return super().visit_Call(node)
