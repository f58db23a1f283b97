"""Run one eval over a batch of traces: the program started inside the jail.

Standard library only; it runs under the system interpreter with `-I -S -B`, started by a
loader on the command line that reads this module, compiled once by the runner with the
same interpreter, from the head of stdin (sandbox/jail.py: HARNESS_LOADER). Protocol:
after that, stdin carries one JSON header line ({"code", "timeout", "output_chars", "message_chars",
"flush_bytes", "start", "flush_each", "modules", "forbidden_attributes",
"forbidden_prefixes", "restricted"}) and then one frame per trace: a kind byte, the
trace's nonce (8 random bytes), the payload's length (4 bytes, big-endian) and the
payload, either the trace in marshal format ("M", what the runner sends for Python dicts:
several times cheaper to make and read than JSON) or JSON text ("J", for traces the caller
holds as JSON, or values marshal cannot carry). The runner is trusted; only the results
travel the other way, as JSON.

stdout carries {"ready": true} once the interpreter is up, then blocks of results, one
JSON line each: {"i": index of the first, "r": [[passed, reason, error, duration_ms,
output, nonce], ...]}. The nonce (hex) binds each result to the trace it answers: eval
code never sees it, so it cannot make the runner accept a result for another trace. A
block goes out every `flush_bytes`, or after any trace that ends more than 50 ms after the
last write, so the runner is not woken once per trace. A jail that dies loses the
unwritten block, so the runner cannot tell which trace killed it; it then runs the rest of
the batch again with "flush_each", which writes every result as it is made.

The per-trace timeout is a periodic timer set once per batch: each tick checks how long
the current trace has run, which costs nothing per trace (two setitimer calls per trace
cost more than many evals).

Start-up matters (one interpreter per jail), so this imports only built-in modules and the
C halves of signal and json (`_signal`, `_json`): `import signal` pulls in enum, functools
and collections, `import json` pulls in `re`, and together they cost more than starting
the interpreter. An eval that imports json or re pays for them itself.

Eval code runs with restricted builtins (no open, exec, eval, compile, globals, vars ...;
an import that admits only the allow-listed modules; getattr and friends refuse "_" names)
after a check of its syntax tree that repeats the validator's core rules in the jail (no
dunder names, no "_" or frame attributes, no string annotations, no format strings that
read attributes), so neither depends on the runner having validated the code. Both are
skipped only when the header says "restricted": false (tests that prove the jail alone).
"""

import _signal
import _string
import builtins
import marshal
import os
import sys
import time

try:
    import _json
except ImportError:  # pragma: no cover - every CPython build ships it
    _json = None

EVAL_FILENAME = "<eval>"
FLUSH_SECONDS = 0.05
# Frame kinds (the first byte of a frame).
MARSHAL = ord("M")
JSON_TEXT = ord("J")
# The runner's answer to a judge() or llm() call (see sandbox/calls.py).
REPLY = ord("R")
JUDGE_MODULE = "iofold_eval"
# An eval that swallows its timeout gets this long before the jail ends.
GRACE_SECONDS = 0.5
JSON_SPACE = " \t\n\r"
# Bound once, so an eval that patches modules cannot change how results are made.
perf_counter = time.perf_counter
setitimer = _signal.setitimer
ITIMER_REAL = _signal.ITIMER_REAL
os_write = os.write
str_copy = str.__str__
# A class's own name, read past any metaclass property the eval defines.
type_name = type.__dict__["__name__"].__get__
ModuleType = type(sys)
# PyCF_ONLY_AST: compile() returns the syntax tree without importing the ast module.
ONLY_AST = 0x400
# Input is read in blocks this size; the reader is a local of main(), not sys.stdin.
READ_BUFFER = 1 << 20

