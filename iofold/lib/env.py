"""Strict parsers for settings read from the environment."""

import os
import sys
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured


class BadSetting(ImproperlyConfigured):
    """A variable of the environment is missing or malformed: iofold cannot start."""


def report_bad_settings_in_one_line() -> None:
    """Make a BadSetting that stops the process print one line naming it, not a traceback.

    Installed by the settings module, so manage.py, gunicorn (which imports the app in its
    master) and Celery all stop the same way; any other error keeps its traceback.
    """
    previous = sys.excepthook
    if getattr(previous, "reports_bad_settings", False):
        return

    def hook(kind, exc, tb):
        if issubclass(kind, BadSetting):
            sys.stderr.write(f"iofold cannot start: {exc}\n")
        else:
            previous(kind, exc, tb)

    hook.reports_bad_settings = True
    sys.excepthook = hook


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def env_str(name: str, default: str = "") -> str:
    """Return the variable's value, or the default when it is unset or empty."""
    value = os.environ.get(name, "")
    return value if value != "" else default


def env_bool(name: str, default: bool) -> bool:
    """Return a boolean, rejecting anything but the usual true/false spellings."""
    raw = os.environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise BadSetting(f"{name} must be true or false, not {raw!r}")


def env_int(name: str, default: int) -> int:
    """Return an integer, failing loudly on anything else."""
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise BadSetting(f"{name} must be an integer, not {raw!r}") from None


def env_float(name: str, default: float) -> float:
    """Return a float, failing loudly on anything else."""
    raw = os.environ.get(name, "").strip()
    if raw == "":
        return default
    try:
        return float(raw)
    except ValueError:
        raise BadSetting(f"{name} must be a number, not {raw!r}") from None


def env_list(name: str, default: list[str] | None = None) -> list[str]:
    """Return a comma-separated list with blanks removed."""
    raw = os.environ.get(name, "")
    if raw.strip() == "":
        return list(default or [])
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_secret(name: str, default: str = "") -> str:
    """Return a secret from NAME, or from the file named by NAME_FILE (Docker secrets)."""
    path = os.environ.get(f"{name}_FILE", "")
    if path:
        try:
            return Path(path).read_text().strip()
        except OSError as exc:
            raise BadSetting(f"{name}_FILE points at an unreadable file") from exc
    return env_str(name, default)


def local_secret(path: Path, make) -> str:
    """Return the secret kept in ``path``, creating it with ``make()`` the first time."""
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = make()
    # Owner-only: this file holds development secrets.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(value)
    return value
