import pytest

import sandbox


@pytest.fixture(autouse=True)
def _default_sandbox_configuration():
    """Start and end every test on the production configuration (nsjail, no local)."""
    sandbox.configure()
    yield
    sandbox.configure()


@pytest.fixture
def fast_limits():
    return sandbox.Limits(trace_timeout_s=1.0, batch_timeout_s=20, cpu_time_s=10)