# The builtins eval code may use. Left out: __import__ (replaced by guarded_import),
# open, exec, eval, compile, globals, locals, vars, breakpoint, input, help, exit,
# quit, memoryview, copyright, credits, license; getattr, hasattr, setattr and delattr
# are replaced by versions that refuse "_" names. Every exception class is added too.
SAFE_BUILTINS = (
    "abs", "aiter", "all", "anext", "any", "ascii", "bin", "bool", "bytearray", "bytes",
    "callable", "chr", "classmethod", "complex", "dict", "dir", "divmod", "enumerate",
    "filter", "float", "format", "frozenset", "hash", "hex", "id", "int", "isinstance",
    "issubclass", "iter", "len", "list", "map", "max", "min", "next", "object", "oct",
    "ord", "pow", "print", "property", "range", "repr", "reversed", "round", "set",
    "slice", "sorted", "staticmethod", "str", "sum", "super", "tuple", "type", "zip",
    "None", "True", "False", "Ellipsis", "NotImplemented",
    # what a class statement calls
    "__build_class__",
)  # fmt: skip
# str.format and format_map read attributes named inside the string ("{0.__class__}").
FORMAT_METHODS = ("format", "format_map")
NAMEDTUPLE_HEAD = "lambda _cls, "
NAMEDTUPLE_BODY = ": _tuple_new(_cls, ("


class _ScanContext:
    # What json.JSONDecoder hands the C scanner, with the stdlib defaults.
    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}
    parse_constant = parse_constant.__getitem__
    memo = {}


if _json is not None:
    _scan = _json.make_scanner(_ScanContext())
    quote = _json.encode_basestring_ascii

    def loads(text):
        text = text.strip(JSON_SPACE)
        try:
            value, end = _scan(text, 0)
        except Exception:
            end = -1
        if end != len(text):
            # Only for bad input, and only for json's own message (line, column).
            import json

            return json.loads(text)
        return value

else:  # pragma: no cover
    import json

    loads = json.loads
    quote = json.encoder.encode_basestring_ascii


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

    def reset(self):
        if self.total:
            self.parts.clear()
            self.kept = self.total = 0

    def flush(self):
        pass

    def isatty(self):
        return False

    def value(self):
        if not self.total:
            return ""
        text = "".join(self.parts)
        if self.total > self.kept:
            text += f"\n[output truncated: {self.total} characters printed, first {self.kept} kept]"
        return text


class Rules:
    """What eval code may use: the allow-listed modules and the attributes it may not read."""

    def __init__(self, modules, forbidden_attributes, forbidden_prefixes):
        self.modules = frozenset(modules)
        self.forbidden = frozenset(forbidden_attributes)
        self.prefixes = ("_", *forbidden_prefixes)

    def bad_attribute(self, name):
        return name in self.forbidden or name.startswith(self.prefixes)


def make_builtins(rules):
    """Return the builtins namespace eval code runs with."""
    real_import = builtins.__import__
    available = vars(builtins)
    namespace = {name: available[name] for name in SAFE_BUILTINS if name in available}
    for name, value in available.items():
        if isinstance(value, type) and issubclass(value, BaseException):
            namespace[name] = value

    def attribute_name(name):
        if not isinstance(name, str):
            raise TypeError(f"attribute name must be a string, not {type(name).__name__}")
        # A plain copy: a str subclass could answer startswith() as it likes.
        name = str_copy(name)
        if rules.bad_attribute(name) or name in FORMAT_METHODS:
            raise AttributeError(f"access to attribute '{name}' is not allowed in eval code")
        return name

    def guarded_getattr(obj, name, *default):
        return getattr(obj, attribute_name(name), *default)

    def guarded_hasattr(obj, name):
        return hasattr(obj, attribute_name(name))

    def guarded_setattr(obj, name, value):
        setattr(obj, attribute_name(name), value)

    def guarded_delattr(obj, name):
        delattr(obj, attribute_name(name))

    # The eval module runs once per trace, and its imports with it: an import already
    # admitted is answered from here, as fast as the builtin import.
    admitted = {}

    def guarded_import(name, globals=None, locals=None, fromlist=(), level=0):
        if type(name) is str and not level and (fromlist is None or type(fromlist) is tuple):
            module = admitted.get((name, fromlist))
            if module is not None:
                return module
        if not isinstance(name, str) or level:
            raise ImportError("relative imports are not allowed in eval code")
        key = name = str_copy(name)
        parts = name.split(".")
        if parts[0] not in rules.modules or any(p.startswith("_") for p in parts):
            raise ImportError(f"import of '{name}' is not allowed in eval code")
        items = tuple(str_copy(item) for item in fromlist or ())
        for item in items:
            if item == "*":
                raise ImportError("'from ... import *' is not allowed in eval code")
            attribute_name(item)
        module = real_import(name, None, None, items, 0)
        for item in items:
            # typing.sys, json.codecs ...: a module outside the allow-list is still refused.
            value = getattr(module, item, None)
            if type(value) is ModuleType and value.__name__.split(".")[0] not in rules.modules:
                raise ImportError(f"import of '{value.__name__}' is not allowed in eval code")
        if fromlist is None or type(fromlist) is tuple:
            admitted[(key, fromlist)] = module
        return module

    namespace["getattr"] = guarded_getattr
    namespace["hasattr"] = guarded_hasattr
    namespace["setattr"] = guarded_setattr
    namespace["delattr"] = guarded_delattr
    namespace["__import__"] = guarded_import
    return namespace


