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
