"""Settings come from the environment through strict parsers, and production refuses defaults."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from iofold.lib import env

BASE_DIR = Path(settings.BASE_DIR)


@pytest.mark.parametrize(("raw", "expected"), [("true", True), ("FALSE", False), ("1", True)])
def test_env_bool_accepts_true_and_false(monkeypatch, raw, expected):
    monkeypatch.setenv("X_FLAG", raw)
    assert env.env_bool("X_FLAG", not expected) is expected


@pytest.mark.parametrize("raw", ["maybe", "ture", "2", "enabled"])
def test_env_bool_rejects_anything_else(monkeypatch, raw):
    monkeypatch.setenv("X_FLAG", raw)
    with pytest.raises(ImproperlyConfigured, match="X_FLAG"):
        env.env_bool("X_FLAG", True)


def test_unset_and_empty_variables_take_the_default(monkeypatch):
    monkeypatch.delenv("X_UNSET", raising=False)
    monkeypatch.setenv("X_EMPTY", "")
    assert env.env_bool("X_UNSET", True) is True
    assert env.env_int("X_EMPTY", 7) == 7
    assert env.env_str("X_EMPTY", "d") == "d"
    assert env.env_list("X_UNSET", ["a"]) == ["a"]


@pytest.mark.parametrize(("parser", "raw"), [(env.env_int, "1.5"), (env.env_float, "fast")])
def test_numbers_are_strict(monkeypatch, parser, raw):
    monkeypatch.setenv("X_NUMBER", raw)
    with pytest.raises(ImproperlyConfigured, match="X_NUMBER"):
        parser("X_NUMBER", 1)


def test_env_list_drops_blanks(monkeypatch):
    monkeypatch.setenv("X_LIST", " a.example, ,b.example,")
    assert env.env_list("X_LIST") == ["a.example", "b.example"]


def test_env_secret_reads_the_file_variable(monkeypatch, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("from-a-file\n")
    monkeypatch.setenv("X_SECRET", "from-env")
    monkeypatch.setenv("X_SECRET_FILE", str(secret))
    assert env.env_secret("X_SECRET") == "from-a-file"
    monkeypatch.setenv("X_SECRET_FILE", str(tmp_path / "missing"))
    with pytest.raises(ImproperlyConfigured, match="X_SECRET_FILE"):
        env.env_secret("X_SECRET")


def _run(code_or_args, extra_env, tmp_path):
    """Run Python in a clean environment (only what is given), from the project root."""
    clean = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "IOFOLD_VAR_DIR": str(tmp_path / "var"),
        "DJANGO_SETTINGS_MODULE": "iofold.settings",
        **extra_env,
    }
    return subprocess.run(
        [sys.executable, *code_or_args],
        cwd=BASE_DIR,
        env=clean,
        capture_output=True,
        text=True,
        timeout=120,
    )


SETUP = ["-c", "import django; django.setup(); print('ready')"]


def _production_env():
    return {
        "DEBUG": "false",
        "SECRET_KEY": "k" * 20 + "production-secret-that-is-long-and-random-0123456789",
        "IOFOLD_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "ALLOWED_HOSTS": "iofold.example.com",
    }


def test_development_defaults_need_no_environment(tmp_path):
    result = _run(SETUP, {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "var" / "secret_key").exists()


@pytest.mark.parametrize("missing", ["SECRET_KEY", "IOFOLD_ENCRYPTION_KEYS"])
def test_production_without_a_secret_fails_loudly(tmp_path, missing):
    production = _production_env()
    del production[missing]
    result = _run(SETUP, production, tmp_path)
    _one_line_naming(result, missing)
    # No development secret was quietly generated instead.
    assert not (tmp_path / "var" / "secret_key").exists()


def test_a_misspelt_boolean_stops_startup(tmp_path):
    result = _run(SETUP, {"DEBUG": "nope"}, tmp_path)
    assert result.returncode != 0
    assert "DEBUG must be true or false" in result.stderr


def test_a_misspelt_api_rate_stops_startup(tmp_path):
    result = _run(SETUP, {"IOFOLD_API_RATE_PER_TOKEN": "600 a minute"}, tmp_path)
    assert result.returncode != 0
    assert "IOFOLD_API_RATE_PER_TOKEN must look like 600/minute" in result.stderr


DEPLOY_CHECK = ["manage.py", "check", "--deploy", "--fail-level", "WARNING"]


def test_production_settings_pass_check_deploy(tmp_path):
    result = _run(DEPLOY_CHECK, {**_production_env(), "EMAIL_HOST": "smtp.internal"}, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNINGS" not in result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_refuses_mandatory_verification_without_smtp(tmp_path):
    # Emails would be files on the server: a new user could never confirm their address.
    result = _run(DEPLOY_CHECK, _production_env(), tmp_path)
    assert result.returncode != 0
    assert "accounts.E001" in result.stderr
    assert "EMAIL_HOST" in result.stderr
    for verification in ("optional", "none"):
        relaxed = {**_production_env(), "ACCOUNT_EMAIL_VERIFICATION": verification}
        result = _run(DEPLOY_CHECK, relaxed, tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr


def test_production_migrates_sqlite_into_a_var_dir_not_made_yet(tmp_path):
    var_dir = tmp_path / "not" / "made" / "yet"
    result = _run(
        ["manage.py", "migrate", "-v0"],
        {**_production_env(), "IOFOLD_VAR_DIR": str(var_dir)},
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert (var_dir / "db.sqlite3").exists()


def test_a_var_dir_that_cannot_be_made_stops_with_one_line(tmp_path):
    (tmp_path / "a-file").write_text("")
    production = {**_production_env(), "IOFOLD_VAR_DIR": str(tmp_path / "a-file" / "var")}
    _one_line_naming(_run(["manage.py", "migrate", "-v0"], production, tmp_path), "IOFOLD_VAR_DIR")


def test_the_embedded_default_migrates_without_warnings(tmp_path):
    # What a newcomer's first bin/run prints: SQLite ignores the covering indexes' INCLUDE
    # columns, which is expected there, not something to warn about on every start.
    result = _run(["manage.py", "migrate", "-v0"], {}, tmp_path)
    assert result.returncode == 0, result.stderr
    assert "WARNINGS" not in result.stdout + result.stderr


def test_database_and_broker_urls_switch_backends(tmp_path):
    code = (
        "import django; django.setup(); from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL)"
    )
    result = _run(
        ["-c", code],
        {
            "DATABASE_URL": "postgres://u:p@db.internal:5432/iofold",
            "CELERY_BROKER_URL": "redis://cache.internal:6379/0",
        },
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "django.db.backends.postgresql",
        "redis://cache.internal:6379/0",
    ]


def _variables_read_by_settings() -> set[str]:
    import ast

    tree = ast.parse((BASE_DIR / "iofold" / "settings.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and (node.func.id.startswith("env_") or node.func.id == "_dev_secret")
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def test_env_example_lists_every_variable_with_a_comment():
    lines = (BASE_DIR / ".env.example").read_text().splitlines()
    documented = {}
    for index, line in enumerate(lines):
        if "=" in line and not line.startswith("#"):
            documented[line.split("=", 1)[0]] = lines[index - 1].startswith("#")
    read = _variables_read_by_settings()
    assert len(read) > 20
    assert sorted(read - documented.keys()) == []
    assert sorted(name for name in read if not documented[name]) == []


def _variables_read_anywhere() -> set[str]:
    """Names read from the environment by iofold's code (settings, gunicorn, metrics...)."""
    import re

    read = set(_variables_read_by_settings())
    pattern = re.compile(
        r"""(?:environ(?:\.get)?[\[(]|getenv\(|env_\w*\()\s*["']([A-Z][A-Z0-9_]+)["']"""
    )
    for app in ("iofold", "accounts", "workspaces", "integrations", "traces", "evals", "sandbox"):
        for path in (BASE_DIR / app).rglob("*.py"):
            read.update(pattern.findall(path.read_text()))
    return read


