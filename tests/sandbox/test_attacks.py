"""More attacks on the real nsjail sandbox, grouped so that each test starts few jails.

test_escape.py holds the first round; these are the ones it did not try: unix and UDP
sockets, threads, raising a hard rlimit, stopping itself, pickle, the result and input
fds closed, replaced or drained, the timer silenced by every signal call at once, text a
database cannot store, verdicts of gigabytes, eval code that runs after its trace's
window closes (an exception's __str__, a SystemExit's __repr__), names built from
strings, and a result row forged with a duration that is not a time. Host attacks run
with the jail alone (run_jail_only) and with validation, which rejects them first.
"""

import pickle

from sandbox import Limits, run
from sandbox.runner import WROTE_INTO_RESULTS, run_jail_only

FAST = Limits(trace_timeout_s=0.3, batch_timeout_s=20, cpu_time_s=10)
DONE = {"how": "honest"}

HOST_ATTACKS = r"""
import os
import pickle
import resource
import signal
import socket
import threading


def eval_fn(trace):
    how = trace["how"]
    try:
        if how == "unix socket":
            s = socket.socket(socket.AF_UNIX)
            s.connect("/var/run/postgresql/.s.PGSQL.5432")
        elif how == "udp":
            socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 53))
        elif how == "thread":
            threading.Thread(target=print).start()
        elif how == "read":
            return True, "got: " + open(trace["path"]).read()
        elif how == "list root":
            return True, "got: " + " ".join(sorted(os.listdir("/")))
        elif how == "ids":
            return True, "got: %s %s" % (os.getuid(), os.getgid())
        elif how == "raise memory limit":
            hard = resource.getrlimit(resource.RLIMIT_AS)[1]
            resource.setrlimit(resource.RLIMIT_AS, (-1, -1) if hard == -1 else (hard, -1))
            bytearray(2 << 30)
        elif how == "stop":
            os.kill(os.getpid(), signal.SIGSTOP)
        elif how == "pickle":
            return True, "got: %s" % pickle.loads(trace["payload"].encode("latin-1"))
        else:
            return True, "honest"
        return True, "got through"
    except BaseException as exc:
        return False, "blocked: " + type(exc).__name__
"""


class _Touch:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (__import__("os").system, (f"touch {self.path}",))


def test_host_attacks_the_previous_round_did_not_try(tmp_path):
    marker = tmp_path / "pickled"
    payload = pickle.dumps(_Touch(marker), protocol=0).decode("latin-1")
    traces = [
        {"how": "unix socket"},
        {"how": "udp"},
        {"how": "thread"},
        {"how": "read", "path": "/proc/self/environ"},
        {"how": "read", "path": "/etc/passwd"},
        {"how": "list root"},
        {"how": "ids"},
        {"how": "raise memory limit"},
        {"how": "stop"},
        {"how": "pickle", "payload": payload},
        DONE,
    ]
    results = run_jail_only(HOST_ATTACKS, traces, FAST)
    got = [(r.passed, r.reason) for r in results]
    assert got[:5] == [
        (False, "blocked: PermissionError"),  # seccomp: no socket() of any family
        (False, "blocked: PermissionError"),
        (False, "blocked: RuntimeError"),  # clone is refused: "can't start new thread"
        (False, "blocked: FileNotFoundError"),  # no /proc
        (False, "blocked: FileNotFoundError"),  # no /etc
    ], got
    # Nothing of the host's tree: no /etc, /proc, /home, /work, /run (the database socket).
    assert got[5] == (True, "got: dev lib64 tmp usr"), got
    assert got[6] == (True, "got: 65534 65534"), got
    # The hard limit equals the soft one: raising it fails before any allocation.
    assert got[7] == (False, "blocked: ValueError"), got
    # The eval is pid 1 of its namespace: SIGSTOP to itself is ignored, the trace goes on.
    assert got[8] == (True, "got through"), got
    # The pickle runs os.system inside the jail: no shell starts (no fork, no /bin/sh;
    # glibc answers 127 << 8), and the jail has no view of the host path anyway.
    assert got[9] in ((True, "got: -1"), (True, "got: 32512")) and not marker.exists(), got
    assert got[10] == (True, "honest")
    # Validation refuses every one of them before a jail starts.
    assert all("rejected before running" in r.error for r in run(HOST_ATTACKS, traces, FAST))


