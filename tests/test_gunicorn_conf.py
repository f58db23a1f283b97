"""The image's web server configuration (iofold/gunicorn_conf.py), run with real gunicorn."""

import importlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from iofold import gunicorn_conf

BASE_DIR = Path(__file__).resolve().parent.parent

# A WSGI app for the server test: /slow holds its thread for a while, / answers at once.
APP = """
import time

def application(environ, start_response):
    if environ["PATH_INFO"] == "/slow":
        time.sleep(float(environ["QUERY_STRING"] or 0))
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok"]
"""


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


def test_a_worker_takes_no_more_connections_than_it_has_threads(conf):
    settings = conf(2, WEB_THREADS="6")
    assert settings.worker_connections == 6
    assert settings.keepalive == 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str, timeout: float = 10) -> float:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=timeout) as response:
        assert response.read() == b"ok"
    return time.perf_counter() - started


def test_a_request_goes_to_a_free_worker_not_behind_a_busy_one(tmp_path):
    """Two workers of one thread; while one is busy, every new request goes to the other.

    A worker accepting past its threads would take about half of them and hold each until
    its slow request ends.
    """
    (tmp_path / "slow_app.py").write_text(APP)
    port = _free_port()
    env = {
        **os.environ,
        "WEB_CONCURRENCY": "2",
        "WEB_THREADS": "1",
        "GUNICORN_BIND": f"127.0.0.1:{port}",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "slow_app:application", "--pythonpath",
         str(tmp_path), "--config", "python:iofold.gunicorn_conf", "--preload"],
        cwd=BASE_DIR, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                _get(f"{base}/", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        time.sleep(1)  # both workers up
        with ThreadPoolExecutor(1) as pool:
            slow = pool.submit(_get, f"{base}/slow?4")
            time.sleep(0.5)  # the slow request holds one worker's only thread
            waits = [_get(f"{base}/") for _ in range(8)]
            assert max(waits) < 1.5, waits
            assert slow.result() > 3
    finally:
        server.terminate()
        server.wait(timeout=30)
