"""One contract for every store backend: each test runs on the in-memory stores and on Redis.

Isolation across tenants and triggers is in tests/test_stores_isolation.py; Redis-only details
(key expiry, durability) in tests/test_stores_redis.py.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from broker.stores import Binding, Stores, open_stores
from sandbox.errors import (
    InvalidInput, LimitExceeded, NothingBound, UnknownAction, UnknownTenant,
)
from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import CacheDelete, CacheSet

TRIGGER = "password-reset-post-challenge"
# The tests' "now": a day ahead of the real clock, so that Redis (which expires keys by its own
# clock) never drops a record while a test still runs, and no fixed date ever makes the suite rot.
NOW_MS = (int(time.time()) + 86_400) * 1000
MINUTE_MS = 60_000
SOURCE = "def on_execute_post_challenge(event, api):\n    pass\n"

MakeStores = Callable[..., Stores]


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def make_stores(request: pytest.FixtureRequest) -> Iterator[MakeStores]:
    """Builds stores of the parametrized backend; Redis ones live under this test's own prefix."""
    opened: list[Stores] = []

    def make(limits: Limits = DEFAULT_LIMITS) -> Stores:
        if request.param == "memory":
            stores = open_stores(None, limits=limits)
        else:
            stores = open_stores(request.getfixturevalue("redis_url"),
                                 prefix=request.getfixturevalue("redis_prefix"), limits=limits)
        opened.append(stores)
        return stores

    yield make
    for stores in opened:
        stores.close()


@pytest.fixture
def stores(make_stores: MakeStores) -> Stores:
    return make_stores()


def cache_set(key: str, value: str, expires_at: int = NOW_MS + MINUTE_MS,
              action: str = "a") -> CacheSet:
    return CacheSet(action=action, key=key, value=value, expires_at=expires_at)


def commit(stores: Stores, execution_id: str, commands: list[CacheSet | CacheDelete],
           result: str = '{"status": "completed"}', tenant: str = "t1") -> str:
    return stores.results.commit(tenant, TRIGGER, execution_id, result, commands,
                                 now_ms=NOW_MS, result_ttl_seconds=3600)


def values(stores: Stores, tenant: str = "t1", now_ms: int = NOW_MS) -> dict[str, str]:
    return {k: r["value"] for k, r in stores.cache.snapshot(tenant, TRIGGER, now_ms=now_ms).items()}


# --------------------------------------------------------------------------------------------------
# Registry: versions


def test_versions_are_numbered_from_one_and_old_ones_stay_loadable(stores: Stores) -> None:
    first = stores.registry.add_version("t1", "risk", "# v1\n" + SOURCE, {})
    second = stores.registry.add_version("t1", "risk", "# v2\n" + SOURCE, {})

    assert (first.version, second.version) == (1, 2)
    assert [v.version for v in stores.registry.versions("t1", "risk")] == [1, 2]
    assert stores.registry.load("t1", "risk", 1).source.startswith("# v1")
    assert stores.registry.load("t1", "risk", 2).source_hash == second.source_hash
    assert first.source_hash != second.source_hash


def test_only_the_last_50_versions_are_kept_and_numbers_are_never_reused(stores: Stores) -> None:
    for i in range(DEFAULT_LIMITS.versions_kept_count + 2):
        stores.registry.add_version("t1", "risk", f"# {i}\n{SOURCE}", {})

    kept = [v.version for v in stores.registry.versions("t1", "risk")]
    assert kept == list(range(3, 53))
    with pytest.raises(UnknownAction):
        stores.registry.load("t1", "risk", 1)
    assert stores.registry.add_version("t1", "risk", SOURCE, {}).version == 53


def test_a_bound_version_is_never_dropped(make_stores: MakeStores) -> None:
    stores = make_stores(Limits(versions_kept_count=3))
    stores.registry.add_version("t1", "risk", "# 1\n" + SOURCE, {})
    stores.registry.bind("t1", TRIGGER, [Binding("risk", 1)])

    for i in range(2, 7):
        stores.registry.add_version("t1", "risk", f"# {i}\n{SOURCE}", {})

    assert [v.version for v in stores.registry.versions("t1", "risk")] == [1, 5, 6]
    assert stores.registry.load("t1", "risk", 1).source.startswith("# 1")


def test_upload_is_refused_when_every_kept_version_is_bound(make_stores: MakeStores) -> None:
    stores = make_stores(Limits(versions_kept_count=2))
    stores.registry.add_version("t1", "risk", SOURCE, {})
    stores.registry.add_version("t1", "risk", SOURCE, {})
    stores.registry.bind("t1", TRIGGER, [Binding("risk", 1)])
    stores.registry.bind("t1", "other-trigger", [Binding("risk", 2)])

    with pytest.raises(LimitExceeded, match="unbind"):
        stores.registry.add_version("t1", "risk", SOURCE, {})

    stores.registry.bind("t1", "other-trigger", [])
    assert stores.registry.add_version("t1", "risk", SOURCE, {}).version == 3
    assert [v.version for v in stores.registry.versions("t1", "risk")] == [1, 3]


