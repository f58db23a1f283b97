"""Start-up wiring of the sandbox from settings."""

import logging

import pytest

import sandbox
from evals.sandboxing import configure_sandbox, prepare_sandbox


@pytest.fixture(autouse=True)
def _restore_sandbox_configuration():
    # Restore the configuration itself: this teardown runs before pytest-django puts the
    # test's settings back, so configuring from settings here would keep the test's local
    # backend for every later test (the jail tests then ran outside the jail).
    saved = sandbox.get_settings()
    yield
    sandbox.configure(
        backend=saved.backend,
        allow_local=saved.allow_local,
        limits=saved.limits,
        nsjail_path=saved.nsjail_path,
        python_path=saved.python_path,
    )


def test_debug_allows_the_local_backend(settings):
    settings.DEBUG = True
    settings.SANDBOX_BACKEND = "local"
    settings.SANDBOX_TIMEOUT_PER_TRACE = 2.5
    configure_sandbox()
    current = sandbox.get_settings()
    assert (current.backend, current.allow_local) == ("local", True)
    assert current.limits.trace_timeout_s == 2.5


def test_production_refuses_the_local_backend_unless_allowed(settings):
    settings.DEBUG = False
    settings.SANDBOX_BACKEND = "local"
    settings.SANDBOX_ALLOW_LOCAL_BACKEND = False
    configure_sandbox()
    with pytest.raises(sandbox.BackendRefused):
        sandbox.run("def eval_fn(trace):\n    return True, 'ok'\n", [{}])


def test_production_allowing_the_local_backend_warns(settings, caplog):
    settings.DEBUG = False
    settings.SANDBOX_BACKEND = "local"
    settings.SANDBOX_ALLOW_LOCAL_BACKEND = True
    with caplog.at_level(logging.WARNING, logger="evals.sandboxing"):
        configure_sandbox()
    assert sandbox.get_settings().allow_local
    assert "without isolation" in caplog.text


def test_a_worker_prepares_the_sandbox_as_it_starts_and_only_logs_one_that_cannot_run(
    settings, caplog
):
    settings.DEBUG = False
    settings.SANDBOX_BACKEND = "local"
    settings.SANDBOX_ALLOW_LOCAL_BACKEND = False
    configure_sandbox()
    with pytest.raises(sandbox.BackendRefused):
        sandbox.prepare()  # what the first run would have met
    with caplog.at_level(logging.WARNING, logger="evals.sandboxing"):
        prepare_sandbox()  # the worker starts anyway; each run reports it as before
    assert "sandbox not ready at worker start" in caplog.text
