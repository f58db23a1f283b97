"""JSON from outside: parsed without exhausting the stack, and only what can be stored.

Two kinds of string parse as JSON but cannot be stored: NUL (``\\u0000``), which
PostgreSQL refuses in text and jsonb, and a lone surrogate (``"\\ud800"``), which is not
Unicode text at all (UTF-8 cannot encode it; I-JSON, RFC 7493, forbids it). Such input is
refused with where it is, rather than silently rewritten: what is stored, hashed and
judged by evals stays exactly what the sender sent, and SQLite and PostgreSQL behave
alike. So are NaN and infinities (``NaN``, ``1e400``), which Python's parser accepts but
no JSON column holds.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

import orjson

# Deeper than any request body needs, and far from the interpreter's recursion limit, so
# that everything downstream (serializers, renderers, templates) can walk what is accepted.
MAX_DEPTH = 100

_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")
_CONTAINERS = (dict, list)
_MAX_KEY_SHOWN = 40
_MAX_PATH_SHOWN = 120


# Types orjson writes exactly as json.dumps does (floats only within the range _plain checks).
_PLAIN_SCALARS = frozenset((str, int, bool, type(None)))


class UnsafeJSON(ValueError):
    """Well-formed JSON that is refused; the message says what and where."""


def loads(data: str | bytes, *, max_depth: int = MAX_DEPTH) -> Any:
    """Parse JSON; raise ``UnsafeJSON`` for too deep nesting or unstorable strings.

    Malformed JSON raises ``json.JSONDecodeError`` (and bytes that are not UTF-8
    ``UnicodeDecodeError``), both ``ValueError`` like ``UnsafeJSON``.
    """
    try:
        value = json.loads(data)
    except RecursionError:
        raise UnsafeJSON(f"nested deeper than {max_depth} levels") from None
    problem = find_problem(value, max_depth=max_depth)
    if problem:
        raise UnsafeJSON(problem)
    return value


def find_problem(
    value: Any, *, max_depth: int = MAX_DEPTH, encoded: str | None = None
) -> str | None:
    """Return why decoded JSON cannot be stored, naming where (``steps[0].output``), or None.

    Walks with an explicit stack, so any nesting the parser produced can be checked.
    ``encoded`` is the caller's own ``ensure_ascii=False, allow_nan=False`` encoding of
    ``value`` (or of a copy with more keys), as ``dumps_sorted`` writes, which spares
    encoding it again for the quick check.
    """
    if _surely_clean(value, max_depth, encoded):
        return None
    # Paths are linked (parent, key) pairs, turned into text only for the problem found.
    stack: list[tuple[Any, tuple | None, int]] = [(value, None, 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if problem := text_problem(item):
                return f"{_where(path)}: {problem}"
        elif isinstance(item, float):
            if not math.isfinite(item):
                number = non_finite_text(item)
                return f"{_where(path)}: {number} is not a JSON number, which cannot be stored"
        elif isinstance(item, dict):
            if depth >= max_depth:
                return f"{_where(path)}: nested deeper than {max_depth} levels"
            children = []
            for key, child in item.items():
                if isinstance(key, str) and (problem := text_problem(key)):
                    return f"a key of {_where(path)}: {problem}"
                children.append((child, (path, key), depth + 1))
            stack.extend(reversed(children))
        elif isinstance(item, list):
            if depth >= max_depth:
                return f"{_where(path)}: nested deeper than {max_depth} levels"
            stack.extend((item[i], (path, i), depth + 1) for i in range(len(item) - 1, -1, -1))
    return None


def _surely_clean(value: Any, max_depth: int, encoded: str | None = None) -> bool:
    """Return True only if ``find_problem`` would find nothing; False means "look closer".

    Every trace of every source passes here, nearly always clean: the C encoder finds
    NUL (which it escapes as ``\\u0000``) and lone surrogates (which it passes through)
    in all strings and keys at once, and only containers are walked for depth. A false
    alarm (a literal backslash-u0000 in the text) just falls back to the full walk.
    """
    try:
        # allow_nan=False: a NaN or an infinity raises, for the full walk to find.
        text = encoded or json.dumps(
            value, ensure_ascii=False, check_circular=False, allow_nan=False
        )
    except (TypeError, ValueError, RecursionError):
        return False
    if "\\u0000" in text or not _no_surrogate(text):
        return False
    # Nesting is never deeper than the count of opening brackets (those inside strings
    # only add to it): most traces have fewer than the limit, and skip the walk.
    if text.count("{") + text.count("[") <= max_depth:
        return True
    # Level by level: no (item, depth) pair per container, as the full walk needs; one
    # comprehension a level (a trace's many scalars are skipped without a Python loop step).
    level = [value] if isinstance(value, _CONTAINERS) else []
    depth = 0
    while level:
        if depth >= max_depth:
            return False
        level = [
            child
            for item in level
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, _CONTAINERS)
        ]
        depth += 1
    return True


# Nineteen digits in a row may be an integer past 64 bits, which orjson reads as a float.
# Found by mapping every digit to "0" and the rest to " " (a regex takes 20x as long).
_DIGITS_ONLY = bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
_LONG_DIGITS = b"0" * 19
# What a number's digits can follow outside a string: whitespace, ":", ",", "[" or "-"
# before an integer, "." or "+" within a float (those go to json.loads too, to be safe).
_BEFORE_NUMBER = frozenset(b" \t\n\r:,[-.+")


def loads_as_json(data: bytes) -> Any:
    """Return ``json.loads(data)``, the same values, mostly parsed by orjson (about 3x faster).

    orjson reads an integer past 64 bits as a float and refuses what json.loads accepts
    beyond the standard (NaN, infinities, lone surrogates, 1e400): a body with nineteen
    digits in a row where a number's digits can start, or one orjson refuses, is parsed by
    json.loads, which raises as before. Floats parse to the same values (checked on
    1,200,000 random ones).
    """
    # Most data has no nineteen digits in a row at all: told here, without a call (a sync
    # parses a dozen small inputs and outputs a trace).
    digits = data.translate(_DIGITS_ONLY)
    if digits.find(_LONG_DIGITS) < 0 or not _may_hold_long_number(data, digits):
        try:
            return orjson.loads(data)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def _may_hold_long_number(data: bytes, digits: bytes) -> bool:
    """Tell whether nineteen digits in a row in ``data`` may be a number's.

    Only a run that starts the data or follows a byte of ``_BEFORE_NUMBER`` can: most
    long runs are inside hex ids (trace ids are 32 hex digits), which a letter or a quote
    starts: they sent two in five of the benchmark's 1,000-row Langfuse pages to json.loads.
    ``digits`` is ``data`` mapped by ``_DIGITS_ONLY``.
    """
    # find, not "in": "in" first tries the bytes as an integer, and formats the TypeError.
    at = digits.find(_LONG_DIGITS)
    while at >= 0:
        if at == 0 or data[at - 1] in _BEFORE_NUMBER:
            return True
        end = digits.find(b" ", at + 19)  # past this run: the next one starts it
        if end < 0:
            return False
        at = digits.find(_LONG_DIGITS, end)
    return False


def dumps_sorted(value: Any) -> str:
    """Return ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
    default=str, check_circular=False, allow_nan=False)``, the same text, mostly written by
    orjson.

    Stored payloads and their content hashes are this text, so it must not change: orjson
    writes the same bytes for dicts with str keys, lists, str, int, bool, None, and floats
    that are 0 or between 1e-4 and 1e16 in magnitude (checked on 400,000 random floats),
    about 8x faster. It writes other floats differently (0.00001 for 1e-05), so those are
    handed to it as json.dumps's own text (``float.__repr__``) in a copy of the containers
    holding them: a 12-step Langfuse trace whose observations cost 1.5e-05 each takes
    40 us instead of json.dumps's 65 us (27% fewer instructions; walking it in Python, not
    orjson, is most of what is left). NaN, infinities and other types orjson writes its own
    way, or anything it refuses (a non-str key, an int past 64 bits, a lone surrogate,
    deep nesting), send the value to json.dumps, which raises as before (ValueError,
    RecursionError).
    """
    plain = _plain(value)
    # None: it holds floats orjson writes its own way, which it is given as text.
    ready = _with_float_text(value, 0) if plain is None else value
    if plain is not False and ready is not _NOT_FOR_ORJSON:
        try:
            return orjson.dumps(ready, option=orjson.OPT_SORT_KEYS).decode()
        except orjson.JSONEncodeError:
            pass
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
        check_circular=False,
        # NaN and infinities are not JSON: neither database stores them (a 500 on SQLite).
        allow_nan=False,
    )


def _plain(value: Any) -> bool | None:
    """Tell whether ``value`` holds only the types and floats ``dumps_sorted`` gives orjson.

    None: it holds a finite float orjson writes its own way (what else it holds is left to
    ``_with_float_text``). Level by level with an explicit list, so any nesting is walked;
    dict keys are left to orjson, which refuses all but str.
    """
    level = [value]
    while level:
        children: list = []
        for item in level:
            kind = type(item)
            if kind is str:  # the most common by far: one test, not four
                continue
            if kind is dict:
                children += item.values()
            elif kind is list:
                children += item
            elif kind is float:
                # NaN and infinities fail both tests.
                if not (item == 0 or 1e-4 <= abs(item) < 1e16):
                    return None if math.isfinite(item) else False
            elif kind not in _PLAIN_SCALARS:
                return False
        level = children
    return True


# orjson refuses containers nested deeper (json.dumps then writes them, or raises).
_ORJSON_MAX_DEPTH = 254
_NOT_FOR_ORJSON = object()


def _with_float_text(item: Any, depth: int) -> Any:
    """Return ``item`` with each float orjson writes its own way as json.dumps's text.

    Only the containers on the way to such a float are copied; ``item`` itself is returned
    when none is inside, and ``_NOT_FOR_ORJSON`` when it holds what ``_plain`` refuses.
    Scalars are checked inline: a call for each would double the time.
    """
    kind = type(item)
    if kind is dict:
        children = item.items()
    elif kind is list:
        children = enumerate(item)
    elif kind is float:
        return _float_text(item)
    else:
        return item if kind in _PLAIN_SCALARS else _NOT_FOR_ORJSON
    if depth >= _ORJSON_MAX_DEPTH:
        return _NOT_FOR_ORJSON
    copy = None
    for key, child in children:
        kind = type(child)
        if kind is str:
            continue
        if kind is dict or kind is list:
            new = _with_float_text(child, depth + 1)
        elif kind is float:
            if child == 0 or 1e-4 <= abs(child) < 1e16:
                continue
            new = _float_text(child)
        elif kind in _PLAIN_SCALARS:
            continue
        else:
            return _NOT_FOR_ORJSON
        if new is not child:
            if new is _NOT_FOR_ORJSON:
                return new
            if copy is None:
                copy = item.copy()
            copy[key] = new
    return item if copy is None else copy


def _float_text(item: float) -> Any:
    if item == 0 or 1e-4 <= abs(item) < 1e16:
        return item
    if not math.isfinite(item):
        return _NOT_FOR_ORJSON
    # json.dumps writes every finite float with float.__repr__ (1e-05, 1e+16).
    return orjson.Fragment(float.__repr__(item).encode())


def _no_surrogate(text: str) -> bool:
    """Tell whether ``text`` holds no surrogate code point, without a regex.

    An ASCII string says so in its header; otherwise UTF-8 encoding fails exactly on
    surrogates, about 3x faster than a regex search (measured on a 33 kB trace).
    """
    if text.isascii():
        return True
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text_problem(text: str) -> str | None:
    """Return why ``text`` cannot be stored (a NUL or a lone surrogate), or None."""
    match = _UNSTORABLE.search(text)
    if match is None:
        return None
    char = match.group()
    if char == "\x00":
        return "contains a NUL character (\\u0000), which cannot be stored"
    return f"contains a lone surrogate (\\u{ord(char):04x}), which is not Unicode text"


def non_finite_text(number: float) -> str:
    """Return how JavaScript and json.dumps spell a float that is not finite."""
    if math.isnan(number):
        return "NaN"
    return "Infinity" if number > 0 else "-Infinity"


def _where(path: tuple | None) -> str:
    parts: list[str] = []
    while path is not None:
        path, key = path
        if isinstance(key, int):
            parts.append(f"[{key}]")
        elif isinstance(key, str) and key.isidentifier() and key.isascii():
            parts.append(f".{key}")
        else:
            # ensure_ascii: the key itself may hold the unstorable character.
            parts.append(f"[{json.dumps(str(key)[:_MAX_KEY_SHOWN])}]")
    text = "".join(reversed(parts)).lstrip(".")
    if len(text) > _MAX_PATH_SHOWN:
        text = text[: _MAX_PATH_SHOWN - 1] + "…"
    return text or "the top-level value"
