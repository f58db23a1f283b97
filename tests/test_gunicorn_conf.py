"""The image's web server configuration (iofold/gunicorn_conf.py)."""

import importlib
import os

import pytest

from iofold import gunicorn_conf


@pytest.fixture
def conf(monkeypatch):
    def load(cpus: int, **env):
        for name in ("WEB_CONCURRENCY", "WEB_THREADS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(cpus)), raising=False)
        return importlib.reload(gunicorn_conf)

    yield load
    monkeypatch.undo()
    importlib.reload(gunicorn_conf)


def test_workers_follow_the_cpus_and_the_environment_overrides_them(conf):
    assert (conf(2).workers, conf(2).threads) == (5, 4)
    assert conf(4).workers == 9
    settings = conf(2, WEB_CONCURRENCY="3", WEB_THREADS="2")
    assert (settings.workers, settings.threads) == (3, 2)
    assert settings.worker_class == "gthread"
