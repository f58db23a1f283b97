"""Run one eval over a batch of traces: the program started inside the jail.

Standard library only; it runs under the system interpreter with `-I -S`. Protocol:
stdin carries one JSON header line ({"code", "timeout", "output_chars", "message_chars",
"start"}) and then one JSON trace per line; stdout carries {"ready": true} once the
interpreter is up, then one JSON result per trace, in order, each flushed as it is made,
so the runner outside always knows which trace was running when something went wrong.
"""

import json
import os
import signal
import sys
import time
import traceback

EVAL_FILENAME = "<eval>"
# Bound once, so an eval that patches the json module cannot change how results are written.
dumps = json.dumps
loads = json.loads


class TraceTimeout(BaseException):
    """Raised in the eval when its trace runs out of time."""


class CappedOutput:
    """A stdout stand-in that keeps the first `limit` characters and counts the rest."""

    def __init__(self, limit):
        self.limit = limit
        self.parts = []
        self.kept = 0
        self.total = 0

    def write(self, text):
        if not isinstance(text, str):
            text = str(text)
        self.total += len(text)
        room = self.limit - self.kept
        if room > 0:
            piece = text[:room]
            self.parts.append(piece)
            self.kept += len(piece)
        return len(text)

    def flush(self):
        pass

    def isatty(self):
        return False

    def value(self):
        text = "".join(self.parts)
        if self.total > self.kept:
            text += f"\n[output truncated: {self.total} characters printed, first {self.kept} kept]"
        return text


def clip(text, limit):
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


def eval_line(tb):
    """Return the last line number inside the eval code in a traceback, if any."""
    line = None
    for frame, lineno in traceback.walk_tb(tb):
        if frame.f_code.co_filename == EVAL_FILENAME:
            line = lineno
    return line


def describe_exception(exc, source_lines):
    line = eval_line(exc.__traceback__)
    name = type(exc).__name__
    message = str(exc)
    text = f"{name}: {message}" if message else name
    if isinstance(exc, RecursionError):
        text = "RecursionError: maximum recursion depth exceeded"
    elif isinstance(exc, MemoryError):
        text = "MemoryError: the eval ran out of memory"
    if line is not None:
        text += f" (line {line} of the eval code"
        if 0 < line <= len(source_lines):
            text += f": {source_lines[line - 1].strip()}"
        text += ")"
    return text


def check_verdict(value):
    """Return (passed, reason, error) for what eval_fn returned."""
    if not isinstance(value, tuple) or len(value) != 2:
        shown = repr(value)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        return (
            None,
            "",
            f"eval_fn must return a tuple (bool, str); it returned {type(value).__name__} {shown}",
        )
    passed, reason = value
    if not isinstance(passed, bool):
        return (
            None,
            "",
            f"eval_fn must return (bool, str); the first item is {type(passed).__name__}, not bool",
        )
    if not isinstance(reason, str):
        return (
            None,
            "",
            f"eval_fn must return (bool, str); the second item is {type(reason).__name__}, not str",
        )
    return passed, reason, None


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def main():
    out_fd = os.dup(1)
    # The eval must not be able to write into the result stream or the runner's stderr.
    devnull = os.open("/dev/null", os.O_RDWR)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    os.close(devnull)
    os.write(out_fd, b'{"ready": true}\n')

    stdin = sys.stdin.buffer
    header = loads(stdin.readline())
    code_text = header["code"]
    timeout = float(header["timeout"])
    output_chars = int(header["output_chars"])
    message_chars = int(header["message_chars"])
    index = int(header.get("start", 0))
    source_lines = code_text.splitlines()

    load_error = None
    try:
        code = compile(code_text, EVAL_FILENAME, "exec")
    except SyntaxError as exc:
        code = None
        load_error = f"the eval code does not compile: {exc.msg} (line {exc.lineno})"

    state = {"fired": False, "index": index}

    def on_alarm(signum, frame):
        if not state["fired"]:
            state["fired"] = True
            # A second, short alarm catches an eval that swallows the first one.
            signal.setitimer(signal.ITIMER_REAL, 0.5)
            raise TraceTimeout()
        result = {
            "i": state["index"],
            "passed": None,
            "reason": "",
            "error": f"timed out after {timeout:g} s (and the eval kept running after the timeout)",
            "duration_ms": (time.perf_counter() - state["started"]) * 1000,
            "output": "",
            "fatal": True,
        }
        write_all(out_fd, (dumps(result) + "\n").encode())
        os._exit(3)

    signal.signal(signal.SIGALRM, on_alarm)
    real_stdout, real_stderr = sys.stdout, sys.stderr

    for raw in stdin:
        if not raw.strip():
            continue
        trace = loads(raw)
        captured = CappedOutput(output_chars)
        passed, reason, error = None, "", load_error
        state["fired"] = False
        state["index"] = index
        started = state["started"] = time.perf_counter()
        if code is not None:
            sys.stdout = sys.stderr = captured
            try:
                signal.setitimer(signal.ITIMER_REAL, timeout)
                try:
                    # A fresh namespace per trace: nothing one trace leaves in the eval's
                    # globals can change the verdict on the next.
                    namespace = {"__name__": "eval_module"}
                    exec(code, namespace)  # noqa: S102 - this is the sandbox
                    fn = namespace.get("eval_fn")
                    if not callable(fn):
                        error = "the eval code does not define eval_fn(trace)"
                    else:
                        passed, reason, error = check_verdict(fn(trace))
                finally:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            except TraceTimeout:
                passed, reason, error = None, "", f"timed out after {timeout:g} s"
            except SystemExit as exc:
                passed, reason, error = (
                    None,
                    "",
                    f"the eval called exit ({exc.code!r}); return (bool, str) instead",
                )
            except BaseException as exc:
                try:
                    error = describe_exception(exc, source_lines)
                except BaseException:
                    error = f"the eval raised {type(exc).__name__}"
                passed, reason = None, ""
            finally:
                sys.stdout, sys.stderr = real_stdout, real_stderr
        duration_ms = (time.perf_counter() - started) * 1000
        try:
            result = {
                "i": index,
                "passed": passed,
                "reason": clip(reason, message_chars),
                "error": clip(error, message_chars),
                "duration_ms": duration_ms,
                "output": captured.value(),
            }
            line = dumps(result)
        except Exception as exc:
            line = dumps(
                {
                    "i": index,
                    "passed": None,
                    "reason": "",
                    "error": f"the result could not be encoded: {type(exc).__name__}",
                    "duration_ms": duration_ms,
                    "output": "",
                }
            )
        write_all(out_fd, (line + "\n").encode("utf-8", "replace"))
        index += 1


if __name__ == "__main__":
    main()
