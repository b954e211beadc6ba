"""What only one backend can show: Redis key expiry, layout and durability; memory's clock."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from broker.stores import (
    Binding, MemoryStateStore, RedisActionRegistry, RedisStateStore, Stores, open_stores,
)
from broker.stores import redis_state
from sandbox import cache_rules
from sandbox.models import CacheSet
from tests.support.redis_server import PrivateRedis, cleanup_private, redis_server_binary
from tests.test_stores_contract import NOW_MS, SOURCE, TRIGGER

MINUTE_MS = 60_000


@pytest.fixture
def redis_stores(redis_url: str, redis_prefix: str) -> Iterator[Stores]:
    stores = open_stores(redis_url, prefix=redis_prefix)
    yield stores
    stores.close()


def set_cmd(key: str, expires_at: int) -> CacheSet:
    return CacheSet(action="a", key=key, value="v", expires_at=expires_at)


@pytest.mark.redis
def test_the_cache_hash_expires_with_its_longest_lived_record(
    redis_stores: Stores, redis_prefix: str
) -> None:
    redis_stores.results.commit("t1", TRIGGER, "e1", "{}", [
        set_cmd("short", NOW_MS + MINUTE_MS), set_cmd("long", NOW_MS + 5 * MINUTE_MS),
    ], now_ms=NOW_MS, result_ttl_seconds=120)

    client = redis_stores.client
    [cache_key] = [k for k in client.scan_iter(match=f"{redis_prefix}:*:cache:*")]
    assert client.pexpiretime(cache_key) == NOW_MS + 5 * MINUTE_MS
    [result_key] = [k for k in client.scan_iter(match=f"{redis_prefix}:*:result:*")]
    assert 0 < client.ttl(result_key) <= 120


@pytest.mark.redis
def test_a_consumed_resume_id_is_kept_for_its_ttl_only(
    redis_stores: Stores, redis_prefix: str
) -> None:
    redis_stores.results.consume_resume("t1", "r1", execution_id="e1", ttl_seconds=90)
    [key] = list(redis_stores.client.scan_iter(match=f"{redis_prefix}:*:resume:*"))
    assert 0 < redis_stores.client.ttl(key) <= 90


@pytest.mark.redis
def test_every_key_follows_the_documented_layout(redis_stores: Stores, redis_prefix: str) -> None:
    redis_stores.registry.add_version("t1", "a", SOURCE, {"K": "v"})
    redis_stores.registry.bind("t1", TRIGGER, [Binding("a", 1)])
    redis_stores.results.commit("t1", TRIGGER, "e:*{x}", "{}", [set_cmd("k:*{x}", NOW_MS + 1)],
                                now_ms=NOW_MS, result_ttl_seconds=60)
    redis_stores.results.consume_resume("t1", "r\x00", execution_id="e1", ttl_seconds=60)
    redis_stores.results.count_delivery("t1", "e:*{x}", ttl_seconds=60)

    layout = re.compile(re.escape(redis_prefix) + r":\{t1\}:(actions|bindings|"
                        r"(meta|src|cache|result|resume|delivery):[A-Za-z0-9_.~%-]+)")
    found = sorted(k.decode() for k in redis_stores.client.scan_iter(match=f"{redis_prefix}:*"))
    assert len(found) == 8
    assert all(layout.fullmatch(key) for key in found), found


def interleave(monkeypatch: pytest.MonkeyPatch, other_commit: Callable[[], object]) -> None:
    """Run `other_commit` once, between a commit's reads and its write (the race the
    compare-and-set exists for), as another worker would."""
    pending = [other_commit]
    original = cache_rules.apply_commands

    def apply_then_race(*args: Any, **kwargs: Any) -> list[str]:
        refused = original(*args, **kwargs)
        if pending:
            pending.pop()()
        return refused

    monkeypatch.setattr(redis_state.cache_rules, "apply_commands", apply_then_race)


@pytest.mark.redis
def test_a_redelivery_committing_in_the_middle_of_a_commit_wins_and_nothing_is_applied_twice(
    redis_stores: Stores, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_worker = RedisStateStore(redis.Redis.from_url(redis_url), redis_prefix)
    # The other delivery stores a result without cache writes (as a worker giving up on a job
    # does), so only the script's own "already stored?" check can stop this commit.
    interleave(monkeypatch, lambda: other_worker.commit(
        "t1", TRIGGER, "e1", '{"by": "other"}', [], now_ms=NOW_MS, result_ttl_seconds=60))

    stored = redis_stores.results.commit("t1", TRIGGER, "e1", '{"by": "me"}',
                                         [set_cmd("mine", NOW_MS + MINUTE_MS)], now_ms=NOW_MS,
                                         result_ttl_seconds=60)

    assert stored == '{"by": "other"}'
    assert redis_stores.cache.snapshot("t1", TRIGGER, now_ms=NOW_MS) == {}


@pytest.mark.redis
def test_a_cache_write_landing_in_the_middle_of_a_commit_is_kept_and_the_commit_redone(
    redis_stores: Stores, redis_url: str, redis_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    other_worker = RedisStateStore(redis.Redis.from_url(redis_url), redis_prefix)
    interleave(monkeypatch, lambda: other_worker.commit(
        "t1", TRIGGER, "e2", "{}", [set_cmd("other", NOW_MS + MINUTE_MS)],
        now_ms=NOW_MS, result_ttl_seconds=60))

    redis_stores.results.commit("t1", TRIGGER, "e1", "{}", [set_cmd("mine", NOW_MS + MINUTE_MS)],
                                now_ms=NOW_MS, result_ttl_seconds=60)

    assert sorted(redis_stores.cache.snapshot("t1", TRIGGER, now_ms=NOW_MS)) == ["mine", "other"]


@pytest.mark.redis
def test_a_client_that_decodes_responses_is_refused(redis_url: str, redis_prefix: str) -> None:
    with pytest.raises(ValueError, match="decode_responses"):
        RedisActionRegistry(redis.Redis.from_url(redis_url, decode_responses=True), redis_prefix)


@pytest.mark.redis
@pytest.mark.skipif(redis_server_binary() is None, reason="redis-server is not installed")
def test_nothing_uploaded_or_committed_is_lost_across_a_redis_restart() -> None:
    server = PrivateRedis(appendonly=True).start()
    try:
        stores = open_stores(server.url, prefix="durable")
        stores.registry.add_version("t1", "a", SOURCE, {"K": "secret"})
        stores.registry.bind("t1", TRIGGER, [Binding("a", 1)])
        stores.results.commit("t1", TRIGGER, "e1", '{"ok": 1}', [set_cmd("k", NOW_MS + MINUTE_MS)],
                              now_ms=NOW_MS, result_ttl_seconds=3600)
        stores.close()

        server.restart()

        stores = open_stores(server.url, prefix="durable")
        assert stores.registry.load("t1", "a", 1).secrets == {"K": "secret"}
        assert stores.registry.bound("t1", TRIGGER) == [Binding("a", 1)]
        assert stores.results.get("t1", "e1") == '{"ok": 1}'
        assert stores.cache.snapshot("t1", TRIGGER, now_ms=NOW_MS)["k"]["value"] == "v"
        stores.close()
    finally:
        cleanup_private(server)


def test_memory_results_and_resume_ids_expire_with_the_clock() -> None:
    now = [1000.0]
    store = MemoryStateStore(clock_s=lambda: now[0])
    store.commit("t1", TRIGGER, "e1", '{"first": 1}', [], now_ms=NOW_MS, result_ttl_seconds=60)
    store.consume_resume("t1", "r1", execution_id="e-first", ttl_seconds=60)

    now[0] += 59
    assert store.get("t1", "e1") == '{"first": 1}'
    assert store.consume_resume("t1", "r1", execution_id="e-other", ttl_seconds=60) is False

    now[0] += 2
    assert store.get("t1", "e1") is None
    assert store.commit("t1", TRIGGER, "e1", '{"again": 1}', [], now_ms=NOW_MS,
                        result_ttl_seconds=60) == '{"again": 1}'
    assert store.consume_resume("t1", "r1", execution_id="e-other", ttl_seconds=60) is True