def test_list_actions_shows_the_latest_version_of_each_action(stores: Stores) -> None:
    stores.registry.add_version("t1", "b", SOURCE, {})
    stores.registry.add_version("t1", "a", SOURCE, {})
    stores.registry.add_version("t1", "a", SOURCE, {})

    assert [(v.name, v.version) for v in stores.registry.list_actions("t1")] == [("a", 2), ("b", 1)]
    assert stores.registry.list_actions("nobody") == []


def test_unknown_actions_and_versions_are_named_in_the_error(stores: Stores) -> None:
    stores.registry.add_version("t1", "risk", SOURCE, {})
    with pytest.raises(UnknownAction, match="'nope'"):
        stores.registry.versions("t1", "nope")
    with pytest.raises(UnknownAction, match="version 7"):
        stores.registry.load("t1", "risk", 7)


def test_source_over_100_kb_is_refused(stores: Stores) -> None:
    with pytest.raises(LimitExceeded, match="source"):
        stores.registry.add_version("t1", "big", "#" * (100 * 1024 + 1), {})
    assert not stores.registry.tenant_exists("t1")


@pytest.mark.parametrize("bad", ["", "a" * 65, "a:b", "a*", "{t2}", "a\x00", "é", "a b", 7])
def test_malformed_tenant_or_action_names_are_refused_naming_the_field(
    stores: Stores, bad: object
) -> None:
    with pytest.raises(InvalidInput) as tenant_err:
        stores.registry.add_version(bad, "risk", SOURCE, {})  # type: ignore[arg-type]
    with pytest.raises(InvalidInput) as name_err:
        stores.registry.add_version("t1", bad, SOURCE, {})  # type: ignore[arg-type]
    assert (tenant_err.value.field, name_err.value.field) == ("tenant", "name")
    assert stores.registry.tenant_exists(bad) is False  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------------
# Registry: secrets


@pytest.mark.parametrize(("secrets", "error"), [
    ({f"S{i}": "v" for i in range(31)}, LimitExceeded),
    ({"N" * 129: "v"}, LimitExceeded),
    ({"N": "v" * 4097}, LimitExceeded),
    ({"N": 42}, InvalidInput),
    ({"": "v"}, InvalidInput),
    ("N=v", InvalidInput),
])
def test_secrets_over_their_limits_are_refused(
    stores: Stores, secrets: object, error: type[Exception]
) -> None:
    with pytest.raises(error):
        stores.registry.add_version("t1", "risk", SOURCE, secrets)  # type: ignore[arg-type]
    assert not stores.registry.tenant_exists("t1")


def test_secrets_at_their_limits_are_kept(stores: Stores) -> None:
    secrets = {f"S{i:03}" + "n" * 124: "v" * 4096 for i in range(30)}
    stores.registry.add_version("t1", "risk", SOURCE, secrets)
    assert stores.registry.load("t1", "risk", 1).secrets == secrets


def test_secrets_are_returned_only_by_load_and_never_shown_in_repr(stores: Stores) -> None:
    stores.registry.add_version("t1", "risk", SOURCE, {"API_KEY": "hunter2-secret"})

    listed = [*stores.registry.versions("t1", "risk"), *stores.registry.list_actions("t1")]
    assert "hunter2" not in repr(listed)
    assert "hunter2" not in json.dumps([dataclasses.asdict(v) for v in listed])
    loaded = stores.registry.load("t1", "risk", 1)
    assert loaded.secrets == {"API_KEY": "hunter2-secret"}
    assert "hunter2" not in repr(loaded) and "hunter2" not in str(loaded)
    assert "API_KEY" in repr(loaded)


def test_a_non_str_secret_value_is_never_echoed_in_the_error(stores: Stores) -> None:
    with pytest.raises(InvalidInput) as err:
        secrets = {"TOKEN": b"hunter2-bytes"}
        stores.registry.add_version("t1", "risk", SOURCE, secrets)  # type: ignore[arg-type]
    assert "TOKEN" in str(err.value) and "hunter2" not in str(err.value)


# --------------------------------------------------------------------------------------------------
# Registry: bindings


