"""Escape attempts: each is contained, gives a per-trace error or a harmless result, and
the next eval still runs.

Attempts on the host (files, network, processes) run with the jail alone (no validation,
no restricted builtins) to prove it holds on its own, and with validation on, to prove
validation rejects them first. Attempts on the harness (running arbitrary Python, reading
the traces still waiting in the batch, writing another trace's result) run with
validation off, where the harness's restricted builtins and in-jail checks must stop
them, and on, where the validator must; the result binding is also tried with the jail
alone.
"""

import os
import socket
from pathlib import Path

import pytest

from sandbox import Limits, run
from sandbox.runner import run_jail_only

PROJECT_SETTINGS = Path(__file__).resolve().parents[2] / "iofold" / "settings.py"
SECRET = "s3cr3t-decoy-7f1c"
BENIGN = "def eval_fn(trace):\n    return True, 'still works'\n"

# Every attempt reports what it got, or the exception that stopped it.
TEMPLATE = """{imports}

def eval_fn(trace):
    try:
{body}
    except BaseException as exc:
        return False, "blocked: " + repr(exc)
    return True, "got: " + str(result)[:2000]
"""


def attempt(body, imports=""):
    body = "\n".join("        " + line for line in body.strip().splitlines())
    return TEMPLATE.format(imports=imports, body=body)


@pytest.fixture
def decoys(tmp_path):
    """Files a worker may hold: settings, a database, .env and an encryption key."""
    files = {
        "settings.py": f"SECRET_KEY = '{SECRET}'\n",
        "db.sqlite3": f"SQLite format 3\x00{SECRET}",
        ".env": f"DATABASE_URL=postgres://iofold:{SECRET}@db/iofold\n",
        "fernet.key": SECRET,
    }
    for name, content in files.items():
        (tmp_path / name).write_text(content)
    return [str(tmp_path / name) for name in files]


@pytest.fixture
def markers(tmp_path):
    """Host paths an escaped eval would create; none may exist afterwards."""
    paths = [tmp_path / "pwned", Path("/usr/lib/python3.11/iofold_pwned")]
    yield [str(p) for p in paths]
    for path in paths:
        assert not path.exists(), f"the eval created {path} on the host"


def run_both_ways(code, traces, *, limits=None, rejected):
    """Run with the jail alone and return the results; check validation's verdict too."""
    jailed = run_jail_only(code, traces, limits)
    checked = run(code, traces, limits)
    if rejected:
        assert all(r.passed is None and "rejected before running" in r.error for r in checked)
    else:
        assert [(r.passed, r.error) for r in checked] == [(r.passed, r.error) for r in jailed]
    # The next eval still runs.
    assert run(BENIGN, [{}])[0].reason == "still works"
    return jailed


def assert_contained(results, *, must_not_contain=SECRET):
    for result in results:
        for text in (result.reason, result.error or "", result.output):
            assert must_not_contain not in text


def test_secret_files_cannot_be_read(decoys):
    paths = [
        *decoys,
        "/etc/shadow",
        "/etc/passwd",
        str(PROJECT_SETTINGS),
        "/proc/self/environ",
        "/proc/1/environ",
        "/work/main/.env",
    ]
    code = attempt("result = open(trace['path']).read()")
    results = run_both_ways(code, [{"path": p} for p in paths], rejected=True)
    assert_contained(results)
    assert all(r.passed is False and "FileNotFoundError" in r.reason for r in results), results


def test_parent_environment_is_not_visible(monkeypatch):
    monkeypatch.setenv("IOFOLD_TEST_SECRET", SECRET)
    code = attempt("result = dict(os.environ)", imports="import os")
    results = run_both_ways(code, [{}], rejected=True)
    assert_contained(results)
    assert results[0].reason == "got: {}"


def test_network_is_unreachable_even_on_loopback():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.settimeout(0)
    port = listener.getsockname()[1]
    code = attempt(
        "s = socket.create_connection(('127.0.0.1', trace['port']), timeout=1)\nresult = s",
        imports="import socket",
    )
    try:
        results = run_both_ways(code, [{"port": p} for p in (5432, 6379, port)], rejected=True)
        with pytest.raises(BlockingIOError):
            listener.accept()
    finally:
        listener.close()
    assert all(r.passed is False and "PermissionError" in r.reason for r in results), results


