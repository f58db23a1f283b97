"""Parsing JSON from outside: deep nesting and unstorable strings are refused with where."""

import datetime
import decimal
import enum
import json
import random
import struct
import uuid

import pytest

from iofold.lib import jsontext


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"a": [1, {"b": "x\\ud800"}]}', "a[1].b: contains a lone surrogate (\\ud800)"),
        ('{"a": "\\udfffx"}', "a: contains a lone surrogate (\\udfff)"),
        ('["ok", "a\\u0000"]', "[1]: contains a NUL character"),
        ('{"x": {"bad\\u0000key": 1}}', "a key of x: contains a NUL character"),
        ('{"odd key": ["\\ud800"]}', '["odd key"][0]: contains a lone surrogate'),
        ('"\\ud800"', "the top-level value: contains a lone surrogate"),
        ("[" * 10_000 + "]" * 10_000, "nested deeper than 100 levels"),
        ("[" * 101 + "]" * 101, "nested deeper than 100 levels"),
        ('{"a": [1, NaN]}', "a[1]: NaN is not a JSON number, which cannot be stored"),
        ('{"b": -Infinity}', "b: -Infinity is not a JSON number"),
        ('{"c": 1e400}', "c: Infinity is not a JSON number"),
    ],
)
def test_refused_with_where(text, problem):
    with pytest.raises(jsontext.UnsafeJSON) as refused:
        jsontext.loads(text)

    assert problem in str(refused.value)
    json.dumps(str(refused.value)).encode()  # the message itself is safe to send back


@pytest.mark.parametrize(
    "text",
    ['{"emoji": "\\ud83d\\ude00", "é": "ü"}', "[" * 100 + "]" * 100, "null", '"\\u0001"'],
)
def test_accepted(text):
    assert jsontext.loads(text) == json.loads(text)


def test_malformed_json_is_still_a_decode_error():
    with pytest.raises(json.JSONDecodeError):
        jsontext.loads("{nope")


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (["a\\u0000b"], None),  # a literal backslash-u: a false alarm of the fast check
        ({"k": ["\x00"]}, "k[0]: contains a NUL character"),
        ({"\ud800": 1}, "a key of the top-level value: contains a lone surrogate"),
        ([[[[]]]], "[0][0][0]: nested deeper than 3 levels"),
        ([[["x"]]], None),  # as deep as allowed: three brackets, no walk needed
        ([[], [[]], "[[[["], None),  # more brackets than the limit, yet shallow
        ({"a": "{", "b": [[[]]]}, "b[0][0]: nested deeper than 3 levels"),
        ({1: "x", "t": ["\x00"]}, "t[0]: contains a NUL character"),
        ([{1, 2}], None),  # not JSON at all: only what the full walk reports counts
        ({"x": [1.5, float("inf")]}, "x[1]: Infinity is not a JSON number"),
        (["NaN", "Infinity"], None),  # the words in a string: a false alarm
    ],
)
def test_find_problem_fast_check_agrees_with_the_full_walk(value, problem):
    found = jsontext.find_problem(value, max_depth=3)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)


def _stdlib_sorted(value):
    return json.dumps(
        value,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        default=str,
        check_circular=False,
    )


class _Text(str):
    pass


class _Number(int):
    pass


class _Kind(enum.Enum):
    A = "a"