def test_bind_keeps_the_order_and_rebinding_an_older_version_rolls_back(stores: Stores) -> None:
    for name in ("a", "b", "b"):
        stores.registry.add_version("t1", name, SOURCE, {})
    stores.registry.bind("t1", TRIGGER, [Binding("b", 2), Binding("a", 1)])
    assert stores.registry.bound("t1", TRIGGER) == [Binding("b", 2), Binding("a", 1)]

    pairs: Any = [("b", 1), ("a", 1)]  # (name, version) pairs are accepted too
    assert stores.registry.bind("t1", TRIGGER, pairs) == [Binding("b", 1), Binding("a", 1)]
    assert stores.registry.bound("t1", TRIGGER) == [Binding("b", 1), Binding("a", 1)]


def test_binding_more_than_20_actions_is_refused_and_the_old_binding_stands(stores: Stores) -> None:
    for i in range(21):
        stores.registry.add_version("t1", f"a{i}", SOURCE, {})
    stores.registry.bind("t1", TRIGGER, [Binding("a0", 1)])

    with pytest.raises(LimitExceeded, match="20"):
        stores.registry.bind("t1", TRIGGER, [Binding(f"a{i}", 1) for i in range(21)])
    assert stores.registry.bound("t1", TRIGGER) == [Binding("a0", 1)]
    assert len(stores.registry.bind("t1", TRIGGER, [Binding(f"a{i}", 1) for i in range(20)])) == 20


def test_binding_a_missing_version_is_refused_and_the_old_binding_stands(stores: Stores) -> None:
    stores.registry.add_version("t1", "a", SOURCE, {})
    stores.registry.bind("t1", TRIGGER, [Binding("a", 1)])

    with pytest.raises(UnknownAction, match="version 2"):
        stores.registry.bind("t1", TRIGGER, [Binding("a", 1), Binding("a", 2)])
    with pytest.raises(UnknownAction):
        stores.registry.bind("t1", TRIGGER, [Binding("ghost", 1)])
    assert stores.registry.bound("t1", TRIGGER) == [Binding("a", 1)]


def test_an_empty_list_unbinds(stores: Stores) -> None:
    stores.registry.add_version("t1", "a", SOURCE, {})
    stores.registry.bind("t1", TRIGGER, [Binding("a", 1)])
    stores.registry.bind("t1", TRIGGER, [])
    with pytest.raises(NothingBound):
        stores.registry.bound("t1", TRIGGER)


def test_unknown_tenant_and_nothing_bound_are_told_apart(stores: Stores) -> None:
    assert not stores.registry.tenant_exists("t1")
    with pytest.raises(UnknownTenant):
        stores.registry.bound("t1", TRIGGER)
    stores.registry.add_version("t1", "a", SOURCE, {})
    assert stores.registry.tenant_exists("t1")
    with pytest.raises(NothingBound):
        stores.registry.bound("t1", TRIGGER)


# --------------------------------------------------------------------------------------------------
# Results and the cache


def test_commit_applies_cache_commands_in_order_and_stores_the_result(stores: Stores) -> None:
    commit(stores, "e0", [cache_set("gone", "x")])
    stored = commit(stores, "e1", [cache_set("k", "1"), cache_set("k", "2"), CacheDelete(
        action="a", key="gone")])

    assert stored == '{"status": "completed"}'
    assert stores.results.get("t1", "e1") == stored
    assert values(stores) == {"k": "2"}
    record = stores.cache.snapshot("t1", TRIGGER, now_ms=NOW_MS)["k"]
    assert record["expires_at"] == NOW_MS + MINUTE_MS


def test_a_second_commit_of_one_execution_applies_nothing_and_returns_the_first_result(
    stores: Stores,
) -> None:
    commit(stores, "e1", [cache_set("count", "1")], result='{"first": true}')

    again = commit(stores, "e1", [cache_set("count", "2"), cache_set("extra", "x")],
                   result='{"second": true}')
    again_empty = commit(stores, "e1", [], result='{"third": true}')

    assert again == again_empty == '{"first": true}'
    assert values(stores) == {"count": "1"}
    assert stores.results.get("t1", "e1") == '{"first": true}'
    assert stores.results.get("t1", "never-ran") is None


def test_concurrent_commits_of_one_execution_apply_exactly_once(stores: Stores) -> None:
    returned: list[str] = []

    def worker(i: int) -> None:
        returned.append(commit(stores, "e1", [cache_set(f"k{i}", "v")], result=f'{{"by": {i}}}'))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(returned)) == 1
    winner = json.loads(returned[0])["by"]
    assert values(stores) == {f"k{winner}": "v"}