def unsafe_format(template):
    """Return True when a format string reads an attribute or an item ("{0.x}", "{0[x]}")."""
    try:
        for _literal, field, spec, _conversion in _string.formatter_parser(template):
            if field and ("." in field or "[" in field):
                return True
            if spec and "{" in spec and unsafe_format(spec):
                return True
    except ValueError:
        return True
    return False


def _has_string(node):
    stack = [node]
    while stack:
        node = stack.pop()
        if type(node).__name__ == "Constant" and isinstance(node.value, str):
            return True
        stack.extend(_children(node))
    return False


def _children(node):
    for field in node._fields:
        value = getattr(node, field, None)
        if type(value) is list:
            for item in value:
                if hasattr(item, "_fields"):
                    yield item
        elif hasattr(value, "_fields"):
            yield value


def namedtuple_source(source):
    """Return True for the one string collections.namedtuple compiles: its __new__.

    The template is "lambda _cls, a, b: _tuple_new(_cls, (a, b))" (one field: "a,"),
    with field names namedtuple has checked are identifiers: nothing else can run.
    """
    if type(source) is bytes:
        source = source.decode("utf-8", "replace")
    if type(source) is not str or not source.startswith(NAMEDTUPLE_HEAD):
        return False
    args, sep, rest = source[len(NAMEDTUPLE_HEAD) :].partition(NAMEDTUPLE_BODY)
    names = args[:-1].split(", ") if args.endswith(",") else args.split(", ")
    return bool(sep) and rest == args + "))" and all(n.isidentifier() for n in names)


def audit_hook(state):
    """Return an audit hook that refuses compiling strings once eval code may run.

    typing.ForwardRef, get_type_hints and whatever else an allowed module may use to
    turn a string into code all go through compile(); only modules loaded from files
    and namedtuple's own template get through. It holds from the first trace to the end
    of the jail, not only while eval_fn runs: eval code also runs after its trace's
    window closes (an exception's __str__ read for the error message, a __repr__ given to
    SystemExit, a __del__ when the cyclic collector frees the eval's namespace).
    """

    def audit(event, args):
        if event != "compile" or not state["armed"]:
            return
        source, filename = args
        if type(filename) is str and filename.startswith("/"):
            return
        if namedtuple_source(source):
            return
        raise RuntimeError("eval code may not evaluate strings as code")

    return audit


def check_tree(tree, rules):
    """Return why the eval's syntax tree may not run here, or None.

    The core of sandbox/validate.py, repeated in the jail so that it holds however the
    runner was called; the validator gives the user the full, line-numbered list.
    """
    stack = [tree]
    while stack:
        node = stack.pop()
        problem = node_problem(node, type(node).__name__, rules)
        if problem is not None:
            line = getattr(node, "lineno", 1)
            return f"the eval code uses {problem} (line {line}), which is not allowed"
        stack.extend(_children(node))
    return None


