"""Run eval code over traces in a jail, one JSON result per trace."""

from __future__ import annotations

import contextlib
import fcntl
import json
import marshal
import math
import os
import re
import resource
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sandbox import calls as model_calls
from sandbox import jail
from sandbox.calls import CallHandler
from sandbox.config import Limits, Settings, get_settings
from sandbox.errors import BackendRefused, SandboxError, SandboxUnavailable
from sandbox.validate import (
    ALLOWED_MODULES,
    FORBIDDEN_ATTRIBUTE_PREFIXES,
    FORBIDDEN_ATTRIBUTES,
    JUDGE_MODULE,
    validate,
)

LOCAL_WARNING = (
    "insecure local backend: this eval ran in a plain subprocess without isolation; "
    "for development only"
)
# Time nsjail and the interpreter get to start before the watchdog gives up on them.
STARTUP_ALLOWANCE_S = 10.0
# Extra time past the in-jail timer before the watchdog kills a jail that stopped answering.
WATCHDOG_GRACE_S = 2.0
F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
PIPE_SIZE = 1024 * 1024
READ_SIZE = 256 * 1024
# Traces encoded and written to a jail at a time.
FEED_TRACES = 256
# Results the harness gathers before it writes a block (also written every 50 ms).
FLUSH_BYTES = 32768
# Frame kinds the harness reads: a trace in marshal format, or JSON text.
MARSHAL_FRAME = b"M"
JSON_FRAME = b"J"
# Random bytes per trace, sent in its frame and echoed with its result (see harness.py).
NONCE_BYTES = 8
# A jail costs tens of milliseconds to start (26 ms wall, 13 ms CPU measured on 2 cores),
# more than the harness spends on a thousand synced traces (about 15 ms of CPU): a batch
# that small is not worth a second jail. Measured on 10 batches of 1,000 (bench/
# continuous.py's traces, load 2): two jails of 500 each took 0.46 s and 0.43 s of jail
# CPU, one jail each 0.40 s and 0.29 s; in a worker, whose reads and writes share the
# cores, the jails' CPU is most of a run's.
MIN_TRACES_PER_JAIL = 1000
# An eval that calls a model spends its time waiting on the provider, not the CPU: its
# batch goes in jails of at most this many traces, Limits.call_concurrency at once. Small
# jails keep a slow provider within one jail's wall-time limit (batch_timeout_s).
CALL_TRACES_PER_JAIL = 50
# The longest judge()/llm() call line: its text, JSON-escaped (at most 6 bytes a character).
CALL_LINE_MAX = 6 * (model_calls.MAX_PROMPT_CHARS + model_calls.MAX_CHOICES * 100) + 4096
# One encoder for every trace: json.dumps would build a new one per call. Non-JSON values
# (datetimes, UUIDs) become their str(); ASCII output keeps every trace on one line.
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)
# The longest duration a result row may carry (a year): what the harness measures is far
# less; a row past the in-process layers may carry any JSON number.
MAX_DURATION_MS = 365 * 24 * 3600 * 1000.0
# What no database text column stores: NUL, and lone surrogates (not UTF-8). The harness
# writes ASCII, so they arrive only as these escapes (a character past U+FFFF, sent as an
# escaped pair, matches too: the JSON decoder joins the pair, and the check keeps it).
# Most blocks have no "\\u" at all: that one search is all they cost.
_UNSTORABLE_ESCAPE = re.compile(rb"\\u(?:0000|[dD])")

SIGNAL_MESSAGES = {
    signal.SIGSEGV: "the interpreter crashed (segmentation fault, often from unbounded recursion)",
    signal.SIGBUS: "the interpreter crashed (bus error)",
    signal.SIGABRT: "the interpreter aborted",
    signal.SIGXCPU: "the eval used more CPU time than allowed ({cpu} s per batch)",
    signal.SIGXFSZ: "the eval wrote a file larger than allowed ({fsize} MB)",
    signal.SIGSYS: "the eval made a forbidden system call",
    signal.SIGKILL: (
        "the interpreter was killed (usually for running out of memory, limit {memory} MB)"
    ),
}
# Why a jail is stopped when its stdout breaks the protocol.
TOO_MUCH_OUTPUT = "the eval produced more output than the sandbox accepts and was stopped"
WROTE_INTO_RESULTS = "the eval wrote into the sandbox's result stream and was stopped"