def test_host_names_cannot_be_resolved():
    code = attempt("result = socket.getaddrinfo(trace['host'], 443)", imports="import socket")
    results = run_both_ways(code, [{"host": "example.com"}, {"host": "localhost"}], rejected=True)
    assert all(r.passed is False for r in results), results


def test_writes_outside_the_private_tmpfs_fail(markers):
    code = attempt("with open(trace['path'], 'w') as f:\n    f.write('x')\nresult = 'written'")
    paths = [*markers, "/evil", "/usr/bin/evil"]
    results = run_both_ways(code, [{"path": p} for p in paths], rejected=True)
    assert all(r.passed is False for r in results), results


def test_private_tmpfs_is_writable_but_small_files_only():
    code = attempt(
        "with open('/tmp/big', 'wb') as f:\n    f.write(b'x' * trace['size'])\nresult = 'wrote'"
    )
    results = run_both_ways(code, [{"size": 1000}, {"size": 5 * 1024 * 1024}], rejected=True)
    assert (results[0].passed, results[0].reason) == (True, "got: wrote")
    assert results[1].passed is False and "File too large" in results[1].reason


def test_fork_bomb_and_subprocesses_are_refused(markers):
    code = attempt(
        """
if trace['how'] == 'fork':
    while True:
        os.fork()
elif trace['how'] == 'system':
    result = os.system('touch ' + trace['marker'])
else:
    result = subprocess.run(['/bin/touch', trace['marker']])
""",
        imports="import os\nimport subprocess",
    )
    traces = [{"how": h, "marker": m} for h in ("fork", "system", "run") for m in markers]
    results = run_both_ways(code, traces, rejected=True)
    assert all(r.passed is False or r.reason != "got: 0" for r in results), results
    assert "PermissionError" in results[0].reason


def test_huge_allocation_is_a_memory_error_not_a_dead_worker():
    code = attempt("result = len(bytearray(10 * 1024 ** 3))")
    results = run_both_ways(code, [{}, {}], rejected=False)
    assert all(r.passed is False and "MemoryError" in r.reason for r in results), results


def test_allocation_that_escapes_the_try_block_is_reported():
    code = "def eval_fn(trace):\n    data = [0] * (10 ** 10)\n    return True, str(len(data))\n"
    results = run_both_ways(code, [{}], rejected=False)
    assert results[0].passed is None
    assert "MemoryError" in results[0].error and "line 2" in results[0].error


def test_infinite_loop_times_out_per_trace():
    code = "def eval_fn(trace):\n    while True:\n        pass\n"
    results = run_both_ways(code, [{}, {}], limits=Limits(trace_timeout_s=0.5), rejected=False)
    assert [r.error for r in results] == ["timed out after 0.5 s"] * 2


def test_loop_that_swallows_the_timeout_is_killed_and_the_batch_goes_on():
    code = """
def eval_fn(trace):
    if trace["hang"]:
        while True:
            try:
                while True:
                    pass
            except BaseException:
                pass
    return True, "ok"
"""
    results = run_both_ways(
        code, [{"hang": True}, {"hang": False}], limits=Limits(trace_timeout_s=0.5), rejected=False
    )
    assert results[0].passed is None and "timed out after 0.5 s" in results[0].error
    assert (results[1].passed, results[1].reason) == (True, "ok")


def test_a_verdict_given_after_swallowing_the_timeout_does_not_count():
    code = """
def eval_fn(trace):
    if trace["slow"]:
        try:
            while True:
                pass
        except BaseException:
            return True, "answered late"
    return True, "ok"
"""
    results = run_both_ways(
        code, [{"slow": True}, {"slow": False}], limits=Limits(trace_timeout_s=0.5), rejected=False
    )
    assert (results[0].passed, results[0].error) == (None, "timed out after 0.5 s")
    assert (results[1].passed, results[1].reason) == (True, "ok")


def test_deep_recursion_is_a_recursion_error():
    code = "def eval_fn(trace):\n    return eval_fn(trace)\n"
    results = run_both_ways(code, [{}], rejected=False)
    assert results[0].error.startswith("RecursionError") and "line 2" in results[0].error