def node_problem(node, kind, rules):
    """Return what one syntax node uses that eval code may not, or None."""
    if kind == "Attribute":
        return attribute_problem(node, rules)
    if kind == "Name" and node.id.startswith("__"):
        return f"the name '{node.id}'"
    if kind in ("Global", "Nonlocal"):
        return next((f"the name '{n}'" for n in node.names if n.startswith("__")), None)
    if kind == "ImportFrom":
        names = [a.name for a in node.names]
        if node.level or "*" in names:
            return "a relative or '*' import"
        return next((f"importing '{n}'" for n in names if rules.bad_attribute(n)), None)
    if kind == "MatchClass":
        return next((f"matching on '{a}'" for a in node.kwd_attrs if rules.bad_attribute(a)), None)
    if kind == "arg" or kind == "AnnAssign":
        annotation = node.annotation
    elif kind in ("FunctionDef", "AsyncFunctionDef"):
        annotation = node.returns
    else:
        return None
    if annotation is not None and _has_string(annotation):
        return "a string annotation"
    return None


def attribute_problem(node, rules):
    """Return why reading ``node.attr`` is refused: a forbidden name, or a format method
    on anything but a string literal that reads no attributes."""
    if rules.bad_attribute(node.attr):
        return f"attribute '{node.attr}'"
    if node.attr in FORMAT_METHODS:
        value = node.value
        literal = type(value).__name__ == "Constant" and isinstance(value.value, str)
        if not literal or unsafe_format(value.value):
            return f"'.{node.attr}' on anything but a plain string literal"
    return None


def clip(text, limit):
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


def eval_line(tb):
    """Return the last line number inside the eval code in a traceback, if any."""
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == EVAL_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
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
    """Return (passed, reason, error) for what eval_fn returned.

    Types are checked by what the objects are, not by what they say they are: isinstance()
    believes a __class__ property, so an object claiming to be a bool was taken for one
    and its __bool__ ran after the trace's window, where nothing times it.
    """
    if not issubclass(type(value), tuple) or len(value) != 2:
        shown = repr(value)
        if len(shown) > 200:
            shown = shown[:200] + "..."
        return (
            None,
            "",
            f"eval_fn must return a tuple (bool, str); it returned {type(value).__name__} {shown}",
        )
    passed, reason = value
    if type(passed) is not bool:
        return (
            None,
            "",
            f"eval_fn must return (bool, str); the first item is {type(passed).__name__}, not bool",
        )
    if not issubclass(type(reason), str):
        return (
            None,
            "",
            f"eval_fn must return (bool, str); the second item is {type(reason).__name__}, not str",
        )
    # A plain str: a subclass could run eval code (len, slicing) after the timer is off.
    return passed, str_copy(reason), None


def result_row(nonce, passed, reason, error, duration_ms, output):
    """Return one result as a JSON array (ASCII), without the cost of json.dumps."""
    verdict = "null" if passed is None else ("true" if passed else "false")
    return (
        f"[{verdict},{quote(reason)},{'null' if error is None else quote(error)},"
        f'{duration_ms:.4f},{quote(output)},"{nonce}"]'
    )


def block_line(index, rows, fatal=False):
    """Return the results of traces `index`, `index + 1`, ... as one JSON line."""
    tail = ',"fatal":true}' if fatal else "}"
    return f'{{"i":{index},"r":[{",".join(rows)}]{tail}\n'