def too_many_calls(limit: int) -> str:
    """Why a jail is stopped when one trace makes more judge()/llm() calls than allowed."""
    return (
        f"the eval made more than {limit} judge()/llm() calls on this trace "
        "(the limit per trace) and was stopped"
    )


@dataclass(frozen=True)
class Result:
    """The verdict of one eval on one trace.

    `passed` is None whenever `error` is set; `output` is what the eval printed (capped);
    `warning` is set on every result from the insecure local backend.
    """

    passed: bool | None
    reason: str
    error: str | None
    duration_ms: float
    output: str = ""
    warning: str | None = None


@dataclass(frozen=True)
class _Channel:
    """How a run answers judge()/llm() calls from the jail (see sandbox/calls.py)."""

    handler: CallHandler | None
    # The eval imports the judge module: its jail's input stays open for replies until
    # every result is in (and it writes each result as it is made).
    open_input: bool


@dataclass
class _Batch:
    # (passed, reason, error, duration_ms, output) per trace answered, in order.
    results: list[tuple]
    stop_reason: str | None
    # The harness ended the jail itself after the last result (an eval that kept running
    # past its timeout), so that result already says what went wrong.
    fatal: bool = False


def run(
    code: str,
    traces: list[dict],
    limits: Limits | None = None,
    *,
    validate_code: bool = True,
    calls: CallHandler | None = None,
) -> list[Result]:
    """Run `eval_fn` from `code` on each trace in the sandbox; one Result per trace, in order.

    Code that fails validation is not run: every trace gets the validation problems as its
    error. Raise SandboxUnavailable or BackendRefused when the configured backend cannot or
    may not run code; never raise because of what the eval does. `calls` answers the
    eval's judge()/llm() calls (sandbox/calls.py); without it they raise in the eval.
    """

    def encode(i: int, use_marshal: bool) -> tuple[bytes, bytes]:
        trace = traces[i]
        if use_marshal:
            try:
                return MARSHAL_FRAME, marshal.dumps(trace, marshal.version)
            except ValueError:
                pass  # a value marshal cannot carry (a datetime, a UUID, a subclass)
        return JSON_FRAME, _ENCODER.encode(trace).encode()

    return _run(code, len(traces), encode, limits, validate_code, calls=calls)


def run_json(
    code: str,
    traces_json: Sequence[str | bytes],
    limits: Limits | None = None,
    *,
    validate_code: bool = True,
    calls: CallHandler | None = None,
    ahead: bool = False,
) -> list[Result]:
    """Like `run`, for traces already encoded as JSON text (str, or UTF-8 bytes).

    For callers that hold the JSON text anyway (a database column read as text): it skips
    encoding in this process, the largest per-trace cost outside the jail. A trace that is
    not valid JSON gets a per-trace error; the eval sees what json.loads would return.

    ``ahead``: another call with the same limits follows soon (a run's next batch): a
    fresh jail is started now, while this batch runs, for that call to take instead of
    waiting for one to start (``drop_spare`` ends it when none follows).
    """

    def encode(i: int, use_marshal: bool) -> tuple[bytes, bytes]:
        text = traces_json[i]
        if isinstance(text, str):
            text = text.encode("utf-8", "surrogatepass")
        return JSON_FRAME, text

    return _run(code, len(traces_json), encode, limits, validate_code, calls=calls, ahead=ahead)


def run_jail_only(
    code: str,
    traces: list[dict],
    limits: Limits | None = None,
    *,
    calls: CallHandler | None = None,
) -> list[Result]:
    """Run `code` with neither validation nor the harness's restricted builtins: tests only.

    What is left is the jail and the runner's checks; the escape suite uses this to show
    that they hold on their own. Never call it on code a user wrote.
    """
    return _run(
        code,
        len(traces),
        lambda i, _marshal: (JSON_FRAME, _ENCODER.encode(traces[i]).encode()),
        limits,
        validate_code=False,
        restricted=False,
        calls=calls,
    )