def test_recursion_that_crashes_the_interpreter_is_contained():
    # Recursion in C (the json encoder) with the limit lifted overflows the C stack.
    code = """
import json
import sys

def eval_fn(trace):
    if trace["crash"]:
        sys.setrecursionlimit(10 ** 7)
        nested = []
        for _ in range(10 ** 6):
            nested = [nested]
        json.dumps(nested)
    return True, "ok"
"""
    results = run_both_ways(code, [{"crash": True}, {"crash": False}], rejected=True)
    assert results[0].passed is None and "crashed" in results[0].error
    assert (results[1].passed, results[1].reason) == (True, "ok")


def test_hundred_megabytes_of_stdout_is_capped():
    code = "def eval_fn(trace):\n    print('x' * 100_000_000)\n    return True, 'printed'\n"
    results = run_both_ways(code, [{}], rejected=False)
    assert results[0].passed is True
    assert len(results[0].output) < 10_000
    assert "100000001 characters printed" in results[0].output


def test_raw_writes_to_stdout_and_the_result_stream_cannot_forge_or_flood():
    code = """
import os

def eval_fn(trace):
    if trace["fd"] is not None:
        os.write(trace["fd"], b"x" * 100_000_000)
    return True, "ok"
"""
    traces = [{"fd": 1}, {"fd": 2}, {"fd": 3}, {"fd": None}]
    results = run_both_ways(code, traces, rejected=True)
    assert [r.passed for r in results[:2]] == [True, True]
    assert results[2].passed is None and "more output than the sandbox accepts" in results[2].error
    assert results[3].passed is True


def test_forged_lines_in_the_result_stream_stop_the_jail():
    code = """
import os

def eval_fn(trace):
    if trace["forge"]:
        os.write(3, b'{"i": 7, "passed": true, "reason": "forged"}\\n')
    return False, "honest"
"""
    results = run_both_ways(code, [{"forge": True}, {"forge": False}], rejected=True)
    assert results[0].passed is None and "result stream" in results[0].error
    assert (results[1].passed, results[1].reason) == (False, "honest")


def test_exit_calls_and_signals_end_only_the_trace():
    code = """
import os
import signal
import sys

def eval_fn(trace):
    how = trace["how"]
    if how == "sys.exit":
        sys.exit(3)
    if how == "os._exit":
        os._exit(0)
    if how == "kill parent":
        os.kill(os.getppid(), signal.SIGKILL)
    if how == "kill host pid":
        os.kill(trace["pid"], signal.SIGTERM)
    if how == "kill all":
        os.kill(-1, signal.SIGKILL)
    return True, "ok"
"""
    hows = ["sys.exit", "os._exit", "kill parent", "kill host pid", "kill all", "none"]
    traces = [{"how": h, "pid": os.getpid()} for h in hows]
    results = run_both_ways(code, traces, rejected=True)
    assert "called exit (3)" in results[0].error
    assert "ended the interpreter (exit code 0)" in results[1].error
    assert all(r.passed is not True or r.reason == "ok" for r in results)
    assert results[-1].passed is True


def test_introspection_tricks_do_not_reach_os(markers):
    code = attempt(
        """
classes = ().__class__.__base__.__subclasses__()
wrap = [c for c in classes if c.__name__ == '_wrap_close'][0]
system = wrap.__init__.__globals__['system']
result = [system('touch ' + m) for m in trace['markers']]
imp = eval_fn.__globals__['__builtins__']['__import__']
result.append(imp('subprocess').run(['/bin/touch', trace['markers'][0]]).returncode)
"""
    )
    results = run_both_ways(code, [{"markers": markers}], rejected=True)
    assert results[0].passed is False or "0" not in results[0].reason.split("[")[1][:1]


def test_ctypes_cannot_get_around_the_jail(markers):
    code = attempt(
        """
libc = ctypes.CDLL(None)
codes = [libc.system(('touch ' + m).encode()) for m in trace['markers']]
codes.append(libc.syscall(41, 2, 1, 0))
result = codes
""",
        imports="import ctypes",
    )
    results = run_both_ways(code, [{"markers": markers}], rejected=True)
    if results[0].passed:
        # system() cannot spawn a shell (status 127 << 8) and socket(2) is denied (-1).
        assert results[0].reason == "got: [32512, 32512, -1]"