@pytest.mark.parametrize(
    "value",
    [
        {"b": [1, -0.0, 0.0, 1e-4, 0.5, 9999999999999998.0, True, None], "a": "x"},
        {"é": "\x1f\u2028\x7f\x00", "E": '"\\/', "\U0001f600": {"\uff01": 1}, "": []},
        # Floats orjson writes its own way: given to it as json.dumps's text.
        [1e-05, 1.5e-05, 1.5e-07, 1.2345678901234567e-07, 9.999999999999999e-05, -1e-05],
        [1e16, 1e300, -1e16, 1.7976931348623157e308, 12345678901234567890.0],
        [5e-324, -5e-324, 2.225073858507201e-308, 2.2250738585072014e-308, -0.0, 0.0],
        {"b": {"cost": 1.5e-05, "t": [1, {"x": 1e-05}], "s": "k"}, "a": [{"c": 1e20}], "z": 1},
        1e-05,
        # What orjson refuses: the text stays json.dumps's.
        {1: "int key"},
        {_Text("k"): _Text("v"), "n": _Number(3)},
        [2**70, -(2**64)],
        {"when": datetime.datetime(2026, 1, 2, 3, 4, 5), "id": uuid.UUID(int=7)},
        [_Kind.A, decimal.Decimal("1.5"), (1, 2)],
        "lone \ud800 surrogate",
        [[[[[[[[[[]]]]]]]]]],
    ],
)
def test_dumps_sorted_writes_what_json_dumps_writes(value):
    assert jsontext.dumps_sorted(value) == _stdlib_sorted(value)


def test_dumps_sorted_writes_random_floats_and_keys_as_json_dumps_does():
    rng = random.Random(15)
    floats = [struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0] for _ in range(3000)]
    floats += [rng.random() * 10 ** rng.randint(-8, 20) for _ in range(3000)]
    # Those orjson writes (the rest send the whole value to json.dumps).
    plain = [f for f in floats if f == 0 or 1e-4 <= abs(f) < 1e16]
    alphabet = ["a", "Z", "é", "\uff01", "\U0001f600", "0", "_", " ", "\\", '"', "\x1f"]
    keys = ["".join(rng.choices(alphabet, k=rng.randint(0, 4))) for _ in range(210)]
    value = {
        "floats": plain,
        "keys": [{key: i for i, key in enumerate(keys[n : n + 7])} for n in range(0, 210, 7)],
    }
    assert len(plain) > 2000
    assert jsontext._plain(value)
    assert jsontext.dumps_sorted(value) == _stdlib_sorted(value)
    finite = [f for f in floats if f == f and abs(f) != float("inf")]  # NaN is refused
    assert jsontext.dumps_sorted(finite) == _stdlib_sorted(finite)


def test_dumps_sorted_has_orjson_write_tiny_and_huge_floats_leaving_the_value_alone(
    monkeypatch,
):
    trace = {"observations": [{"id": str(i), "cost": 1.5e-05 * i} for i in range(50)]}
    trace["tags"] = ["a", "b"]
    trace["usage"] = {"total": 1e16, "tokens": 3}
    before = repr(trace)
    expected = _stdlib_sorted(trace)
    monkeypatch.setattr(jsontext.json, "dumps", None)  # would fail if called

    assert jsontext.dumps_sorted(trace) == expected
    assert repr(trace) == before  # copies are written, the value itself is not changed


def test_dumps_sorted_writes_random_tiny_and_huge_floats_as_json_dumps_does():
    rng = random.Random(16)
    subnormal = [struct.unpack("d", struct.pack("Q", rng.getrandbits(52)))[0] for _ in range(500)]
    tiny = [rng.random() * 10 ** rng.randint(-320, -4) for _ in range(3000)]
    huge = [rng.random() * 10 ** rng.randint(16, 308) for _ in range(3000)]
    floats = [f * rng.choice([1, -1]) for f in subnormal + tiny + huge]
    assert jsontext.dumps_sorted(floats) == _stdlib_sorted(floats)
    for f in floats:  # each alone too: the top-level value
        assert jsontext.dumps_sorted(f) == _stdlib_sorted(f)


@pytest.mark.parametrize("depth", [253, 254, 300, 1200])
def test_dumps_sorted_writes_a_tiny_float_nested_deeper_than_orjson_goes(depth):
    value: list = [1e-05]
    for _ in range(depth):
        value = [value]
    assert jsontext.dumps_sorted(value) == _stdlib_sorted(value)