class _RestartBudget:
    """Fresh jails one run may still start after the eval killed one, across its chunks."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._lock = threading.Lock()

    def take(self) -> tuple[bool, int]:
        with self._lock:
            self.used += 1
            return self.used <= self.limit, self.used


class _Frames:
    """Each trace's frame, encoded when a jail first needs it and kept for reruns.

    Encoding happens in the threads that feed the jails, so it overlaps with the jails
    starting and working instead of coming before them. Each index belongs to one chunk,
    so one thread, and needs no lock. Marshal is used only when the jail's interpreter
    reads the same marshal format as this one.

    A frame is the kind byte, the trace's nonce, the payload's length (4 bytes) and the
    payload. The nonces are random per run; a rerun of a trace reuses its nonce.
    """

    def __init__(
        self,
        count: int,
        encode: Callable[[int, bool], tuple[bytes, bytes]],
        use_marshal: bool,
    ) -> None:
        self.cache: list[bytes | None] = [None] * count
        self.encode = encode
        self.use_marshal = use_marshal
        self.nonces = os.urandom(NONCE_BYTES * count)

    def nonce(self, i: int) -> str:
        return self.nonces[NONCE_BYTES * i : NONCE_BYTES * (i + 1)].hex()

    def get(self, i: int) -> bytes:
        frame = self.cache[i]
        if frame is None:
            kind, payload = self.encode(i, self.use_marshal)
            nonce = self.nonces[NONCE_BYTES * i : NONCE_BYTES * (i + 1)]
            frame = self.cache[i] = b"".join(
                (kind, nonce, len(payload).to_bytes(4, "big"), payload)
            )
        return frame


def _run(
    code: str,
    count: int,
    encode: Callable[[int, bool], tuple[bytes, bytes]],
    limits: Limits | None,
    validate_code: bool,
    restricted: bool = True,
    calls: CallHandler | None = None,
    ahead: bool = False,
) -> list[Result]:
    settings = get_settings()
    limits = limits or settings.limits
    if validate_code:
        problems = validate(code)
        if problems:
            summary = "; ".join(str(p) for p in problems[:5])
            if len(problems) > 5:
                summary += f"; and {len(problems) - 5} more"
            error = f"the eval code was rejected before running: {summary}"
            return [Result(None, "", error, 0.0) for _ in range(count)]
    backend = _backend(settings, limits)
    if not count:
        return []
    frames = _Frames(count, encode, backend.marshal_version == marshal.version)
    warning = LOCAL_WARNING if settings.backend == "local" else None
    results: list[Result | None] = [None] * count
    budget = _RestartBudget(limits.max_restarts)
    channel = _Channel(calls, JUDGE_MODULE in code)
    chunks, workers = _chunks(count, limits, calls_models=channel.open_input)

    def run_chunk(chunk: range) -> None:
        _run_chunk(
            backend,
            code,
            frames,
            list(chunk),
            limits,
            results,
            warning,
            budget,
            restricted,
            channel,
            ahead,
        )

    if workers == 1 or len(chunks) == 1:
        for chunk in chunks:
            run_chunk(chunk)
    else:
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox-jail") as pool:
            # list() re-raises the first SandboxUnavailable from any jail.
            list(pool.map(run_chunk, chunks))
    return [r for r in results if r is not None]


def _usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def _chunks(count: int, limits: Limits, *, calls_models: bool = False) -> tuple[list[range], int]:
    """Split a batch into chunks of at most chunk_size, enough to keep the cores busy.

    An eval that calls a model waits on it, so it gets call_concurrency jails at once
    instead, each with a small chunk.
    """
    if calls_models:
        workers = limits.call_concurrency
        per_jail = min(limits.chunk_size, CALL_TRACES_PER_JAIL)
        # A multiple of the workers, of equal size: no last jail runs with the rest idle.
        wanted = workers * math.ceil(count / (workers * per_jail))
    else:
        workers = max(1, min(limits.parallel_jails, _usable_cores()))
        wanted = min(workers, count // MIN_TRACES_PER_JAIL)
    parts = max(math.ceil(count / limits.chunk_size), wanted, 1)
    size = math.ceil(count / parts)
    return [range(start, min(count, start + size)) for start in range(0, count, size)], workers


def _run_chunk(
    backend: _Backend,
    code: str,
    frames: _Frames,
    pending: list[int],
    limits: Limits,
    results: list[Result | None],
    warning: str | None,
    budget: _RestartBudget,
    restricted: bool,
    channel: _Channel,
    ahead: bool = False,
) -> None:
    # With its input kept open for replies, a jail is told the batch is over only once
    # every result is in, so it must write each result as it is made.
    flush_each = channel.open_input
    while pending:
        batch = _run_batch(
            backend, code, frames, pending, limits, flush_each, restricted, channel, ahead
        )
        for i, row in zip(pending, batch.results, strict=False):
            results[i] = Result(*row, warning)
        done = len(batch.results)
        if done == len(pending):
            return
        fatal = batch.fatal
        if not flush_each and not fatal:
            # The jail died with results it had not written yet, so which trace killed it
            # is unknown: run the rest again in a jail that writes every result at once.
            flush_each = True
            pending = pending[done:]
            continue
        if fatal:
            rest = pending[done:]
        else:
            culprit = pending[done]
            results[culprit] = Result(None, "", batch.stop_reason, 0.0, "", warning)
            rest = pending[done + 1 :]
        allowed, used = budget.take()
        if not allowed and rest:
            error = (
                f"not run: the eval broke the sandbox {used} times in this batch; "
                "fix the error reported on the earlier traces first"
            )
            for i in rest:
                results[i] = Result(None, "", error, 0.0, "", warning)
            rest = []
        pending = rest


@dataclass(frozen=True)
class _Backend:
    name: str
    command: list[str]
    # The marshal format the jail's interpreter reads (None: send JSON only).
    marshal_version: int | None = None
    # Sent on stdin before the header: the compiled harness the command line's loader runs.
    preamble: bytes = b""


def prepare(limits: Limits | None = None) -> None:
    """Do the start-up work of a first run now, or raise what is missing.

    The first run in a process checks the jail with an empty run and asks the jail's
    interpreter for its compiled harness and marshal format (about 0.2 s, cached for the
    process's life). A worker calls this as it starts, so its first batch does not wait.
    """
    settings = get_settings()
    _backend(settings, limits or settings.limits)


def _backend(settings: Settings, limits: Limits) -> _Backend:
    if settings.backend == "local":
        if not settings.allow_local:
            raise BackendRefused(
                "the local sandbox backend runs eval code without isolation and is not "
                "allowed here; use the nsjail backend, or allow the local backend "
                "explicitly for development",
                permanent=True,
            )
        python = settings.python_path if os.path.exists(settings.python_path) else sys.executable
        return _Backend(
            "local",
            jail.harness_args(python),
            jail.marshal_version(python),
            jail.harness_preamble(python),
        )
    jail.check(settings, limits)
    return _Backend(
        "nsjail",
        jail.nsjail_command(settings, limits),
        jail.marshal_version(settings.python_path),
        jail.jail_preamble(settings),
    )


def _local_preexec(limits: Limits):
    def apply() -> None:
        memory = limits.memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
        resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_time_s, limits.cpu_time_s))
        size = limits.max_file_size_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_FSIZE, (size, size))
        resource.setrlimit(resource.RLIMIT_NOFILE, (limits.max_open_files, limits.max_open_files))
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply


def _max_line(limits: Limits) -> int:
    # A block is written once it holds FLUSH_BYTES, so it is at most that plus one result;
    # worst case JSON escaping is 6 bytes per character (\uXXXX).
    return FLUSH_BYTES + 6 * (limits.output_chars + 2 * limits.message_chars + 200) + 4096


def _run_batch(
    backend: _Backend,
    code: str,
    frames: _Frames,
    indices: list[int],
    limits: Limits,
    flush_each: bool,
    restricted: bool,
    channel: _Channel,
    ahead: bool = False,
) -> _Batch:
    header = _header(code, limits, flush_each=flush_each, restricted=restricted)

    def payload() -> Iterator[bytes]:
        yield backend.preamble + header + b"\n"
        for start in range(0, len(indices), FEED_TRACES):
            yield b"".join([frames.get(i) for i in indices[start : start + FEED_TRACES]])

    # The local backend's interpreter works in a directory of its own; a jail has its
    # private /tmp and needs none (making and removing one costs as much as a jail's mounts).
    workspace = (
        tempfile.TemporaryDirectory(prefix="iofold-local-")
        if backend.name == "local"
        else contextlib.nullcontext(None)
    )
    with workspace as workdir:
        proc = (workdir is None and _take_spare(backend)) or _start(backend, limits, workdir)
        if ahead and workdir is None:
            # Started now, it is ready by the time this batch is judged.
            _keep_spare(backend, limits)
        nonces = [frames.nonce(i) for i in indices]
        return _drive(proc, payload(), nonces, limits, backend.name, channel, indices)


def _header(code: str, limits: Limits, *, flush_each: bool, restricted: bool) -> bytes:
    """Return the harness's header line (without its newline): the code and its limits."""
    return json.dumps(
        {
            "code": code,
            "timeout": limits.trace_timeout_s,
            "output_chars": limits.output_chars,
            "message_chars": limits.message_chars,
            "flush_bytes": FLUSH_BYTES,
            "start": 0,
            "flush_each": flush_each,
            "modules": sorted(ALLOWED_MODULES),
            "forbidden_attributes": sorted(FORBIDDEN_ATTRIBUTES),
            "forbidden_prefixes": FORBIDDEN_ATTRIBUTE_PREFIXES,
            "restricted": restricted,
        }
    ).encode()


def _start(backend: _Backend, limits: Limits, workdir: str | None) -> subprocess.Popen:
    """Start one jail (or local interpreter) running the harness, in its own session."""
    local = backend.name == "local"
    try:
        return subprocess.Popen(
            backend.command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={},
            cwd=workdir if local else None,
            preexec_fn=_local_preexec(limits) if local else None,
            start_new_session=True,
        )
    except OSError as exc:
        raise SandboxUnavailable(
            f"the sandbox could not be started: {exc}", permanent=True
        ) from None


# The jail started ahead for a caller's next batch (``run_json(ahead=True)``): a fresh
# jail that has run nothing, waiting for its input. Only one, taken by the next batch of
# the same command (the same limits). A jail's start is most of a 1,000-trace batch's wall
# time (26 ms of about 40), so a run's batches no longer wait for it. Older than this, it
# is ended instead: its wall-time limit (nsjail's) has been running since it started.
SPARE_MAX_AGE_S = 10.0
_spare_lock = threading.Lock()
_spare: tuple[tuple[str, ...], subprocess.Popen, float] | None = None


def _take_spare(backend: _Backend) -> subprocess.Popen | None:
    """Return the jail started ahead for this backend's command, if fresh; else None."""
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
    if spare is None:
        return None
    command, proc, born = spare
    if (
        command == tuple(backend.command)
        and proc.poll() is None
        and time.monotonic() - born < SPARE_MAX_AGE_S
    ):
        return proc
    _end(proc)
    return None


def _keep_spare(backend: _Backend, limits: Limits) -> None:
    """Start a jail for the next batch unless one is waiting already."""
    global _spare
    with _spare_lock:
        if _spare is not None:
            return
        _spare = (tuple(backend.command), _start(backend, limits, None), time.monotonic())


def start_ahead(limits: Limits | None = None) -> None:
    """Start a jail now for the next ``run_json`` call with ``limits`` to take.

    For a caller about to read its first batch (a chunk just claimed): the jail starts
    while the batch is read instead of after (``drop_spare`` ends it if no call comes).
    Never raises: a sandbox that cannot start says so at the call itself.
    """
    settings = get_settings()
    limits = limits or settings.limits
    with contextlib.suppress(SandboxError):
        backend = _backend(settings, limits)
        if backend.name != "local":  # a local interpreter needs the call's own directory
            _keep_spare(backend, limits)


def drop_spare() -> None:
    """End the jail started ahead, if any (a run's last batch is judged)."""
    global _spare
    with _spare_lock:
        spare, _spare = _spare, None
    if spare is not None:
        _end(spare[1])


def _end(proc: subprocess.Popen) -> None:
    _kill(proc)
    with contextlib.suppress(OSError):
        proc.stdin.close()
    _reap(proc)


class _Input:
    """The jail's input, written by the feeder (traces) and the reader (call replies)."""

    def __init__(self, proc: subprocess.Popen, open_input: bool) -> None:
        self.stream = proc.stdin
        self.lock = threading.Lock()
        self.open_input = open_input
        # Set once every result is in: only then may a jail that takes replies see EOF.
        self.finished = threading.Event()

    def write(self, block: bytes) -> None:
        with self.lock:
            self.stream.write(block)
            self.stream.flush()

    def reply(self, frame: bytes) -> None:
        # The jail may be gone (killed, or it closed its input): the reply is moot then.
        with contextlib.suppress(OSError, ValueError):
            self.write(frame)

    def close(self) -> None:
        with self.lock, contextlib.suppress(OSError, ValueError):
            self.stream.close()


def _feed(proc: subprocess.Popen, payload: Iterable[bytes], failure: list, inbound: _Input) -> None:
    try:
        for block in payload:
            inbound.write(block)
        if inbound.open_input:
            inbound.finished.wait()
        inbound.close()
    except (BrokenPipeError, OSError):
        # The jail ended early; what it managed to answer is still read.
        pass
    except Exception as exc:
        # A trace that cannot be encoded: stop the jail and raise it to the caller.
        failure.append(exc)
        _kill(proc)


def _kill(proc: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


def _drive(
    proc: subprocess.Popen,
    payload: Iterable[bytes],
    nonces: list[str],
    limits: Limits,
    name: str,
    channel: _Channel,
    indices: list[int],
) -> _Batch:
    """Feed the jail its traces from a thread, read its answers, and end it."""
    for stream in (proc.stdin, proc.stdout):
        # Bigger pipes mean fewer context switches while megabytes of traces go through.
        with contextlib.suppress(OSError):
            fcntl.fcntl(stream.fileno(), F_SETPIPE_SZ, PIPE_SIZE)
    failure: list[Exception] = []
    inbound = _Input(proc, channel.open_input)
    feeder = threading.Thread(target=_feed, args=(proc, payload, failure, inbound), daemon=True)
    feeder.start()
    started = time.monotonic()
    answers = _Answers(nonces, limits)
    try:
        stop_reason = _read_answers(proc, answers, limits, started, channel, indices, inbound)
    finally:
        inbound.finished.set()
    if stop_reason is not None:
        _kill(proc)
    returncode = _reap(proc)
    feeder.join(timeout=5)
    if failure:
        raise failure[0]
    if not answers.ready:
        raise _start_failure(name, answers.stderr.decode("utf-8", "replace"))
    if stop_reason is None and len(answers.results) < len(nonces):
        stop_reason = _exit_reason(returncode, name, limits, time.monotonic() - started)
    return _Batch(answers.results, stop_reason, answers.fatal)


class _Answers:
    """What the harness has said so far: its results, parsed as complete lines arrive."""

    STDERR_KEPT = 65536

    def __init__(self, nonces: list[str], limits: Limits) -> None:
        self.nonces = nonces
        self.max_line = _max_line(limits)
        # A judge call carries up to MAX_PROMPT_CHARS, escaped; a partial line may be one.
        self.max_partial = max(self.max_line, CALL_LINE_MAX)
        # A scanner per jail: the C scanner keeps a memo between the calls it makes.
        self.scan = json.JSONDecoder().scan_once
        self.results: list[tuple] = []
        self.fatal = False
        self.ready = False
        self.buffer = bytearray()
        self.stderr = bytearray()
        # judge()/llm() calls read but not answered yet: (request, position in the batch).
        self.calls: list[tuple[object, int]] = []
        self.positions = {nonce: i for i, nonce in enumerate(nonces)}
        self.calls_per_trace = limits.calls_per_trace
        # Calls made by the trace being judged (only it may call): (its position, count).
        self.calls_made = (-1, 0)

    def add_stderr(self, data: bytes) -> None:
        if len(self.stderr) < self.STDERR_KEPT:
            self.stderr += data[: self.STDERR_KEPT - len(self.stderr)]

    def add_stdout(self, data: bytes) -> tuple[bool, str | None]:
        """Take bytes of stdout; return whether lines completed and why to stop, if so."""
        self.buffer += data
        end = self.buffer.rfind(b"\n")
        stop_reason = None
        if end >= 0:
            # Every complete line at once: the harness writes results in blocks.
            block = bytes(self.buffer[:end])
            del self.buffer[: end + 1]
            stop_reason = self._take_lines(block)
        if stop_reason is None and len(self.buffer) > self.max_partial:
            stop_reason = TOO_MUCH_OUTPUT
        return end >= 0, stop_reason

    def _take_call(self, line: bytes) -> str | None:
        """Queue the call on `line`; return why to stop the jail if it may not be made."""
        try:
            message, end = self.scan(line.decode(), 0)
        except (ValueError, StopIteration, RecursionError):
            return WROTE_INTO_RESULTS
        if end != len(line) or type(message) is not dict or set(message) != {"c", "n"}:
            return WROTE_INTO_RESULTS
        # Bound to a trace of this batch, like a result row: the nonce is never the eval's.
        position = self.positions.get(message["n"]) if type(message["n"]) is str else None
        if position != len(self.results):
            # Only the trace being judged may call: the harness sends its results first.
            return WROTE_INTO_RESULTS
        made = self.calls_made[1] + 1 if self.calls_made[0] == position else 1
        if made > self.calls_per_trace:
            return too_many_calls(self.calls_per_trace)
        self.calls_made = (position, made)
        self.calls.append((message["c"], position))
        return None

    def _take_lines(self, block: bytes) -> str | None:
        for line in block.split(b"\n"):
            if self.ready and line.startswith(b'{"c":') and len(line) <= CALL_LINE_MAX:
                stop_reason = self._take_call(line)
                if stop_reason is not None:
                    return stop_reason
                continue
            too_long = len(line) > self.max_line or self.fatal
            rows = (
                None
                if too_long
                else _parse(self.scan, line, len(self.results), self.nonces, self.ready)
            )
            if rows is None:
                return TOO_MUCH_OUTPUT if too_long else WROTE_INTO_RESULTS
            if not self.ready:
                self.ready = True
            else:
                self.results.extend(rows)
                self.fatal = line.endswith(b',"fatal":true}')
        return None


def _read_answers(
    proc: subprocess.Popen,
    answers: _Answers,
    limits: Limits,
    started: float,
    channel: _Channel,
    indices: list[int],
    inbound: _Input,
) -> str | None:
    """Read stdout and stderr until both close; return why the jail must stop early, if so.

    Two watchdogs: the whole batch's time, and progress (the next block of results must
    come within a trace's timeout, or the start-up allowance before the first). A judge()
    or llm() call is answered here, in this thread, while the jail waits for it; the
    trace's time starts again from the reply.
    """
    batch_deadline = started + limits.batch_timeout_s + WATCHDOG_GRACE_S
    progress_deadline = started + STARTUP_ALLOWANCE_S
    selector = selectors.DefaultSelector()
    selector.register(proc.stdout, selectors.EVENT_READ, "out")
    selector.register(proc.stderr, selectors.EVENT_READ, "err")
    open_streams = 2
    try:
        while open_streams:
            now = time.monotonic()
            deadline = min(batch_deadline, progress_deadline)
            if now >= deadline:
                _kill(proc)
                return _watchdog_reason(limits, batch=now >= batch_deadline)
            for key, _ in selector.select(deadline - now):
                data = os.read(key.fileobj.fileno(), READ_SIZE)
                if not data:
                    selector.unregister(key.fileobj)
                    open_streams -= 1
                elif key.data == "err":
                    answers.add_stderr(data)
                else:
                    lines_came, stop_reason = answers.add_stdout(data)
                    if stop_reason is None and answers.calls:
                        _answer_calls(answers, channel, indices, inbound)
                    if channel.open_input and len(answers.results) == len(indices):
                        inbound.finished.set()
                    if lines_came:
                        progress_deadline = (
                            time.monotonic() + limits.trace_timeout_s + WATCHDOG_GRACE_S
                        )
                    if stop_reason is not None:
                        _kill(proc)
                        return stop_reason
    finally:
        selector.close()
    return None


def _answer_calls(
    answers: _Answers, channel: _Channel, indices: list[int], inbound: _Input
) -> None:
    calls, answers.calls = answers.calls, []
    for request, position in calls:
        inbound.reply(model_calls.answer(channel.handler, request, indices[position]))


def _watchdog_reason(limits: Limits, *, batch: bool) -> str:
    if batch:
        return f"the batch ran out of time (limit {limits.batch_timeout_s} s per jail)"
    return (
        f"timed out after {limits.trace_timeout_s:g} s "
        "(the eval did not stop when its time ran out and was killed)"
    )


def _reap(proc: subprocess.Popen) -> int:
    """Wait for the jail to end (killing it if it does not) and close its pipes."""
    try:
        returncode = proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        _kill(proc)
        returncode = proc.wait()
    for stream in (proc.stdout, proc.stderr):
        stream.close()
    return returncode


def _start_failure(name: str, stderr: str) -> SandboxUnavailable:
    if name == "nsjail":
        return SandboxUnavailable(jail.explain_start_failure(stderr), permanent=False)
    return SandboxUnavailable(
        f"the local sandbox interpreter did not start: {stderr[-1500:]}", permanent=False
    )


def _parse(
    scan: Callable, line: bytes, index: int, nonces: list[str], ready: bool
) -> list[tuple] | None:
    """Return the results in one line from the harness, or None if it is not one of its.

    Before "ready" only that line is accepted (and gives no results); after it, a block
    {"i": index of its first result, "r": [[passed, reason, error, duration_ms, output,
    nonce], ...]} whose index follows on from the results so far, and whose every row
    carries the nonce sent with the trace it answers.
    """
    expected = len(nonces)
    try:
        text = line.decode()
        # The C scanner on its own: json.loads would also sniff the encoding and match
        # whitespace with a regex around every line. The harness writes neither.
        message, end = scan(text, 0)
    except (ValueError, StopIteration, RecursionError):
        return None
    if end != len(text) or type(message) is not dict:
        return None
    if not ready:
        return [] if message == {"ready": True} else None
    rows = message.get("r")
    if message.get("i") != index or type(rows) is not list or not rows:
        return None
    if index + len(rows) > expected:
        return None
    # An eval's text with NUL or a lone surrogate would fail when the verdicts are stored
    # (and take the batch's other verdicts with it): such characters become U+FFFD.
    clean = b"\\u" in line and _UNSTORABLE_ESCAPE.search(line) is not None
    results = []
    for position, row in enumerate(rows, start=index):
        if type(row) is not list or len(row) != 6 or row[5] != nonces[position]:
            return None
        passed, reason, error, duration_ms, output, _nonce = row
        if not (passed is True or passed is False or passed is None):
            return None
        if type(reason) is not str or type(output) is not str:
            return None
        if error is not None and type(error) is not str:
            return None
        # A time, as the harness writes it: a float, not NaN, not infinite.
        if type(duration_ms) is not float or not 0.0 <= duration_ms < MAX_DURATION_MS:
            return None
        if passed is None and not error:
            # Never a silent pass or a silent nothing.
            error = "the eval returned no verdict"
        if clean:
            reason, output = _storable(reason), _storable(output)
            error = error if error is None else _storable(error)
        results.append((passed, reason, error, duration_ms, output))
    return results


def _storable(text: str) -> str:
    """Return `text` with NUL and lone surrogates replaced by U+FFFD."""
    return model_calls.NOT_TEXT.sub("\ufffd", text)


def _exit_reason(returncode: int, name: str, limits: Limits, elapsed: float) -> str:
    signum = None
    if name == "nsjail" and 128 < returncode <= 128 + 64:
        # nsjail reports a child killed by a signal as 128 + the signal number.
        signum = returncode - 128
    elif returncode < 0:
        signum = -returncode
    if signum is not None:
        if signum == signal.SIGKILL and elapsed >= limits.batch_timeout_s:
            return f"the batch ran out of time (limit {limits.batch_timeout_s} s per jail)"
        template = SIGNAL_MESSAGES.get(signum)
        if template:
            return template.format(
                cpu=limits.cpu_time_s, fsize=limits.max_file_size_mb, memory=limits.memory_mb
            )
        return f"the interpreter was killed by signal {signum}"
    return f"the eval ended the interpreter (exit code {returncode}) while checking this trace"
