"""Django's Redis cache, keeping one client per connection pool.

Django's ``RedisCacheClient`` builds a new ``redis.Redis`` for every cache call, and
redis-py's constructor copies its ~170 response callbacks each time: about 0.1 ms of CPU
per call, several times per API request (the session, the throttles, the ingest limit).
A client holds no connection of its own (it borrows one from the pool per command), so one
per pool serves every call; each thread has its own cache backend, hence its own clients.
"""

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class _PooledClientRedisCacheClient(RedisCacheClient):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._clients = {}

    def get_client(self, key=None, *, write=False):
        pool = self._get_connection_pool(write)
        # Pools live as long as this object, so their ids stay theirs.
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class RedisCache(DjangoRedisCache):
    """``django.core.cache.backends.redis.RedisCache`` without a client built per call."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = _PooledClientRedisCacheClient
