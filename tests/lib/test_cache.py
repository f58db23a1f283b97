"""The Redis cache backend reads back what it wrote, with one client per connection pool."""

import os
import uuid

import pytest

from iofold.lib.cache import RedisCache

REDIS_URL = os.environ.get("CELERY_BROKER_URL", "")

pytestmark = pytest.mark.skipif(
    not REDIS_URL.startswith("redis://"), reason="needs Redis (CI sets CELERY_BROKER_URL)"
)


@pytest.fixture
def cache():
    backend = RedisCache(REDIS_URL, {"KEY_PREFIX": f"test-cache-{uuid.uuid4().hex}"})
    yield backend
    backend.delete_many(["session", "counter"])


def test_a_value_written_is_read_back_changed_and_deleted(cache):
    cache.set("session", {"user": 1})
    assert cache.get("session") == {"user": 1}

    cache.set("session", {"user": 2})
    assert cache.get("session") == {"user": 2}

    cache.delete("session")
    assert cache.get("session") is None


def test_counters_count_across_calls(cache):
    assert cache.add("counter", 0, timeout=60)
    assert not cache.add("counter", 0, timeout=60)
    assert cache.incr("counter", 5) == 5
    assert cache.decr("counter", 2) == 3


def test_calls_share_one_client(cache):
    """Django's backend builds a client per call; this one keeps the first."""
    client = cache._cache.get_client(write=True)
    cache.set("session", 1)
    assert cache._cache.get_client() is client