PROTOCOL_ATTACKS = r"""
import os


def eval_fn(trace):
    how = trace["how"]
    if how == "close the result fd":
        os.close(3)
    elif how == "result fd to /dev/null":
        os.dup2(os.open("/dev/null", os.O_WRONLY), 3)
    elif how == "half a block":
        os.write(3, b'{"i":0,"r":[[true,"forged",null,1.0,"",')
    elif how == "drain the input":
        while os.read(4, 1 << 16):
            pass
        return True, "forged"
    return True, "honest"
"""


def test_the_result_and_input_fds_cannot_be_closed_replaced_or_drained_unnoticed():
    hows = ["close the result fd", "result fd to /dev/null", "half a block", "drain the input"]
    traces = [t for how in hows for t in ({"how": how, "pad": "x" * 4000}, DONE)]
    results = run_jail_only(PROTOCOL_ATTACKS, traces, FAST)
    close, devnull, half, drain = results[0::2]
    # The jail ends with the trace that broke it; its result is an error, never a verdict.
    assert close.passed is None and "ended the interpreter (exit code 1)" in close.error
    assert devnull.passed is None and "ended the interpreter" in devnull.error
    assert half.passed is None and "wrote into the sandbox's result stream" in half.error
    # Draining fd 4 takes the traces queued behind this one: the harness then reads a
    # frame cut in two, which is an error, and every honest trace still gets its verdict.
    assert drain.reason == "forged" or drain.passed is None
    honest = results[1::2]
    assert [(r.passed, r.reason) for r in honest[:3]] == [(True, "honest")] * 3, results
    assert all(r.passed is None or r.reason == "honest" for r in honest[3:]), results
    assert sum(r.passed is None for r in results) <= 4, results


def test_silencing_the_timer_every_way_at_once_is_ended_by_the_watchdog():
    code = """
import signal


def eval_fn(trace):
    if trace["how"] == "silence":
        signal.signal(signal.SIGALRM, signal.SIG_IGN)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
        signal.setitimer(signal.ITIMER_REAL, 0)
        while True:
            pass
    return True, "honest"
"""
    results = run_jail_only(code, [{"how": "silence"}, DONE], FAST)
    assert results[0].passed is None
    assert "did not stop when its time ran out and was killed" in results[0].error
    assert (results[1].passed, results[1].reason) == (True, "honest")


def test_text_a_database_cannot_store_comes_back_replaced():
    # NUL and lone surrogates in a reason, an output or an error message made the whole
    # batch's verdicts fail to store (PostgreSQL refuses both); they become U+FFFD.
    code = r"""
def eval_fn(trace):
    print("out\x00put" + chr(0xD800))
    if trace["how"] == "raise":
        raise ValueError("bad\x00" + chr(0xDFFF))
    return True, "re\x00ason" + chr(0xDBFF) + " \U0001F600 " + chr(0xD83D) + chr(0xDE00)
"""
    verdict, error = run(code, [{"how": "return"}, {"how": "raise"}])
    assert verdict.reason == "re\ufffdason\ufffd \U0001f600 \U0001f600"
    assert verdict.output == error.output == "out\ufffdput\ufffd\n"
    assert error.error.startswith("ValueError: bad\ufffd\ufffd (line 5")
    for text in (verdict.reason, verdict.output, error.error):
        text.encode("utf-8")


def test_verdicts_of_gigabytes_are_memory_errors_or_clipped():
    code = """
def eval_fn(trace):
    return True, "x" * trace["size"]
"""
    huge, large = run(code, [{"size": 4 << 30}, {"size": 5_000_000}])
    assert huge.passed is None and "MemoryError" in huge.error
    assert large.passed is True and len(large.reason) < 2100
    assert large.reason.endswith("... [4998000 more characters]")


# Eval code can run after eval_fn has returned or raised: the harness reads an exception's
# str() for the error message and a SystemExit's repr(). typing makes a ForwardRef (a
# compile()) of any string it is given; the harness refuses that while eval code runs.
AFTER_THE_WINDOW = """
import typing


def try_compile():
    try:
        typing.List["int"]
    except BaseException as exc:
        return "refused: " + str(exc)
    return "a string was compiled"


class Sneaky(Exception):
    def __str__(self):
        return try_compile()


class Exiting:
    def __repr__(self):
        return try_compile()


def eval_fn(trace):
    if trace["how"] == "exit":
        raise SystemExit(Exiting())
    raise Sneaky()
"""


