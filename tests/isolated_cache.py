"""The tests' cache: Django's RedisCache on the real Redis, except that ``clear()`` deletes
only this run's keys (those under its KEY_PREFIX, one per test process) instead of
flushing the whole Redis database, which another copy of the suite may be using."""
from __future__ import annotations

import re

from django.core.cache.backends.redis import RedisCache


class RunScopedRedisCache(RedisCache):
    def clear(self) -> bool:
        client = self._cache.get_client(None, write=True)
        pattern = re.sub(r"([*?\[\]\\])", r"\\\1", self.key_prefix) + ":*"
        keys = list(client.scan_iter(match=pattern, count=1000))
        for start in range(0, len(keys), 1000):
            client.delete(*keys[start:start + 1000])
        return True
