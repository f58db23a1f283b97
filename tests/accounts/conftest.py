import pytest
from django.core.cache import cache


@pytest.fixture(autouse=True)
def _clear_rate_limits():
    """allauth rate-limits emails per address in the cache, which outlives a test."""
    cache.clear()
    yield
    cache.clear()
