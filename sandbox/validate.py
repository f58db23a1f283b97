"""Static validation of eval code: a first filter in front of the jail, not a substitute."""

from __future__ import annotations

import _string
import ast
import unicodedata
from dataclasses import dataclass

# The standard-library modules eval code may import (DESIGN.md), in the order documented.
ALLOWED_IMPORTS = (
    "json",
    "re",
    "math",
    "statistics",
    "string",
    "datetime",
    "collections",
    "itertools",
    "functools",
    "difflib",
    "unicodedata",
    "typing",
)
# The one non-stdlib module: judge() and llm(), answered by the runner over the jail's
# pipe (docs/judges.md). The harness builds it; nothing is imported from disk.
JUDGE_MODULE = "iofold_eval"
ALLOWED_MODULES = frozenset((*ALLOWED_IMPORTS, JUDGE_MODULE))

FORBIDDEN_NAMES = frozenset(
    {
        "eval",
        "exec",
        "compile",
        "open",
        "__import__",
        "globals",
        "locals",
        "vars",
        "breakpoint",
        "input",
        "help",
        "exit",
        "quit",
        "memoryview",
    }
)

ATTRIBUTE_FUNCTIONS = frozenset({"getattr", "setattr", "delattr", "hasattr"})

# Allowed modules re-export other modules as public attributes (typing.sys, datetime.sys,
# json.codecs, re.enum, typing.operator ...); these names lead out of the allow-list.
# A few more name the introspection or evaluation tools that turn a string into code:
# typing.get_type_hints and ForwardRef evaluate strings, and functools.singledispatch
# (and singledispatchmethod) call get_type_hints on the functions they register.
FORBIDDEN_ATTRIBUTES = frozenset(
    {
        "sys",
        "os",
        "posix",
        "subprocess",
        "builtins",
        "importlib",
        "ctypes",
        "socket",
        "io",
        "codecs",
        "copyreg",
        "enum",
        "numbers",
        "contextlib",
        "operator",
        "types",
        "warnings",
        "inspect",
        "gc",
        "signal",
        "shutil",
        "pathlib",
        "pickle",
        "marshal",
        "threading",
        "modules",
        "system",
        "popen",
        "get_type_hints",
        "ForwardRef",
        "Formatter",
        "singledispatch",
        "singledispatchmethod",
    }
)

# str.format and format_map follow "." and "[...]" in their fields: "{0.__class__}".
FORMAT_METHODS = frozenset({"format", "format_map"})

# Frame, code, generator and traceback internals reach globals and builtins.
FORBIDDEN_ATTRIBUTE_PREFIXES = ("_", "f_", "gi_", "cr_", "ag_", "tb_", "co_", "func_")


@dataclass(frozen=True)
class Problem:
    """One reason the code is rejected, at a 1-based line and 0-based column."""

    line: int
    column: int
    message: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.message}"


def validate(code: str) -> list[Problem]:
    """Return the problems that stop `code` from running as an eval; empty means valid."""
    try:
        tree = ast.parse(code, filename="<eval>")
    except SyntaxError as exc:
        return [Problem(exc.lineno or 1, max((exc.offset or 1) - 1, 0), f"syntax error: {exc.msg}")]
    except (ValueError, MemoryError, RecursionError) as exc:
        return [Problem(1, 0, f"the code cannot be parsed: {exc}")]
    checker = _Checker()
    checker.visit(tree)
    problems = checker.problems
    problems.extend(_check_entry_point(tree))
    return sorted(problems, key=lambda p: (p.line, p.column))


def _forbidden_attribute(name: str) -> bool:
    return name in FORBIDDEN_ATTRIBUTES or name.startswith(FORBIDDEN_ATTRIBUTE_PREFIXES)


def _format_reads_attributes(template: str) -> bool:
    """Return True when a format string has a field like "{0.x}" or "{0[x]}" (or is broken)."""
    try:
        for _literal, field, spec, _conversion in _string.formatter_parser(template):
            if field and ("." in field or "[" in field):
                return True
            if spec and "{" in spec and _format_reads_attributes(spec):
                return True
    except ValueError:
        return True
    return False


def _is_string(node: ast.AST) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _check_entry_point(tree: ast.Module) -> list[Problem]:
    functions = [
        node
        for node in tree.body
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == "eval_fn"
    ]
    if not functions:
        return [Problem(1, 0, "define a top-level function eval_fn(trace)")]
    fn = functions[-1]
    if isinstance(fn, ast.AsyncFunctionDef):
        return [Problem(fn.lineno, fn.col_offset, "eval_fn must be a plain def, not async def")]
    args = fn.args
    positional = args.posonlyargs + args.args
    if len(positional) != 1 or args.vararg or args.kwarg or args.kwonlyargs or args.defaults:
        return [
            Problem(
                fn.lineno, fn.col_offset, "eval_fn must take exactly one parameter: eval_fn(trace)"
            )
        ]
    return []


