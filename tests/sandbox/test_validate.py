from sandbox import validate

GOOD = """
import json
import re
from collections import Counter


def eval_fn(trace):
    text = json.dumps(trace.get("output"))
    words = Counter(re.findall(r"\\w+", text))
    if words["error"]:
        return False, "the output mentions an error"
    return True, "no error in the output"
"""


def messages(code):
    return [p.message for p in validate(code)]


def test_valid_eval_has_no_problems():
    assert validate(GOOD) == []


def test_syntax_error_reports_line_and_column():
    problems = validate("def eval_fn(trace):\n    return (True, 'x'\n")
    assert len(problems) == 1
    assert problems[0].line >= 2
    assert "syntax error" in problems[0].message


def test_import_outside_allow_list_is_rejected_with_the_allow_list():
    problems = validate("import os\n\ndef eval_fn(trace):\n    return True, ''\n")
    assert [(p.line, p.column) for p in problems] == [(1, 0)]
    assert "'os'" in problems[0].message
    assert "json" in problems[0].message


def test_from_import_and_submodule_imports_are_checked():
    assert messages("from subprocess import run\ndef eval_fn(t):\n    return True, ''")
    assert messages("import os.path\ndef eval_fn(t):\n    return True, ''")
    assert messages("from . import x\ndef eval_fn(t):\n    return True, ''")
    assert validate("import collections.abc\ndef eval_fn(t):\n    return True, ''") == []


def test_dunder_attribute_access_is_rejected():
    code = "def eval_fn(trace):\n    return ().__class__.__base__ is object, ''\n"
    problems = validate(code)
    assert problems and all(p.line == 2 for p in problems)
    assert any("__class__" in p.message for p in problems)


def test_forbidden_builtins_are_rejected_even_without_a_call():
    for name in [
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
    ]:
        code = f"def eval_fn(trace):\n    f = {name}\n    return True, ''\n"
        assert messages(code), name


def test_getattr_needs_a_literal_safe_name():
    base = "def eval_fn(trace):\n    {}\n    return True, ''\n"
    assert validate(base.format("x = getattr(trace, 'get')")) == []
    assert messages(base.format("x = getattr(trace, trace['name'])"))
    assert messages(base.format("x = getattr(trace, '__class__')"))
    assert messages(base.format("setattr(trace, 'x' + 'y', 1)"))
    assert messages(base.format("f = getattr"))


def test_module_reexports_that_lead_out_of_the_allow_list_are_rejected():
    base = (
        "import typing\nimport datetime\nimport string\n"
        "def eval_fn(trace):\n    {}\n    return True, ''\n"
    )
    assert messages(base.format("typing.sys.modules['os'].system('id')"))
    assert messages(base.format("datetime.sys"))
    assert messages(base.format("string.Formatter().get_field('0.x', [1], {})"))
    assert messages(base.format("typing.get_type_hints(eval_fn)"))


def test_frame_and_generator_internals_are_rejected():
    code = "def eval_fn(trace):\n    g = (x for x in [])\n    return g.gi_frame.f_builtins, ''\n"
    found = messages(code)
    assert any("gi_frame" in m for m in found)


def test_patching_an_imported_module_is_rejected():
    code = "import json\ndef eval_fn(trace):\n    json.dumps = str\n    return True, ''\n"
    assert any("changing the module 'json'" in m for m in messages(code))


def test_eval_fn_must_exist_with_one_parameter():
    assert any("eval_fn" in m for m in messages("def check(trace):\n    return True, ''\n"))
    assert any("one parameter" in m for m in messages("def eval_fn(a, b):\n    return True, ''\n"))
    assert any("one parameter" in m for m in messages("def eval_fn():\n    return True, ''\n"))
    assert any("async" in m for m in messages("async def eval_fn(t):\n    return True, ''\n"))


def test_match_class_attribute_patterns_are_checked():
    code = (
        "def eval_fn(trace):\n"
        "    match trace:\n"
        "        case object(__class__=c):\n"
        "            return True, ''\n"
        "    return False, ''\n"
    )
    assert any("__class__" in m for m in messages(code))


def test_problems_are_sorted_and_printable():
    problems = validate("import os\nimport sys\ndef eval_fn(t):\n    return eval('1'), ''\n")
    assert [p.line for p in problems] == sorted(p.line for p in problems)
    assert str(problems[0]).startswith("line 1, column 0:")


def test_string_annotations_are_rejected_and_plain_ones_are_not():
    base = "import typing\n{}\ndef eval_fn(trace: dict) -> tuple[bool, str]:\n    return True, ''\n"
    assert validate(base.format("def f(x: typing.Optional[int]) -> list[str]:\n    pass")) == []
    for snippet in [
        "def f(x: 'int'):\n    pass",
        "def f(x) -> 'int':\n    pass",
        "def f(x: typing.List['int']):\n    pass",
        "y: 'int' = 1",
        "class C:\n    y: 'C'",
        "f = lambda: 0\ndef g(*args: 'int', **kw: 'str'):\n    pass",
    ]:
        assert any("string annotations" in m for m in messages(base.format(snippet))), snippet


def test_apis_that_evaluate_strings_are_rejected():
    base = "import functools\nimport typing\n{}\ndef eval_fn(trace):\n    return True, ''\n"
    for snippet in [
        "functools.singledispatch",
        "functools.singledispatchmethod",
        "from functools import singledispatch",
        "from functools import singledispatchmethod as s",
        "typing.get_type_hints",
        "typing.ForwardRef('x')",
        "from string import Formatter",
    ]:
        assert messages(base.format(snippet)), snippet


def test_format_strings_may_not_read_attributes_or_items():
    base = "def eval_fn(trace):\n    x = {}\n    return True, x\n"
    assert validate(base.format("'{} of {:>5}'.format(1, 2)")) == []
    assert validate(base.format("'{a}!'.format_map({'a': 1})")) == []
    for snippet in [
        "'{0.__class__}'.format(trace)",
        "'{0[secret]}'.format(trace)",
        "'{0:{1.real}}'.format(1, 2)",
        "'{a.b}'.format_map({'a': 1})",
        "trace['t'].format(trace)",
        "str.format(trace['t'], 1)",
        "'{'.format",
        "getattr('{0.x}', 'format')",
    ]:
        assert messages(base.format(snippet)), snippet


def test_identifiers_and_names_that_normalise_to_dunders_are_rejected():
    # The parser folds identifiers to NFKC; literal names are folded the same way.
    base = "def eval_fn(trace):\n    x = {}\n    return True, ''\n"
    assert any("__class__" in m for m in messages(base.format("().__\uff43lass__")))
    assert messages(base.format("getattr((), '__\uff43lass__')"))
    assert messages(base.format("__\U0001d422mport__('os')"))