class Inbox:
    """The frames the runner sends: traces, and replies to the eval's model calls.

    Replies come on the same input as the traces the runner has queued ahead, so trace
    frames read while waiting for a reply are kept here until their turn.
    """

    def __init__(self, read):
        self.read = read
        self.waiting = []

    def frame(self):
        head = self.read(13)
        if len(head) < 13:
            return None
        size = int.from_bytes(head[9:], "big")
        return head[0], head[1:9].hex(), self.read(size)

    def traces(self):
        """Yield (kind, nonce, payload) for each trace frame until the input ends."""
        while True:
            frame = self.waiting.pop(0) if self.waiting else self.frame()
            if frame is None:
                return
            if frame[0] != REPLY:  # a reply nobody waits for is dropped
                yield frame

    def reply(self):
        """Return the payload of the next reply frame, or None if the input ends first."""
        while True:
            frame = self.frame()
            if frame is None:
                return None
            if frame[0] == REPLY:
                return frame[2]
            self.waiting.append(frame)


class JudgeError(Exception):
    """A judge() or llm() call the runner refused or could not answer."""


def json_value(value):
    """Encode a string or a list of strings as JSON (the only values a call carries)."""
    if type(value) is list:
        return "[" + ",".join(quote(item) for item in value) + "]"
    return quote(value)


def as_text(value, name):
    if isinstance(value, str):
        return str_copy(value)
    raise TypeError(f"{name} must be a string, not {type(value).__name__}")


def make_judge_module(out_fd, inbox, state, writer):
    """Return the iofold_eval module: judge() and llm(), answered by the runner.

    A call is one line on the result stream carrying the current trace's nonce (so the
    runner can count it against that trace), then a wait for the reply frame. The
    trace's clock stops while the runner works: the per-call timeout is the runner's.
    """

    def ask(fields):
        line = (
            '{"c":{'
            + ",".join(f"{quote(k)}:{json_value(v)}" for k, v in fields)
            + '},"n":"'
            + state["nonce"]
            + '"}\n'
        )
        writer.flush()
        started = state["started"]
        state["started"] = None
        asked = perf_counter()
        try:
            write_all(out_fd, line.encode("ascii"))
            payload = inbox.reply()
        finally:
            if started is not None:
                state["started"] = started + (perf_counter() - asked)
        if payload is None:
            raise JudgeError("the sandbox closed the judge channel")
        answer = loads(payload.decode("utf-8"))
        if "error" in answer:
            raise JudgeError(answer["error"])
        return answer["text"]

    def judge(question, *, context="", choices=("yes", "no")):
        """Ask the workspace's judge model `question` about `context`; return one of `choices`."""
        if not isinstance(choices, (tuple, list)):
            raise TypeError("choices must be a tuple of strings")
        fields = (
            ("kind", "judge"),
            ("question", as_text(question, "question")),
            ("context", as_text(context, "context")),
            ("choices", [as_text(c, "a choice") for c in choices]),
        )
        return ask(fields)

    def llm(prompt):
        """Return the workspace's model's answer to `prompt` (temperature 0)."""
        return ask((("kind", "llm"), ("prompt", as_text(prompt, "prompt"))))

    module = ModuleType(JUDGE_MODULE)
    module.judge = judge
    module.llm = llm
    module.JudgeError = JudgeError
    return module


def decode(kind, payload):
    if kind == MARSHAL:
        return marshal.loads(payload)  # noqa: S302 - written by the runner, not the eval
    if kind == JSON_TEXT:
        return loads(payload.decode("utf-8"))
    raise ValueError(f"unknown frame kind {kind}")


def write_all(fd, data):
    view = memoryview(data)
    while view:
        view = view[os_write(fd, view) :]


class BatchSettings:
    """The header line: the eval's code, its limits and how to write results."""

    def __init__(self, header):
        self.code = header["code"]
        self.timeout = float(header["timeout"])
        self.output_chars = int(header["output_chars"])
        self.message_chars = int(header["message_chars"])
        self.flush_bytes = int(header.get("flush_bytes", 32768))
        self.start = int(header.get("start", 0))
        self.flush_each = bool(header.get("flush_each", False))
        self.restricted = bool(header.get("restricted", True))
        self.rules = Rules(
            header.get("modules", ()),
            header.get("forbidden_attributes", ()),
            tuple(header.get("forbidden_prefixes", ())),
        )


