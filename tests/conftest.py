"""Fixtures shared by the whole suite.

Redis: tests read `REDIS_URL` (default redis://127.0.0.1:6379/0). When nothing answers there and
`redis-server` is installed, one private server is started for the session. Otherwise Redis tests
skip with a loud reason, and with `CI=true` they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from tests.support.redis_server import PrivateRedis, cleanup_private, ping, redis_server_binary


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A URL of a Redis that answers; see the module docstring for where it comes from."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if ping(url):
        yield url
        return
    if redis_server_binary() is not None:
        server = PrivateRedis().start()
        try:
            yield server.url
        finally:
            cleanup_private(server)
        return
    reason = (
        f"NO REDIS: nothing answers at {url} and redis-server is not installed; "
        "the Redis tests did NOT run"
    )
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key prefix of this test's own; every key under it is deleted afterwards."""
    import redis

    prefix = f"artest:{uuid.uuid4().hex[:12]}"
    yield prefix
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
