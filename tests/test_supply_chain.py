"""Supply chain: every requirement is pinned, and no pin has a known vulnerability.

The audit (bin/audit, pip-audit) asks a vulnerability database over the internet: OSV, or
PyPI's advisory data. The suite sends nothing off the machine unless asked, so it runs the
audit only with IOFOLD_ONLINE_AUDIT=1 (and skips, saying why, where neither database
answers); everything else here runs everywhere.
"""

import datetime
import importlib.machinery
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _audit_module():
    loader = importlib.machinery.SourceFileLoader("bin_audit", str(ROOT / "bin" / "audit"))
    spec = importlib.util.spec_from_loader("bin_audit", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


audit = _audit_module()


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_every_requirement_is_pinned_to_one_version(name):
    loose = [
        line
        for line in (ROOT / name).read_text().splitlines()
        if line.strip()
        and not line.startswith(("#", "-r "))
        and not re.fullmatch(r"[A-Za-z0-9._\[\]-]+==[A-Za-z0-9.+-]+", line.strip())
    ]
    assert loose == []


def test_the_allowlist_is_well_formed_and_reviewed():
    audit.read_allowlist()  # raises on a malformed line or an entry past its review date


def test_allowlist_entries_need_a_reason_and_expire(tmp_path):
    allowlist = tmp_path / "allow"
    allowlist.write_text("# comment\nGHSA-aaaa-bbbb-cccc 2027-01-31 only the unused YAML loader\n")
    today = datetime.date(2027, 1, 1)
    assert audit.read_allowlist(allowlist, today=today) == ["GHSA-aaaa-bbbb-cccc"]
    with pytest.raises(ValueError, match="reviewed by 2027-01-31"):
        audit.read_allowlist(allowlist, today=datetime.date(2027, 2, 1))
    allowlist.write_text("GHSA-aaaa-bbbb-cccc\n")
    with pytest.raises(ValueError, match="expected '<id> <YYYY-MM-DD> <reason>'"):
        audit.read_allowlist(allowlist, today=today)


def test_pinned_requirements_have_no_known_vulnerabilities():
    if os.environ.get("IOFOLD_ONLINE_AUDIT") != "1":
        pytest.skip("the audit asks OSV over the internet: set IOFOLD_ONLINE_AUDIT=1 to run it")
    result = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "audit")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if result.returncode == 3:
        pytest.skip(f"vulnerability database unreachable: {result.stderr.strip()[:500]}")
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_audit_help_prints_the_usage_and_audits_nothing(flag, tmp_path):
    # Were it to audit, pip-audit's requests would meet a closed port on this machine.
    closed = "http://127.0.0.1:9"
    env = {**os.environ, "HTTPS_PROXY": closed, "HTTP_PROXY": closed, "NO_PROXY": ""}
    result = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "audit"), flag],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith("usage: bin/audit [-h] [files ...]")
    assert "allow-list" in result.stdout and "pins audited against" not in result.stdout
    assert result.stderr == ""


def test_audit_refuses_an_unknown_option_before_auditing(tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "bin" / "audit"), "--fix"],
        cwd=tmp_path, env={**os.environ, "HTTPS_PROXY": "http://127.0.0.1:9"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2 and "unrecognized arguments: --fix" in result.stderr
