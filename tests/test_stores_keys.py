"""broker.keys: every caller-supplied part is escaped so that no name can forge another key."""

from __future__ import annotations

import itertools
import re

from broker import keys

CRAFTED = [
    "t1", "t1:cache", "t1}", "{t1}", "t1*", "t1\x00", ":", "", "%", "%3A", "t1%7D", "é", "\udcff",
    "t1:{t2}:cache:x", "a b", "?[]",
]


def test_valid_names_are_left_readable() -> None:
    assert keys.part("password-reset-post-challenge") == "password-reset-post-challenge"
    assert keys.cache("ar", "dev-1.x_y", "trig") == "ar:{dev-1.x_y}:cache:trig"


def test_escaped_parts_hold_no_separator_hash_tag_glob_or_control_character() -> None:
    for value in CRAFTED:
        assert re.fullmatch(r"[A-Za-z0-9_.~%-]*", keys.part(value)), value


def test_no_two_different_inputs_share_a_key() -> None:
    builders = [keys.actions, keys.bindings]
    seen: dict[str, tuple] = {}
    for tenant, other in itertools.product(CRAFTED, CRAFTED):
        made = [(b.__name__, tenant) for b in builders] + [
            (b.__name__, tenant, other)
            for b in (keys.action_meta, keys.action_source, keys.cache, keys.result, keys.resume,
                      keys.delivery)
        ]
        for args in made:
            builder = getattr(keys, args[0])
            key = builder("ar", *args[1:])
            assert seen.setdefault(key, args) == args, f"{args} and {seen[key]} share {key!r}"


def test_each_tenant_has_its_own_cluster_hash_tag() -> None:
    for tenant in CRAFTED:
        key = keys.result("ar", tenant, "}{x}")
        assert key[key.index("{") + 1:key.index("}")] == keys.part(tenant)
