"""Fail closed: the local backend is opt-in and says so; a missing nsjail refuses to run."""

import ast
from pathlib import Path

import pytest

import sandbox
from sandbox import BackendRefused, SandboxUnavailable, run

CODE = "def eval_fn(trace):\n    return trace['ok'], 'checked'\n"
SANDBOX_DIR = Path(sandbox.__file__).parent


def test_sandbox_imports_nothing_from_django():
    for path in SANDBOX_DIR.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            assert not any(n.split(".")[0] in {"django", "rest_framework"} for n in names), path


def test_local_backend_is_refused_unless_allowed():
    sandbox.configure(backend="local")
    with pytest.raises(BackendRefused) as excinfo:
        run(CODE, [{"ok": True}])
    assert excinfo.value.permanent is True
    assert "without isolation" in str(excinfo.value)


def test_local_backend_marks_every_result_insecure():
    sandbox.configure(backend="local", allow_local=True)
    results = run(CODE, [{"ok": True}, {"ok": False}])
    assert [r.passed for r in results] == [True, False]
    assert all("insecure local backend" in r.warning for r in results)


def test_local_backend_still_reports_per_trace_errors():
    sandbox.configure(backend="local", allow_local=True)
    results = run("def eval_fn(trace):\n    return 1 / 0\n", [{}])
    assert results[0].error.startswith("ZeroDivisionError") and "line 2" in results[0].error
    assert "insecure" in results[0].warning


def test_missing_nsjail_binary_refuses_with_what_is_missing(tmp_path):
    missing = tmp_path / "no-such-nsjail"
    sandbox.configure(nsjail_path=str(missing))
    with pytest.raises(SandboxUnavailable) as excinfo:
        run(CODE, [{"ok": True}])
    assert f"no binary at {missing}" in str(excinfo.value)
    assert excinfo.value.permanent is True


def test_nsjail_that_cannot_start_refuses_with_its_reason(tmp_path):
    broken = tmp_path / "nsjail"
    broken.write_text(
        "#!/bin/sh\n"
        "echo 'error while loading shared libraries: libnl-route-3.so.200' >&2\n"
        "exit 127\n"
    )
    broken.chmod(0o755)
    sandbox.configure(nsjail_path=str(broken))
    with pytest.raises(SandboxUnavailable) as excinfo:
        run(CODE, [{"ok": True}])
    assert "libnl-route-3-200 libprotobuf32" in str(excinfo.value)


def test_check_passes_on_this_machine():
    sandbox.check()


def test_unknown_backend_is_a_configuration_error():
    with pytest.raises(ValueError):
        sandbox.configure(backend="docker")