def test_code_that_runs_after_its_window_still_cannot_compile_strings():
    traces = [{"how": "raise"}, {"how": "exit"}]
    for results in (
        run(AFTER_THE_WINDOW, traces),
        run(AFTER_THE_WINDOW, traces, validate_code=False),
    ):
        assert all(r.passed is None for r in results), results
        assert "compiled" not in results[0].error + results[1].error
        refused = "refused: eval code may not evaluate strings as code"
        assert results[0].error.startswith("Sneaky: " + refused), results[0].error
        assert results[1].error.startswith(f"the eval called exit ({refused})"), results[1].error


def test_names_built_from_strings_and_native_modules_are_refused_at_run_time():
    code = """
def eval_fn(trace):
    how = trace["how"]
    try:
        if how == "getattr":
            return True, repr(getattr(object, "__sub" + "classes__")())
        if how == "pickle":
            import pickle
        elif how == "marshal":
            import marshal
        elif how == "ctypes":
            import ctypes
        elif how == "signal":
            import signal
        elif how == "c signal":
            import _signal
        return True, "imported"
    except BaseException as exc:
        return False, repr(exc)
"""
    hows = ["getattr", "pickle", "marshal", "ctypes", "signal", "c signal"]
    traces = [{"how": how} for how in hows]
    results = run(code, traces, validate_code=False)
    assert results[0].reason == (
        "AttributeError(\"access to attribute '__subclasses__' is not allowed in eval code\")"
    )
    for how, result in zip(hows[1:], results[1:], strict=True):
        assert result.passed is False and result.reason.startswith("ImportError"), (how, result)
    assert all("rejected before running" in r.error for r in run(code, traces))


def test_a_forged_row_with_a_duration_that_is_not_a_time_stops_the_jail():
    # Past the in-process layers (the jail alone), eval code can walk to the harness's
    # frame and take its trace's nonce: the row it then forges may carry any JSON number.
    # A NaN or infinite duration reached the verdicts; an integer too large for a float
    # raised OverflowError out of run() (a failed task, a 500 on "run now").
    code = r"""
import os
import sys


def eval_fn(trace):
    frame = sys._getframe()
    while frame.f_code.co_name != "main":
        frame = frame.f_back
    row = '[true,"forged",null,%s,"","%s"]' % (trace["ms"], frame.f_locals["nonce"])
    os.write(3, ('{"i":0,"r":[' + row + "]}\n").encode())
    return False, "honest"
"""
    durations = ["NaN", "Infinity", "-1e999", "1" + "0" * 400, "-5"]
    limits = Limits(trace_timeout_s=1.0, batch_timeout_s=20, cpu_time_s=10, max_restarts=10)
    results = run_jail_only(code, [{"ms": ms} for ms in durations], limits)
    assert [(r.passed, r.error) for r in results] == [(None, WROTE_INTO_RESULTS)] * 5, results


# What eval_fn returns is checked by what it is, not by what it claims to be (isinstance()
# believes a __class__ property), and an error message that never ends is timed like the
# eval: before, each of these ran on past its trace's window until the runner's watchdog
# killed the jail (the tuple's claim was even taken as a verdict).
NOT_WHAT_IT_SAYS = """
class Bool:
    @property
    def __class__(self):
        return bool

    def __bool__(self):
        while True:
            pass


class Pair:
    @property
    def __class__(self):
        return tuple

    def __len__(self):
        return 2

    def __iter__(self):
        return iter([True, "claims to be a tuple"])


class Endless(Exception):
    def __str__(self):
        while True:
            pass


class Forever:
    def __repr__(self):
        while True:
            pass


def eval_fn(trace):
    how = trace["how"]
    if how == "bool":
        return Bool(), "a verdict"
    if how == "tuple":
        return Pair()
    if how == "message":
        raise Endless()
    if how == "exit":
        raise SystemExit(Forever())
    return True, "honest"
"""


def test_verdicts_that_lie_about_their_type_or_never_describe_themselves_get_their_own_error():
    hows = ["bool", "tuple", "message", "exit", "honest"]
    results = run(NOT_WHAT_IT_SAYS, [{"how": h} for h in hows], FAST)

    errors = dict(zip(hows, (r.error for r in results), strict=True))
    assert errors["bool"] == "eval_fn must return (bool, str); the first item is Bool, not bool"
    assert errors["tuple"].startswith("eval_fn must return a tuple (bool, str); it returned Pair")
    assert errors["message"] == errors["exit"] == "timed out after 0.3 s"
    assert all(r.passed is None for r in results[:-1])
    assert (results[-1].passed, results[-1].reason) == (True, "honest")