def test_concurrent_commits_of_different_executions_lose_no_write(stores: Stores) -> None:
    threads = [threading.Thread(target=commit, args=(stores, f"e{i}", [cache_set(f"k{i}", "v")]))
               for i in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(values(stores)) == sorted(f"k{i}" for i in range(10))


def many(prefix: str, count: int, value: str = "v") -> list[CacheSet]:
    return [cache_set(f"{prefix}{i}", value) for i in range(count)]


@pytest.mark.parametrize(("commands", "expected"), [
    pytest.param([cache_set("k" * 65, "v"), cache_set("ok", "v")], {"ok": "v"},
                 id="CacheKeySizeExceeded"),
    pytest.param([cache_set("big", "v" * 4097), cache_set("ok", "v" * 4096)], {"ok": "v" * 4096},
                 id="CacheValueSizeExceeded"),
    pytest.param(many("k", 21), {f"k{i}": "v" for i in range(20)}, id="CacheSizeExceeded-records"),
    pytest.param(many("k", 3, "v" * 4000), {"k0": "v" * 4000, "k1": "v" * 4000},
                 id="CacheSizeExceeded-bytes"),
    pytest.param([cache_set("far", "v", NOW_MS + 24 * 60 * MINUTE_MS + 1)], {},
                 id="InvalidExpiry"),
    pytest.param([cache_set("past", "v", NOW_MS)], {}, id="ItemAlreadyExpired"),
    pytest.param([cache_set("n", str(i)) for i in range(101)], {"n": "99"},
                 id="MaxSideEffectsExceeded"),
    pytest.param([CacheDelete(action="a", key="missing"), cache_set("ok", "v")], {"ok": "v"},
                 id="CacheKeyDoesNotExist"),
])
def test_cache_limits_are_enforced_again_at_commit(
    stores: Stores, commands: list[CacheSet | CacheDelete], expected: dict[str, str]
) -> None:
    assert commit(stores, "e1", commands) == '{"status": "completed"}'
    assert values(stores) == expected
    assert stores.results.get("t1", "e1") is not None


def test_side_effects_are_counted_per_action(stores: Stores) -> None:
    commit(stores, "e1", [cache_set("n", str(i), action="a") for i in range(100)]
           + [cache_set("m", "from-b", action="b")])
    assert values(stores) == {"n": "99", "m": "from-b"}


def test_records_vanish_when_their_lifetime_ends(stores: Stores) -> None:
    commit(stores, "e1", [cache_set("short", "s", NOW_MS + 1000), cache_set("long", "l")])

    assert values(stores, now_ms=NOW_MS + 999) == {"short": "s", "long": "l"}
    assert values(stores, now_ms=NOW_MS + 1000) == {"long": "l"}
    assert values(stores, now_ms=NOW_MS + MINUTE_MS) == {}


def test_expired_records_do_not_count_against_the_record_limit(stores: Stores) -> None:
    commit(stores, "e1", many("old", 20))  # all expire at NOW_MS + 1 minute
    later = NOW_MS + 2 * MINUTE_MS
    stores.results.commit("t1", TRIGGER, "e2", "{}", [cache_set("new", "v", later + MINUTE_MS)],
                          now_ms=later, result_ttl_seconds=60)
    assert values(stores, now_ms=later) == {"new": "v"}


def test_resume_ids_are_single_use_per_tenant(stores: Stores) -> None:
    def consume(tenant: str, resume_id: str, execution_id: str) -> bool:
        return stores.results.consume_resume(tenant, resume_id, execution_id=execution_id,
                                             ttl_seconds=3600)

    assert consume("t1", "r-1", "e1") is True
    assert consume("t1", "r-1", "e2") is False
    assert consume("t2", "r-1", "e2") is True
    assert consume("t1", "r-2", "e2") is True


@pytest.mark.parametrize("call", [
    lambda s: s.results.commit("t1", TRIGGER, "", "{}", [], now_ms=NOW_MS, result_ttl_seconds=60),
    lambda s: s.results.commit("t1", TRIGGER, "e", b"{}", [], now_ms=NOW_MS, result_ttl_seconds=60),
    lambda s: s.results.commit("t1", TRIGGER, "e", "{}", [], now_ms=NOW_MS, result_ttl_seconds=0),
    lambda s: s.results.commit("t1", TRIGGER, "e", "{}", [{"key": "k"}], now_ms=NOW_MS,
                               result_ttl_seconds=60),
    lambda s: s.results.consume_resume("t1", "r", execution_id="e", ttl_seconds=-1),
    lambda s: s.results.consume_resume("t1", "r", execution_id="", ttl_seconds=60),
    lambda s: s.results.count_delivery("t1", "e" * 257, ttl_seconds=60),
    lambda s: s.results.get("t1", "e" * 257),
], ids=["empty-id", "bytes-result", "zero-ttl", "dict-command", "negative-ttl", "empty-owner",
        "long-delivery-id", "long-id"])
def test_malformed_store_calls_are_refused_with_invalid_input(
    stores: Stores, call: Callable[[Stores], object]
) -> None:
    with pytest.raises(InvalidInput):
        call(stores)
    assert stores.results.get("t1", "e") is None