def test_dumps_sorted_raises_as_json_dumps_does_on_too_deep_nesting():
    deep: list = []
    inner = deep
    for _ in range(5000):
        inner.append([])
        inner = inner[0]
    with pytest.raises(RecursionError):
        jsontext.dumps_sorted(deep)


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("tiny", [[], [1e-05]])
def test_dumps_sorted_refuses_what_is_not_json(value, tiny):
    # Neither database stores NaN or infinities: the trace is refused, not a 500.
    with pytest.raises(ValueError):
        jsontext.dumps_sorted({"a": tiny, "cost": value})


@pytest.mark.parametrize(
    "text",
    [
        b"12345678901234567890",
        b'{"a":-12345678901234567890}',
        b'{"a": [1,\n\t 18446744073709551616]}',
        b"[0.12345678901234567890123, 1.5e+1234567890123456789]",
        # A long run inside a string first, then a long integer: the integer is found.
        b'["ab1234567890123456789012345", 99999999999999999999]',
    ],
)
def test_loads_as_json_reads_integers_past_64_bits_as_integers(text):
    assert repr(jsontext.loads_as_json(text)) == repr(json.loads(text))
    assert jsontext._may_hold_long_number(text, text.translate(jsontext._DIGITS_ONLY))


def test_loads_as_json_leaves_long_digit_runs_in_ids_to_orjson(monkeypatch):
    # Trace ids are hex: nineteen digits in a row inside one are no number.
    text = b'{"traceId": "a2f1426701588565916449d19126", "id": "1234567890123456789012"}'
    monkeypatch.setattr(jsontext.json, "loads", None)  # would fail if called

    assert jsontext.loads_as_json(text) == {
        "traceId": "a2f1426701588565916449d19126",
        "id": "1234567890123456789012",
    }


def test_loads_as_json_reads_random_documents_as_json_loads_does():
    rng = random.Random(15)
    pieces = [
        lambda: str(rng.getrandbits(rng.choice([8, 63, 64, 65, 70, 128])) * rng.choice([1, -1])),
        lambda: repr(rng.random() * 10 ** rng.randint(-30, 30)),
        lambda: json.dumps("".join(rng.choices("0123456789abcdef -:,[.+", k=rng.randint(0, 40)))),
        lambda: "1" * rng.randint(15, 25) + rng.choice(["", ".5", "e3", "E-2"]),
    ]
    for _ in range(2000):
        items = [rng.choice(pieces)() for _ in range(rng.randint(1, 6))]
        spaces = [rng.choice(["", " ", "\n", "\t", "\r\n "]) for _ in items]
        text = ("[" + ",".join(s + i for s, i in zip(spaces, items, strict=True)) + "]").encode()
        assert repr(jsontext.loads_as_json(text)) == repr(json.loads(text)), text


def test_dumps_sorted_writes_random_nested_values_as_json_dumps_does():
    # Floats orjson writes its own way, NaN and types it does not take, at any depth.
    rng = random.Random(15)
    odd = [float("nan"), _Text("t"), _Number(2), _Kind.A, (1, 2), 2**70, {1: 2}]
    plain = ["x", 1, True, None, 0.5, -0.0, 9999999999999998.0, 1e-05, 1e16, 5e-324]

    def scalar():
        if rng.random() < 0.02:
            return rng.choice(odd)
        if rng.random() < 0.2:  # tiny or huge, as costs and token counts are
            return rng.random() * 10 ** rng.choice([rng.randint(-320, -4), rng.randint(16, 308)])
        return rng.choice(plain)

    def make(depth):
        if depth > 4 or rng.random() < 0.4:
            return scalar()
        if rng.random() < 0.5:
            return {f"k{i}": make(depth + 1) for i in range(rng.randint(0, 4))}
        return [make(depth + 1) for _ in range(rng.randint(0, 4))]

    for _ in range(6000):
        value = make(0)
        try:
            expected = _stdlib_sorted(value)
            json.dumps(value, default=str, allow_nan=False)
        except ValueError:  # NaN: refused
            with pytest.raises(ValueError):
                jsontext.dumps_sorted(value)
            continue
        assert jsontext.dumps_sorted(value) == expected
