"""Parsing JSON from outside: deep nesting and unstorable strings are refused with where."""

import json

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
    ],
)
def test_find_problem_fast_check_agrees_with_the_full_walk(value, problem):
    found = jsontext.find_problem(value, max_depth=3)
    if problem is None:
        assert found is None
    else:
        assert found is not None and found.startswith(problem)
