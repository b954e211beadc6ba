"""The reply path on a real Redis (no worker needed): a reply pushed for one job reaches whoever waits
for that job only, once; what comes back is size-bounded and parsed strictly before use."""

from __future__ import annotations

import json
import time

import pytest
import redis

from broker import keys
from broker.replies import push_reply, reply_max_bytes, wait_reply
from sandbox.errors import WorkerError
from sandbox.limits import DEFAULT_LIMITS

pytestmark = pytest.mark.redis


@pytest.fixture
def client(redis_url: str) -> redis.Redis:
    return redis.Redis.from_url(redis_url)


def wait(client: redis.Redis, prefix: str, job_id: str, seconds: float = 5.0,
         max_bytes: int = 1024 * 1024):  # type: ignore[no-untyped-def]
    return wait_reply(client, prefix, job_id, deadline=time.monotonic() + seconds,
                      max_bytes=max_bytes)


def test_a_reply_pushed_before_anyone_waits_reaches_that_jobs_waiter_once(
    client: redis.Redis, redis_prefix: str,
) -> None:
    push_reply(client, redis_prefix, "job-1", {"ok": True, "result": "{}", "worker": "w1"},
               ttl_seconds=60)
    push_reply(client, redis_prefix, "job-2", {"ok": False, "worker": "w2",
                                               "error": {"type": "NothingBound", "message": "m"}},
               ttl_seconds=60)

    first = wait(client, redis_prefix, "job-1")
    assert first is not None and first.ok and first.worker == "w1"
    second = wait(client, redis_prefix, "job-2")
    assert second is not None and second.error is not None and second.error.type == "NothingBound"
    assert wait(client, redis_prefix, "job-1", seconds=0.05) is None  # popped: gone
    assert not client.exists(keys.reply(redis_prefix, "job-1"))


def test_a_deadline_already_passed_returns_no_reply_without_blocking(
    client: redis.Redis, redis_prefix: str,
) -> None:
    push_reply(client, redis_prefix, "late", {"ok": True, "result": "{}"}, ttl_seconds=60)
    assert wait(client, redis_prefix, "late", seconds=-1) is None
    assert client.llen(keys.reply(redis_prefix, "late")) == 1  # kept for a later wait...
    assert 0 < client.ttl(keys.reply(redis_prefix, "late")) <= 60  # ...but not forever


def test_an_oversized_or_malformed_reply_is_a_worker_error(
    client: redis.Redis, redis_prefix: str,
) -> None:
    key = keys.reply(redis_prefix, "big")
    client.rpush(key, json.dumps({"ok": True, "result": "x" * 2048}))
    with pytest.raises(WorkerError, match="over the limit"):
        wait(client, redis_prefix, "big", max_bytes=1024)
    for junk in (b"not json", b"[1, 2]", json.dumps({"ok": "maybe"}).encode()):
        client.rpush(keys.reply(redis_prefix, "junk"), junk)
        with pytest.raises(WorkerError, match="malformed"):
            wait(client, redis_prefix, "junk")
    assert reply_max_bytes(DEFAULT_LIMITS) > DEFAULT_LIMITS.result_max_bytes


def test_a_crafted_job_id_cannot_reach_another_key(redis_prefix: str) -> None:
    for crafted in ("x:{t1}:result:e1", "*", "../job", "job\x00"):
        key = keys.reply(redis_prefix, crafted)
        assert key.startswith(f"{redis_prefix}:reply:")
        assert ":" not in key.removeprefix(f"{redis_prefix}:reply:")