class _Checker(ast.NodeVisitor):
    def __init__(self) -> None:
        self.problems: list[Problem] = []
        self.module_names: set[str] = set()

    def _add(self, node: ast.AST, message: str) -> None:
        self.problems.append(
            Problem(getattr(node, "lineno", 1), getattr(node, "col_offset", 0), message)
        )

    def _check_module(self, node: ast.AST, module: str) -> None:
        root = module.split(".")[0]
        if root not in ALLOWED_MODULES:
            allowed = ", ".join(sorted(ALLOWED_MODULES))
            self._add(node, f"import of '{module}' is not allowed; allowed modules: {allowed}")

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._check_module(node, alias.name)
            self.module_names.add(alias.asname or alias.name.split(".")[0])
        self.generic_visit(node)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level:
            self._add(node, "relative imports are not allowed")
        else:
            self._check_module(node, node.module or "")
            for alias in node.names:
                self.module_names.add(alias.asname or alias.name)
                if alias.name == "*":
                    self._add(node, "'from ... import *' is not allowed; import names explicitly")
                elif _forbidden_attribute(alias.name):
                    self._add(node, f"importing '{alias.name}' is not allowed")
        self.generic_visit(node)

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in FORBIDDEN_NAMES:
            self._add(node, f"'{node.id}' is not allowed in eval code")
        elif node.id.startswith("__"):
            self._add(node, f"names starting with '__' ('{node.id}') are not allowed")
        elif node.id in ATTRIBUTE_FUNCTIONS and not getattr(node, "_iofold_checked_call", False):
            self._add(
                node, f"'{node.id}' is only allowed as a direct call with a literal attribute name"
            )
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        base = node.value
        while isinstance(base, ast.Attribute):
            base = base.value
        if (
            not isinstance(node.ctx, ast.Load)
            and isinstance(base, ast.Name)
            and base.id in self.module_names
        ):
            # Modules are shared by every trace in a jail: patching one would carry
            # state from one trace to the next.
            self._add(node, f"changing the module '{base.id}' is not allowed")
        if node.attr.startswith("__"):
            self._add(node, f"access to dunder attribute '{node.attr}' is not allowed")
        elif _forbidden_attribute(node.attr):
            self._add(node, f"access to attribute '{node.attr}' is not allowed")
        elif node.attr in FORMAT_METHODS:
            if not _is_string(node.value):
                self._add(
                    node,
                    f"'.{node.attr}()' is only allowed on a string literal; use an f-string",
                )
            elif _format_reads_attributes(node.value.value):
                self._add(
                    node,
                    "format fields may not read attributes or items ('{0.x}', '{0[x]}'); "
                    "use an f-string",
                )
        self.generic_visit(node)

    def _check_annotation(self, annotation: ast.AST | None) -> None:
        # typing.get_type_hints (and what calls it: singledispatch, NamedTuple tools ...)
        # evaluates string annotations as code, out of this validator's sight.
        if annotation is None:
            return
        for node in ast.walk(annotation):
            if _is_string(node):
                self._add(node, "string annotations are not allowed; write the type itself")
                return

    def visit_arg(self, node: ast.arg) -> None:
        self._check_annotation(node.annotation)
        self.generic_visit(node)

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._check_annotation(node.returns)
        self.generic_visit(node)

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_AnnAssign(self, node: ast.AnnAssign) -> None:
        self._check_annotation(node.annotation)
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        if isinstance(func, ast.Name) and func.id in ATTRIBUTE_FUNCTIONS:
            func._iofold_checked_call = True  # type: ignore[attr-defined]
            name = node.args[1] if len(node.args) >= 2 else None
            if not (isinstance(name, ast.Constant) and isinstance(name.value, str)):
                self._add(node, f"{func.id}() needs a literal attribute name, not a computed one")
            else:
                # Identifiers in code are NFKC-normalised by the parser; a string is not,
                # so normalise it the same way before judging it.
                attr = unicodedata.normalize("NFKC", name.value)
                if attr.startswith("_") or _forbidden_attribute(attr) or attr in FORMAT_METHODS:
                    self._add(node, f"{func.id}() of attribute '{name.value}' is not allowed")
        self.generic_visit(node)

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        # Class patterns read attributes by name: `case object(__class__=c)`.
        for attr in node.kwd_attrs:
            if _forbidden_attribute(attr):
                self._add(node, f"matching on attribute '{attr}' is not allowed")
        self.generic_visit(node)

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            if name.startswith("__"):
                self._add(node, f"names starting with '__' ('{name}') are not allowed")
        self.generic_visit(node)