class ResultWriter:
    """Gather result rows and write them to the runner in blocks (see the module docstring)."""

    def __init__(self, fd, flush_bytes, flush_each):
        self.fd = fd
        self.flush_bytes = flush_bytes
        self.flush_each = flush_each
        self.pending = []
        self.first = 0
        self.buffered = 0
        self.last_flush = perf_counter()

    def add(self, index, row, now):
        if not self.pending:
            self.first = index
        self.pending.append(row)
        self.buffered += len(row)
        if (
            self.flush_each
            or self.buffered >= self.flush_bytes
            or now - self.last_flush >= FLUSH_SECONDS
        ):
            self.flush()
            self.buffered = 0
            self.last_flush = now

    def flush(self):
        if self.pending:
            data = block_line(self.first, self.pending).encode("ascii")
            self.pending.clear()
            write_all(self.fd, data)

    def write_fatal(self, index, row):
        """Write the results so far, then this one marked as the last the jail gives."""
        self.flush()
        write_all(self.fd, block_line(index, [row], fatal=True).encode("ascii"))


def take_streams():
    """Return the result fd and the input reader; point fds 0, 1 and 2 at /dev/null.

    The traces still to come are read through a reader only main() holds, not sys.stdin,
    which reads /dev/null like fds 1 and 2 (the eval must not be able to write into the
    result stream or the runner's stderr either).
    """
    out_fd = os.dup(1)
    infile = open(os.dup(0), "rb", buffering=READ_BUFFER)  # noqa: SIM115
    devnull = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.close(devnull)
    return out_fd, infile


def load_code(code_text, rules, restricted):
    """Return (the compiled eval code, None), or (None, why it may not run)."""
    try:
        tree = compile(code_text, EVAL_FILENAME, "exec", ONLY_AST)
        load_error = check_tree(tree, rules) if restricted else None
        code = compile(tree, EVAL_FILENAME, "exec") if load_error is None else None
    except SyntaxError as exc:
        return None, f"the eval code does not compile: {exc.msg} (line {exc.lineno})"
    except (ValueError, MemoryError, RecursionError) as exc:
        return None, f"the eval code cannot be parsed: {type(exc).__name__}"
    return code, load_error


def make_ticker(state, timeout, writer):
    """Return the SIGALRM handler that enforces the per-trace timeout.

    It raises TraceTimeout in the eval once its trace has run `timeout` seconds; an eval
    that swallows it gets GRACE_SECONDS, then the jail ends with a fatal result.
    """

    def on_tick(signum, frame):
        started = state["started"]
        if started is None:
            return
        now = perf_counter()
        fired = state["fired"]
        if fired is None:
            if now - started >= timeout:
                state["fired"] = now
                raise TraceTimeout()
            return
        if now - fired < GRACE_SECONDS:
            return
        # The eval swallowed its timeout. The results made before this trace go out
        # first, so none is run twice, then this one, marked fatal, and the jail ends.
        row = result_row(
            state["nonce"],
            None,
            "",
            f"timed out after {timeout:g} s (and the eval kept running after the timeout)",
            (now - started) * 1000,
            "",
        )
        writer.write_fatal(state["index"], row)
        os._exit(3)

    return on_tick