def test_import_tricks_do_not_reach_subprocess_or_system(markers):
    code = attempt(
        """
if trace['how'] == 'import':
    result = __import__('subprocess').run(['/bin/touch', trace['marker']]).returncode
elif trace['how'] == 'importlib':
    result = importlib.import_module('os').system('touch ' + trace['marker'])
else:
    result = typing.sys.modules['os'].system('touch ' + trace['marker'])
""",
        imports="import importlib\nimport typing",
    )
    traces = [{"how": h, "marker": markers[0]} for h in ("import", "importlib", "typing")]
    results = run_both_ways(code, traces, rejected=True)
    assert all(r.passed is False or r.reason != "got: 0" for r in results), results


def test_globals_do_not_carry_state_from_one_trace_to_the_next():
    code = """
SEEN = []

def eval_fn(trace):
    SEEN.append(trace["id"])
    return len(SEEN) == 1, ",".join(SEEN)
"""
    results = run_both_ways(code, [{"id": "a"}, {"id": "b"}, {"id": "c"}], rejected=False)
    assert [(r.passed, r.reason) for r in results] == [(True, "a"), (True, "b"), (True, "c")]


def test_files_do_not_carry_over_from_one_run_to_the_next():
    writer = attempt("open('/tmp/leak', 'w').write(trace['secret'])\nresult = 'written'")
    reader = attempt("result = open('/tmp/leak').read()")
    assert run_jail_only(writer, [{"secret": SECRET}])[0].passed is True
    leaked = run_jail_only(reader, [{}])[0]
    assert leaked.passed is False and "FileNotFoundError" in leaked.reason


# The attempts below go for the harness rather than the host: run arbitrary Python inside
# the jail, read the traces still waiting in the batch (the second trace carries the
# secret; the eval runs on the first one first), or write another trace's result.
PENDING = [{"id": "first"}, {"id": "second", "note": SECRET}]
# What a successful attempt did before the fix: read the batch's pending input.
PEEK = "sys.stdin.buffer.peek(1 << 20)"
# A route from any object to the os module's globals (and so to sys).
OS_GLOBALS = (
    "[c for c in ().__class__.__base__.__subclasses__() if c.__name__ == '_wrap_close']"
    "[0].__init__.__globals__"
)


def run_guarded(code, traces=PENDING, *, limits=None):
    """Run with validation off (the harness's own guards only), check validation rejects it.

    Return the results with validation off; none of them may show the pending trace.
    """
    guarded = run(code, traces, limits, validate_code=False)
    checked = run(code, traces, limits)
    assert all(r.passed is None and "rejected before running" in r.error for r in checked), [
        r.error for r in checked
    ]
    assert run(BENIGN, [{}])[0].reason == "still works"
    assert_contained(guarded)
    return guarded


def refused_in_jail(results, what):
    """Assert the harness refused the code before running it, naming what it refused."""
    for result in results:
        assert result.passed is None, result
        assert "not allowed" in result.error and what in result.error, result.error


def test_singledispatch_string_annotation_cannot_run_code():
    # functools.singledispatch evaluates a string annotation with typing.get_type_hints,
    # in the eval's globals: the validator never looked inside the string.
    annotation = f"(S := {OS_GLOBALS}['sys']) and int"
    code = f"""
import functools


@functools.singledispatch
def show(x):
    return "plain"


@show.register
def _(x: "{annotation}"):
    return "int"


def eval_fn(trace):
    return True, "got: " + repr({PEEK.replace("sys", "S")})
"""
    results = run_guarded(code)
    refused_in_jail(results, "not allowed")


def test_singledispatchmethod_in_a_class_body_cannot_run_code():
    annotation = f"(S := {OS_GLOBALS}['sys']) and int"
    code = f"""
import functools


class Show:
    @functools.singledispatchmethod
    def show(self, x):
        return "plain"

    @show.register
    def _(self, x: "{annotation}"):
        return "int"


def eval_fn(trace):
    return True, "got: " + repr({PEEK.replace("sys", "S")})
"""
    refused_in_jail(run_guarded(code), "not allowed")


