"""Fixtures of the integration tests: a fake Langfuse and an integration pointing at it."""

from datetime import timedelta

import pytest

from integrations import services
from tests.fakes.langfuse_server import FakeLangfuse
from tests.fakes.openai_store_server import openai_store  # noqa: F401 - a fixture
from tests.integrations.helpers import PUBLIC_KEY, SECRET_KEY, recent_base_time


@pytest.fixture
def fake_langfuse():
    """Return a factory of started fake Langfuse servers with recent traces."""
    started = []

    def _start(traces: int = 0, observations: int = 5, spacing=timedelta(seconds=30), **kwargs):
        fake = FakeLangfuse(
            traces=traces,
            observations=observations,
            spacing=spacing,
            base_time=recent_base_time(traces, spacing),
            **kwargs,
        ).start()
        started.append(fake)
        return fake

    yield _start
    for fake in started:
        fake.stop()


@pytest.fixture
def make_integration(workspace):
    def _make(fake, **kwargs):
        options = {
            "name": "Langfuse prod",
            "host": fake.url,
            "public_key": PUBLIC_KEY,
            "secret_key": SECRET_KEY,
            **kwargs,
        }
        return services.create_integration(workspace=workspace, **options)

    return _make
