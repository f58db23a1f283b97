"""Extract the eval function's source code from a model's answer."""

from __future__ import annotations

import ast
import re
import textwrap

FENCE_OPEN = re.compile(r"^[ \t]*(?P<fence>`{3,}|~{3,})[ \t]*(?P<lang>[\w+.-]*)[^\n]*$")
DEFINES_EVAL_FN = re.compile(r"^[ \t]*def[ \t]+eval_fn[ \t]*\(", re.MULTILINE)
PYTHON_TAGS = {"", "python", "python3", "py", "py3"}
# Column-0 lines that can start or continue top-level Python (as opposed to prose).
CODE_LINE = re.compile(
    r"^(?:import |from |def |class |@|#|if |for |while |try:|except|finally:|else:|elif |"
    r"with |return |raise |assert |\"\"\"|'''|[A-Za-z_][\w.]*(?:\[.*\])?\s*(?:=|:|\())"
)
# Parsing shrinking windows is quadratic; beyond this a bare answer is not worth guessing.
MAX_BARE_LINES = 600


class CodeExtractionError(ValueError):
    """The answer contains no usable eval function; the message can be fed back."""


def extract_code(answer: str) -> str:
    """Return the Python source defining `eval_fn` found in `answer`.

    Fenced blocks win: the last block that defines `eval_fn` (a chatty answer often
    shows a draft, then the final version, then a usage example). Without fences, the
    whole answer if it parses, else the stretch of code around `def eval_fn`.
    """
    text = answer.replace("\r\n", "\n").replace("\r", "\n")
    blocks = _fenced_blocks(text)
    if blocks:
        defining = [code for lang, code in blocks if DEFINES_EVAL_FN.search(code)]
        if defining:
            return defining[-1]
        python_blocks = [code for lang, code in blocks if lang in PYTHON_TAGS and code]
        if len(python_blocks) == 1:
            # Let the validator report what is missing from the one code block.
            return python_blocks[0]
        raise CodeExtractionError(
            "The answer has no code block defining `def eval_fn(trace: dict) -> tuple[bool, str]`."
        )
    code = _bare_code(text)
    if code is None:
        raise CodeExtractionError(
            "No Python code defining `eval_fn` was found; answer with one ```python block."
        )
    return code


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """Return (language, code) for each fenced block; an unclosed last fence runs to the end."""
    lines = text.split("\n")
    blocks: list[tuple[str, str]] = []
    i = 0
    while i < len(lines):
        match = FENCE_OPEN.match(lines[i])
        if not match:
            i += 1
            continue
        fence = match["fence"]
        lang = match["lang"].lower()
        body: list[str] = []
        i += 1
        while i < len(lines):
            stripped = lines[i].strip()
            if stripped.startswith(fence[0] * len(fence)) and not stripped.strip(fence[0]):
                break
            body.append(lines[i])
            i += 1
        i += 1  # Skip the closing fence (or run past the end of a truncated answer).
        blocks.append((lang, textwrap.dedent("\n".join(body)).strip("\n")))
    return blocks


def _bare_code(text: str) -> str | None:
    stripped = textwrap.dedent(text).strip("\n")
    if _parses_with_eval_fn(stripped):
        return stripped
    lines = stripped.split("\n")
    if len(lines) > MAX_BARE_LINES:
        return None
    def_index = next((n for n, line in enumerate(lines) if DEFINES_EVAL_FN.match(line)), None)
    if def_index is None:
        return None
    start = def_index
    while start > 0 and _looks_like_code(lines[start - 1]):
        start -= 1
    end = def_index + 1
    while end < len(lines) and _looks_like_code(lines[end]):
        end += 1
    for stop in range(end, def_index, -1):
        candidate = "\n".join(lines[start:stop]).strip("\n")
        if _parses_with_eval_fn(candidate):
            return candidate
    return None


def _looks_like_code(line: str) -> bool:
    return not line.strip() or line[0] in " \t)]}" or bool(CODE_LINE.match(line))


def _parses_with_eval_fn(source: str) -> bool:
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return False
    return any(isinstance(node, ast.FunctionDef) and node.name == "eval_fn" for node in tree.body)