def judge(code, trace, eval_builtins, state, batch, output, source_lines, started):
    """Run the eval on one trace; return (passed, reason, error, when it started).

    ``output`` is (the harness's stdout, its stderr, what the eval prints into).
    """
    passed, reason, error = None, "", None
    real_stdout, real_stderr, captured = output
    sys.stdout = sys.stderr = captured
    try:
        try:
            state["fired"] = None
            state["started"] = started = perf_counter()
            try:
                # A fresh namespace per trace: nothing one trace leaves in the eval's
                # globals can change the verdict on the next.
                namespace = {"__name__": "eval_module", "__builtins__": eval_builtins}
                exec(code, namespace)  # noqa: S102 - this is the sandbox
                fn = namespace.get("eval_fn")
                if not callable(fn):
                    error = "the eval code does not define eval_fn(trace)"
                else:
                    passed, reason, error = check_verdict(fn(trace))
            except BaseException as exc:
                # Still inside the trace's window: reading the error runs eval code too
                # (an exception's __str__, a SystemExit's __repr__); the timer holds it.
                passed, reason = None, ""
                try:
                    error = describe_failure(exc, batch, source_lines)
                except BaseException:
                    error = f"the eval raised {type_name(type(exc))}"
        finally:
            state["started"] = None
    except TraceTimeout:
        # The timer fired in the harness's own lines around the eval's.
        passed, reason, error = None, "", f"timed out after {batch.timeout:g} s"
    finally:
        sys.stdout, sys.stderr = real_stdout, real_stderr
    if state["fired"] is not None:
        # It caught the timeout and still answered, or its error could not be read in
        # time: too late to count either way.
        passed, reason, error = None, "", f"timed out after {batch.timeout:g} s"
    return passed, reason, error, started


def describe_failure(exc, batch, source_lines):
    """Return the error for a trace whose eval raised `exc` (eval code may run here)."""
    if issubclass(type(exc), TraceTimeout):
        return f"timed out after {batch.timeout:g} s"
    if issubclass(type(exc), SystemExit):
        return f"the eval called exit ({exc.code!r}); return (bool, str) instead"
    return describe_exception(exc, source_lines)


def encode_result(nonce, passed, reason, error, duration_ms, captured, message_chars):
    """Return the result row, or an error row when the result cannot be encoded."""
    try:
        return result_row(
            nonce,
            passed,
            clip(reason, message_chars),
            clip(error, message_chars),
            duration_ms,
            captured.value(),
        )
    except Exception as exc:
        return result_row(
            nonce,
            None,
            "",
            f"the result could not be encoded: {type(exc).__name__}",
            duration_ms,
            "",
        )


def main():
    out_fd, infile = take_streams()
    os_write(out_fd, b'{"ready": true}\n')

    batch = BatchSettings(loads(infile.readline().decode()))
    source_lines = batch.code.splitlines()
    code, load_error = load_code(batch.code, batch.rules, batch.restricted)
    eval_builtins = make_builtins(batch.rules) if batch.restricted else builtins.__dict__

    index = batch.start
    writer = ResultWriter(out_fd, batch.flush_bytes, batch.flush_each)
    # "started" is set only while eval code runs: a tick elsewhere does nothing.
    # "armed": eval code may have run; from then on the audit hook refuses compiling strings.
    state = {"started": None, "fired": None, "index": index, "nonce": "", "armed": False}
    if batch.restricted:
        # Cannot be removed once added, by the eval either.
        sys.addaudithook(audit_hook(state))
    _signal.signal(_signal.SIGALRM, make_ticker(state, batch.timeout, writer))
    tick = min(max(batch.timeout / 10, 0.01), 0.25)
    setitimer(ITIMER_REAL, tick, tick)
    captured = CappedOutput(batch.output_chars)
    output = (sys.stdout, sys.stderr, captured)
    inbox = Inbox(infile.read)
    sys.modules[JUDGE_MODULE] = make_judge_module(out_fd, inbox, state, writer)

    # The harness compiles nothing after this: only eval code (and the stdlib it imports).
    state["armed"] = True
    for kind, nonce, payload in inbox.traces():
        state["nonce"] = nonce
        state["index"] = index
        captured.reset()
        passed, reason, error = None, "", load_error
        started = perf_counter()
        try:
            trace = decode(kind, payload)
        except Exception as exc:
            error = f"the trace is not valid JSON: {exc}"
        else:
            if code is not None:
                passed, reason, error, started = judge(
                    code, trace, eval_builtins, state, batch, output, source_lines, started
                )
        now = perf_counter()
        row = encode_result(
            nonce, passed, reason, error, (now - started) * 1000, captured, batch.message_chars
        )
        writer.add(index, row, now)
        index += 1
    setitimer(ITIMER_REAL, 0)
    writer.flush()


if __name__ == "__main__":
    main()