def test_string_annotations_are_refused_wherever_they_are():
    # Whatever later reads them (typing.get_type_hints, a NamedTuple, a dispatcher), a
    # string annotation is code waiting to be evaluated.
    code = """
import typing


class Row(typing.NamedTuple):
    name: "typing.Optional[str]"


def helper(x: typing.List["int"]) -> "bool":
    return True


def eval_fn(trace):
    value: "int" = 1
    return helper(value), "annotated"
"""
    refused_in_jail(run_guarded(code), "string annotation")


def test_format_strings_cannot_read_attributes():
    # str.format and format_map follow "." and "[...]" in the template: a template from
    # the trace (or a literal) read the eval's globals and, from there, anything.
    code = """
def eval_fn(trace):
    how = trace.get("how")
    if how == "literal":
        result = "{0.__globals__[__name__]}".format(eval_fn)
    elif how == "template":
        result = trace["template"].format(eval_fn)
    elif how == "format_map":
        result = trace["named"].format_map({"f": eval_fn})
    elif how == "str.format":
        result = str.format(trace["template"], eval_fn)
    elif how == "nested spec":
        result = "{0:{1.__globals__[__name__]}}".format("", eval_fn)
    else:
        result = "-"
    return True, "got: " + result
"""
    template = "{0.__globals__[__name__]}"
    traces = [
        {"how": h, "template": template, "named": template.replace("{0", "{f")}
        for h in ("literal", "template", "format_map", "str.format", "nested spec")
    ]
    results = run_guarded(code, [*traces, *PENDING])
    assert_contained(results, must_not_contain="eval_module")
    refused_in_jail(results, "format")


def test_unicode_identifiers_that_normalise_to_dunders_are_dunders():
    # The parser folds identifiers to NFKC: "__ｃlass__" is "__class__" once compiled.
    route = OS_GLOBALS.replace("__class__", "__\uff43lass__").replace(
        "__globals__", "__\U0001d420lobals__"
    )
    code = f"""
def eval_fn(trace):
    sys = {route}["sys"]
    return True, "got: " + repr({PEEK})
"""
    assert "__class__" not in code and "__globals__" not in code
    refused_in_jail(run_guarded(code), "attribute '__")


def test_a_default_argument_cannot_capture_a_builtin_that_was_removed():
    # No dunder anywhere: globals() and vars() reach the real __import__ through the
    # eval's own namespace, unless they are not there at all.
    code = f"""
def load(name, g=globals, v=vars):
    found = g()["__builtins__"]
    return (found if type(found) is dict else v(found))["__import__"](name)


def eval_fn(trace):
    sys = load("sys")
    return True, "got: " + repr({PEEK})
"""
    results = run_guarded(code)
    assert all("NameError" in r.error and "globals" in r.error for r in results), results


def test_a_class_body_cannot_evaluate_a_string():
    code = """
class Grab:
    data = eval("__import__('sys').stdin.buffer.peek(1 << 20)")


def eval_fn(trace):
    return True, "got: " + repr(Grab.data)
"""
    results = run_guarded(code)
    assert all("NameError" in r.error and "'eval'" in r.error for r in results), results


def test_a_decorator_cannot_hand_out_function_globals():
    code = f"""
def capture(fn):
    return fn.__globals__["__builtins__"]


@capture
def builtins_():
    pass


def eval_fn(trace):
    real = builtins_ if type(builtins_) is dict else vars(builtins_)
    sys = real["__import__"]("sys")
    return True, "got: " + repr({PEEK})
"""
    refused_in_jail(run_guarded(code), "__globals__")


def test_getattr_with_a_name_from_the_trace_and_type_tricks_stay_out_of_dunders():
    # type() reaches object without a dunder; the dunders come from the trace, so the
    # source has none: only getattr itself can refuse them.
    code = f"""
def eval_fn(trace):
    root = type(0).mro()[-1]
    classes = getattr(type, trace["subclasses"])(root)
    wrap = [c for c in classes if getattr(c, trace["name"]) == "_wrap_close"][0]
    sys = getattr(getattr(wrap, trace["init"]), trace["globals"])["sys"]
    return True, "got: " + repr({PEEK})
"""
    names = {
        "subclasses": "__subclasses__",
        "name": "__name__",
        "init": "__init__",
        "globals": "__globals__",
    }
    results = run_guarded(code, [{**t, **names} for t in PENDING])
    assert all(
        "AttributeError" in r.error and "'__subclasses__' is not allowed" in r.error
        for r in results
    ), results