# Read by the standalone judge script iofold exports (docs/judges.md), not by iofold.
EXPORTED_SCRIPT_VARIABLES = {"IOFOLD_JUDGE_BASE_URL", "IOFOLD_JUDGE_MODEL"}


def _readme_configuration_variables() -> set[str]:
    import re

    section = (BASE_DIR / "README.md").read_text().split("## Configuration", 1)[1]
    section = section.split("\n## ", 1)[0]
    return {
        name
        for line in section.splitlines()
        if line.startswith("| `")
        for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])
    }


def test_readme_configuration_table_is_what_iofold_reads():
    """Every variable iofold reads has a row in README's table, and each row is read."""
    table = _readme_configuration_variables()
    assert sorted(_variables_read_anywhere() - table - EXPORTED_SCRIPT_VARIABLES) == []
    assert sorted(table - _variables_read_anywhere()) == []


def test_env_example_names_only_variables_something_reads():
    compose = (BASE_DIR / "compose.yaml").read_text()
    names = {
        line.split("=", 1)[0]
        for line in (BASE_DIR / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    }
    unread = {name for name in names - _variables_read_anywhere() if f"${{{name}" not in compose}
    assert sorted(unread) == []


def _one_line_naming(result, variable):
    """The process stopped with one line on stderr naming the variable: no traceback."""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    assert len(lines) == 1, result.stderr
    assert variable in lines[0]
    return lines[0]


BAD_PRODUCTION_SETTINGS = [
    ("SECRET_KEY", None),
    ("IOFOLD_ENCRYPTION_KEYS", None),
    ("IOFOLD_ENCRYPTION_KEYS", "not-a-fernet-key"),
    ("ALLOWED_HOSTS", None),
    ("DATABASE_URL", "postgress://u@db.internal/iofold"),
    ("DATABASE_URL", "db.internal:5432"),
    ("CELERY_BROKER_URL", "reddis://cache.internal:6379/0"),
    ("EMAIL_PORT", "five-eight-seven"),
    ("DATABASE_CONN_MAX_AGE", "1.5"),
    ("SECURE_SSL_REDIRECT", "sometimes"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_PRODUCTION_SETTINGS)
def test_a_bad_production_setting_stops_every_process_with_one_line(tmp_path, variable, value):
    production = {**_production_env(), "EMAIL_HOST": "smtp.internal"}
    if value is None:
        production.pop(variable, None)
    else:
        production[variable] = value
    # manage.py (migrate, check...), the web server's WSGI module and the Celery app.
    for command in (
        ["manage.py", "check"],
        ["-c", "import iofold.wsgi"],
        ["-m", "celery", "-A", "iofold", "report"],
    ):
        _one_line_naming(_run(command, production, tmp_path), variable)
