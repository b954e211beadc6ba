"""Isolation, on every backend: tenant A can neither read, overwrite nor delete tenant B's cache,
secrets, actions, results or resume ids, whatever it puts in a key, a name, an id or a trigger."""

from __future__ import annotations

import pytest

from broker import keys
from broker.stores import Binding, Stores
from sandbox.errors import InvalidInput, NothingBound, UnknownAction, UnknownTenant
from sandbox.models import CacheDelete
from tests.test_stores_contract import (  # noqa: F401 (fixtures)
    NOW_MS, SOURCE, TRIGGER, cache_set, make_stores, stores,
)


def commit(stores: Stores, tenant: str, execution_id: str, commands: list, trigger: str = TRIGGER,
           result: str = "{}") -> str:
    return stores.results.commit(tenant, trigger, execution_id, result, commands, now_ms=NOW_MS,
                                 result_ttl_seconds=3600)


def values(stores: Stores, tenant: str, trigger: str = TRIGGER) -> dict[str, str]:
    return {k: r["value"] for k, r in stores.cache.snapshot(tenant, trigger, now_ms=NOW_MS).items()}


def crafted_keys(stores: Stores) -> list[str]:
    """Keys tenant "ta" might try to reach tenant "tb" (or another trigger) with."""
    prefix = getattr(stores.cache, "prefix", "actionrunner")
    return list(dict.fromkeys([
        "secret", "*", "secret*", ":", "{tb}", "}:{tb}", "secret\x00", "\x00", "%7Btb%7D",
        keys.cache(prefix, "tb", "t")[:64], f"{prefix}:{{tb}}:cache:t",
        f"tb:{TRIGGER}:secret", "../tb/secret", "\udcff", "é🔑",
    ]))


def test_a_tenant_cannot_read_overwrite_or_delete_another_tenants_cache(stores: Stores) -> None:
    probes = crafted_keys(stores)
    commit(stores, "tb", "b1", [cache_set(k, "B's") for k in probes], trigger="t")
    commit(stores, "tb", "b2", [cache_set(k, "B's") for k in probes])
    before = {trig: values(stores, "tb", trig) for trig in ("t", TRIGGER)}
    assert all(len(v) == len(probes) for v in before.values())

    assert values(stores, "ta", "t") == {} and values(stores, "ta") == {}
    for i, key in enumerate(probes):
        commit(stores, "ta", f"a-del-{i}", [CacheDelete(action="a", key=key)], trigger="t")
        commit(stores, "ta", f"a-set-{i}", [cache_set(key, "A's")], trigger="t")

    assert {trig: values(stores, "tb", trig) for trig in ("t", TRIGGER)} == before
    assert values(stores, "ta", "t") == {key: "A's" for key in probes}


def test_one_trigger_cannot_see_another_triggers_cache(stores: Stores) -> None:
    commit(stores, "ta", "e1", [cache_set("k", "v")], trigger="trigger-one")
    assert values(stores, "ta", "trigger-two") == {}
    assert values(stores, "ta", "trigger-one") == {"k": "v"}


@pytest.mark.parametrize("bad", [
    "tb}", "ta:{tb}", "*", "tb\x00", "tb:cache", "ta}:cache:t", "{tb}", "t%62",
])
def test_crafted_tenants_and_triggers_are_refused_everywhere(stores: Stores, bad: str) -> None:
    commit(stores, "tb", "e1", [cache_set("k", "B's")], trigger="t")
    calls = [
        lambda: stores.cache.snapshot(bad, "t", now_ms=NOW_MS),
        lambda: stores.cache.snapshot("ta", bad, now_ms=NOW_MS),
        lambda: commit(stores, bad, "e2", [cache_set("k", "A's")], trigger="t"),
        lambda: commit(stores, "ta", "e2", [cache_set("k", "A's")], trigger=bad),
        lambda: stores.results.get(bad, "e1"),
        lambda: stores.results.consume_resume(bad, "r", execution_id="e", ttl_seconds=60),
        lambda: stores.registry.add_version(bad, "a", SOURCE, {}),
        lambda: stores.registry.load(bad, "a", 1),
        lambda: stores.registry.bound(bad, TRIGGER),
        lambda: stores.registry.bind("ta", bad, []),
    ]
    for call in calls:
        with pytest.raises(InvalidInput):
            call()
    assert values(stores, "tb", "t") == {"k": "B's"}


def test_a_tenant_cannot_see_or_load_another_tenants_actions_or_secrets(stores: Stores) -> None:
    stores.registry.add_version("tb", "risk", SOURCE, {"KEY": "b-secret"})
    stores.registry.bind("tb", TRIGGER, [Binding("risk", 1)])
    stores.registry.add_version("ta", "other", SOURCE, {})

    assert [v.name for v in stores.registry.list_actions("ta")] == ["other"]
    with pytest.raises(UnknownAction):
        stores.registry.load("ta", "risk", 1)
    with pytest.raises(UnknownAction):
        stores.registry.versions("ta", "risk")
    with pytest.raises(UnknownAction):
        stores.registry.bind("ta", TRIGGER, [Binding("risk", 1)])
    with pytest.raises(NothingBound):
        stores.registry.bound("ta", TRIGGER)
    with pytest.raises(UnknownTenant):
        stores.registry.bound("tc", TRIGGER)


def test_a_tenant_uploading_a_same_named_action_does_not_touch_the_other(stores: Stores) -> None:
    stores.registry.add_version("tb", "risk", "# B\n" + SOURCE, {"KEY": "b-secret"})
    stores.registry.bind("tb", TRIGGER, [Binding("risk", 1)])

    assert stores.registry.add_version("ta", "risk", "# A\n" + SOURCE, {"KEY": "a"}).version == 1
    stores.registry.bind("ta", TRIGGER, [])

    loaded = stores.registry.load("tb", "risk", 1)
    assert (loaded.source.startswith("# B"), loaded.secrets) == (True, {"KEY": "b-secret"})
    assert stores.registry.bound("tb", TRIGGER) == [Binding("risk", 1)]


@pytest.mark.parametrize("crafted", [
    "e1", "e1*", "*", ":result:e1", "}:result:e1", "{tb}:result:e1", "e1\x00", "%65%31",
])
def test_results_and_resume_ids_are_scoped_by_tenant_whatever_the_id(
    stores: Stores, crafted: str
) -> None:
    commit(stores, "tb", "e1", [], result='{"tenant": "tb"}')
    stores.results.consume_resume("tb", "e1", execution_id="x", ttl_seconds=60)

    assert stores.results.get("ta", crafted) is None
    assert commit(stores, "ta", crafted, [], result='{"tenant": "ta"}') == '{"tenant": "ta"}'
    assert stores.results.consume_resume("ta", crafted, execution_id="y", ttl_seconds=60) is True
    assert stores.results.get("tb", "e1") == '{"tenant": "tb"}'
    assert stores.results.get("tb", crafted) == ('{"tenant": "tb"}' if crafted == "e1" else None)