def test_traceback_and_generator_frames_do_not_reach_the_harness():
    # From a traceback or a running generator, f_back leads to the harness's own frame,
    # whose locals held the reader of the batch's input.
    code = """
def frames():
    yield ticker.gi_frame.f_back


def eval_fn(trace):
    try:
        1 / 0
    except ZeroDivisionError as exc:
        frame = exc.__traceback__.tb_frame.f_back
    found = [v.peek(1 << 20) for v in frame.f_locals.values() if hasattr(v, "peek")]
    return True, "got: " + repr(found)


ticker = frames()
"""
    refused_in_jail(run_guarded(code), "not allowed")


def test_import_admits_only_the_allow_list_at_run_time():
    # Validation off: the import statement itself must refuse, not the validator.
    code = f"""
def eval_fn(trace):
    if trace["id"] == "first":
        import sys
    else:
        import gc as sys
    return True, "got: " + repr({PEEK})
"""
    results = run_guarded(code)
    assert all(
        "ImportError" in r.error and "is not allowed in eval code" in r.error for r in results
    ), results


def test_an_eval_cannot_write_another_traces_result():
    # A well-formed block for this trace and the next, written straight to the result fd
    # (fd 3): the index matches, but the rows lack the nonces the runner sent.
    code = """
import os


def eval_fn(trace):
    if trace["id"] == "first":
        row = '[true,"forged",null,0.1,""]'
        guess = '[true,"forged",null,0.1,"","0000000000000000"]'
        os.write(3, ('{"i":0,"r":[' + row + "," + row + "]}\\n").encode())
        os.write(3, ('{"i":0,"r":[' + guess + "," + guess + "]}\\n").encode())
    return False, "honest"
"""
    traces = [{"id": "first"}, {"id": "second"}]
    guarded = run_guarded(code, traces)
    assert all("ImportError" in r.error for r in guarded), guarded
    # With the jail alone the write happens: the runner refuses the rows and stops the
    # jail, the writer's trace gets the error and the next trace its honest verdict.
    results = run_jail_only(code, traces)
    assert all(r.reason != "forged" for r in results), results
    assert results[0].passed is None and "result stream" in results[0].error
    assert (results[1].passed, results[1].reason) == (False, "honest")


def test_pending_traces_are_not_readable_from_stdin_even_with_the_jail_alone():
    code = f"""
import os
import sys


def eval_fn(trace):
    return True, "got: " + repr({PEEK}) + repr(sys.stdin.read()) + repr(os.read(0, 1 << 20))
"""
    results = run_jail_only(code, PENDING)
    assert_contained(results)
    assert results[0].reason == "got: b''''b''", results


def test_strings_are_not_compiled_as_code_while_the_eval_runs():
    # Defence in depth behind the names the validator refuses: whatever allowed-module
    # API turns a string into code goes through compile(), which the harness refuses
    # while eval code runs (typing makes a ForwardRef of any string it is given). Only
    # namedtuple's own template gets through.
    code = """
import collections
import typing


def eval_fn(trace):
    if trace["how"] == "namedtuple":
        point = collections.namedtuple("Point", "x y")
        return True, repr(point(1, 2))
    if trace["how"] == "forward ref":
        return True, repr(typing.List[trace["code"]])
    return True, repr(typing.TypedDict("T", {"a": trace["code"]}))
"""
    traces = [
        {"how": how, "code": OS_GLOBALS} for how in ("namedtuple", "forward ref", "typed dict")
    ]
    for results in (run(code, traces), run(code, traces, validate_code=False)):
        assert (results[0].passed, results[0].reason) == (True, "Point(x=1, y=2)")
        for result in results[1:]:
            assert result.passed is None
            assert "may not evaluate strings as code" in result.error, result.error
