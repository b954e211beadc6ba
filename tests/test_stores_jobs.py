"""The stores' per-job primitives, on the in-memory stores and on Redis (the contract suite's
fixtures): the job's start reads, single-use resume ids owned by an execution, delivery counts, the
commit from the start's cache snapshot, and the worker's cache of loaded action versions."""

from __future__ import annotations

import pytest

from broker.stores import Binding, LoadedActions, Stores, open_stores
from sandbox.errors import InvalidInput, NothingBound, UnknownAction, UnknownTenant
from tests.test_stores_contract import (  # noqa: F401 - fixtures
    NOW_MS, SOURCE, TRIGGER, cache_set, commit, make_stores, stores, values,
)


def start(stores: Stores, execution_id: str = "e1", tenant: str = "t1", *,
          with_bindings: bool = True):  # type: ignore[no-untyped-def]
    return stores.start_job(tenant, TRIGGER, execution_id, now_ms=NOW_MS,
                            with_bindings=with_bindings)


# --------------------------------------------------------------------------------------------------
# The job's start reads


def test_a_job_starts_from_its_bindings_and_its_tenants_live_cache(stores: Stores) -> None:
    stores.registry.add_version("t1", "a", SOURCE, {})
    stores.registry.add_version("t1", "b", SOURCE, {})
    stores.registry.bind("t1", TRIGGER, [Binding("b", 1), Binding("a", 1)])
    commit(stores, "e0", [cache_set("k", "v"), cache_set("gone", "x", expires_at=NOW_MS)])
    commit(stores, "e0", [cache_set("other", "tenant")], tenant="t2")

    begun = start(stores)

    assert begun.stored is None
    assert begun.bound() == [Binding("b", 1), Binding("a", 1)]
    assert {k: r["value"] for k, r in begun.cache.items()} == {"k": "v"}


def test_a_job_already_committed_starts_from_its_stored_result_even_when_nothing_is_bound(
    stores: Stores,
) -> None:
    stores.registry.add_version("t1", "a", SOURCE, {})
    commit(stores, "e1", [], result='{"first": true}')

    assert start(stores).stored == '{"first": true}'
    assert start(stores, tenant="t2").stored is None  # results are per tenant


def test_unknown_tenant_and_nothing_bound_are_raised_when_the_bindings_are_asked_for(
    stores: Stores,
) -> None:
    with pytest.raises(UnknownTenant):
        start(stores).bound()
    stores.registry.add_version("t1", "a", SOURCE, {})
    with pytest.raises(NothingBound):
        start(stores).bound()
    assert start(stores, with_bindings=False).stored is None  # a resume does not need them


def test_a_malformed_tenant_or_execution_id_is_refused_at_the_start(stores: Stores) -> None:
    for tenant, execution_id in (("t1}", "e1"), ("t1", ""), ("t1", "e" * 257)):
        with pytest.raises(InvalidInput):
            start(stores, execution_id, tenant)


def test_a_commit_from_a_stale_start_keeps_the_writes_made_since(stores: Stores) -> None:
    commit(stores, "e0", [cache_set("first", "1")])
    begun = start(stores, "e1")
    commit(stores, "e2", [cache_set("meanwhile", "2")])  # another job of the tenant commits

    stores.results.commit("t1", TRIGGER, "e1", "{}", [cache_set("mine", "3")], now_ms=NOW_MS,
                          result_ttl_seconds=60, cache_seen=begun.cache_seen)

    assert values(stores) == {"first": "1", "meanwhile": "2", "mine": "3"}


def test_a_commit_from_a_fresh_start_applies_once_even_when_redelivered(stores: Stores) -> None:
    begun = start(stores, "e1")
    for _ in range(2):  # the second delivery's commit must apply nothing
        stores.results.commit("t1", TRIGGER, "e1", '{"n": 1}', [cache_set("n", "1")],
                              now_ms=NOW_MS, result_ttl_seconds=60, cache_seen=begun.cache_seen)
    commit(stores, "e2", [cache_set("n", "2")])

    assert values(stores) == {"n": "2"}
    assert stores.results.get("t1", "e1") == '{"n": 1}'


# --------------------------------------------------------------------------------------------------
# Resume ids and delivery counts


def test_a_resume_id_belongs_to_the_first_execution_that_consumes_it(stores: Stores) -> None:
    def consume(tenant: str, resume_id: str, execution_id: str) -> bool:
        return stores.results.consume_resume(tenant, resume_id, execution_id=execution_id,
                                             ttl_seconds=3600)

    assert consume("t1", "r-1", "exec-a") is True
    assert consume("t1", "r-1", "exec-a") is True  # the same execution retried: may go on
    assert consume("t1", "r-1", "exec-b") is False  # another execution: refused
    assert consume("t1", "r-1", "exec-a") is True  # the owner stays the owner
    assert consume("t2", "r-1", "exec-b") is True  # per tenant
    assert consume("t1", "r-2", "exec-b") is True


def test_deliveries_are_counted_per_tenant_and_execution(stores: Stores) -> None:
    def count(tenant: str, execution_id: str) -> int:
        return stores.results.count_delivery(tenant, execution_id, ttl_seconds=3600)

    assert [count("t1", "e1") for _ in range(3)] == [1, 2, 3]
    assert count("t1", "e2") == 1
    assert count("t2", "e1") == 1
    with pytest.raises(InvalidInput):
        stores.results.count_delivery("t1", "e1", ttl_seconds=0)


# --------------------------------------------------------------------------------------------------
# Loaded action versions (pure logic in front of the memory registry)


class CountingRegistry:
    """The memory registry, counting `load` calls."""

    def __init__(self) -> None:
        self.inner = open_stores(None).registry
        self.loads = 0

    def load(self, tenant: str, name: str, version: int):  # type: ignore[no-untyped-def]
        self.loads += 1
        return self.inner.load(tenant, name, version)


def test_a_loaded_version_is_served_from_memory_until_it_is_evicted_or_too_old() -> None:
    registry, now = CountingRegistry(), [0.0]
    for tenant in ("t1", "t2"):
        for name in ("a", "b", "c"):
            registry.inner.add_version(tenant, name, f"# {tenant} {name}\n" + SOURCE, {"K": tenant})
    loaded = LoadedActions(registry, max_entries=2, max_age_seconds=60, clock=lambda: now[0])

    assert loaded.load("t1", "a", 1).secrets == {"K": "t1"}
    assert loaded.load("t2", "a", 1).secrets == {"K": "t2"}  # another tenant: its own entry
    assert loaded.load("t1", "a", 1).source.startswith("# t1 a")
    assert registry.loads == 2
    loaded.load("t1", "b", 1)  # evicts the least recently used: (t2, a, 1)
    loaded.load("t1", "a", 1)
    assert registry.loads == 3
    loaded.load("t2", "a", 1)
    assert registry.loads == 4
    now[0] += 61
    loaded.load("t2", "a", 1)  # too old: loaded again
    assert registry.loads == 5 and len(loaded) == 2
    assert "t1" not in repr(loaded) and "K" not in repr(loaded)


def test_a_missing_version_is_not_remembered() -> None:
    registry = CountingRegistry()
    loaded = LoadedActions(registry)
    for _ in range(2):
        with pytest.raises(UnknownAction):
            loaded.load("t1", "a", 1)
    registry.inner.add_version("t1", "a", SOURCE, {})
    assert loaded.load("t1", "a", 1).version == 1
    assert registry.loads == 3
