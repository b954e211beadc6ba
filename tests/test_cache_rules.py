"""The SPEC cache rules as pure functions: every error code, lifetimes, the trusted-side replay."""

from __future__ import annotations

import pytest

from sandbox.cache_rules import apply_cache_commands, apply_commands, check_set
from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import AccessDeny, CacheDelete, CacheSet

NOW = 1_767_225_600_000
MINUTE_MS = 60_000
DAY_MS = 24 * 60 * MINUTE_MS


def live(value: str = "v", expires_at: int = NOW + MINUTE_MS) -> dict:
    return {"value": value, "expires_at": expires_at}


def test_default_lifetime_is_fifteen_minutes() -> None:
    assert check_set({}, "k", "v", now_ms=NOW) == (NOW + 15 * MINUTE_MS, None)


def test_ttl_is_in_milliseconds_from_now() -> None:
    assert check_set({}, "k", "v", now_ms=NOW, ttl=5000) == (NOW + 5000, None)


def test_absolute_expiry_is_kept() -> None:
    assert check_set({}, "k", "v", now_ms=NOW, expires_at=NOW + 10) == (NOW + 10, None)


@pytest.mark.parametrize(("ttl", "expires_at", "expected"), [
    (1000, NOW + 5000, NOW + 1000),
    (5000, NOW + 1000, NOW + 1000),
])
def test_the_earlier_expiry_wins_when_both_are_given(ttl, expires_at, expected) -> None:
    assert check_set({}, "k", "v", now_ms=NOW, ttl=ttl, expires_at=expires_at) == (expected, None)


def test_key_of_64_bytes_fits_and_65_does_not() -> None:
    assert check_set({}, "k" * 64, "v", now_ms=NOW)[1] is None
    assert check_set({}, "k" * 65, "v", now_ms=NOW) == (None, "CacheKeySizeExceeded")


def test_key_size_counts_utf8_bytes_not_characters() -> None:
    assert check_set({}, "é" * 33, "v", now_ms=NOW) == (None, "CacheKeySizeExceeded")  # 66 bytes


def test_value_over_4_kib_is_refused() -> None:
    assert check_set({}, "k", "v" * 4096, now_ms=NOW)[1] is None
    assert check_set({}, "k", "v" * 4097, now_ms=NOW) == (None, "CacheValueSizeExceeded")


@pytest.mark.parametrize("ttl", [0, -1, DAY_MS + 1, "60", float("nan"), float("inf"), True])
def test_bad_ttl_is_invalid_expiry(ttl) -> None:
    assert check_set({}, "k", "v", now_ms=NOW, ttl=ttl) == (None, "InvalidExpiry")


def test_lifetime_of_exactly_24_hours_is_allowed() -> None:
    assert check_set({}, "k", "v", now_ms=NOW, ttl=DAY_MS) == (NOW + DAY_MS, None)
    too_far = NOW + DAY_MS + 1
    assert check_set({}, "k", "v", now_ms=NOW, expires_at=too_far) == (None, "InvalidExpiry")


@pytest.mark.parametrize("expires_at", [NOW, NOW - 1])
def test_expires_at_not_in_the_future_is_already_expired(expires_at) -> None:
    result = check_set({}, "k", "v", now_ms=NOW, expires_at=expires_at)
    assert result == (None, "ItemAlreadyExpired")


def test_twenty_one_records_exceed_the_cache() -> None:
    cache = {f"k{i}": live() for i in range(20)}
    assert check_set(cache, "new", "v", now_ms=NOW) == (None, "CacheSizeExceeded")
    assert check_set(cache, "k0", "replaced", now_ms=NOW)[1] is None  # replacing keeps 20


def test_expired_records_do_not_count() -> None:
    cache = {f"k{i}": live(expires_at=NOW) for i in range(20)}
    assert check_set(cache, "new", "v", now_ms=NOW)[1] is None


def test_more_than_8_kib_of_keys_and_values_exceeds_the_cache() -> None:
    cache = {"a": live("x" * 4000), "b": live("y" * 4000)}  # 8002 bytes with keys
    assert check_set(cache, "c", "z" * 189, now_ms=NOW)[1] is None  # 8192 bytes
    assert check_set(cache, "c", "z" * 190, now_ms=NOW) == (None, "CacheSizeExceeded")


def test_non_string_key_or_value_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="must be str"):
        check_set({}, "k", 5, now_ms=NOW)  # type: ignore[arg-type]


def test_limits_come_from_the_limits_object() -> None:
    small = Limits(cache_key_max_bytes=2)
    assert check_set({}, "abc", "v", now_ms=NOW, limits=small) == (None, "CacheKeySizeExceeded")


# -- apply_commands: the trusted side's replay ---------------------------------------------------


def cset(
    key: str, value: str = "v", expires_at: int = NOW + MINUTE_MS, action: str = "a"
) -> CacheSet:
    return CacheSet(action=action, key=key, value=value, expires_at=expires_at)


def test_apply_commands_applies_sets_and_deletes_in_order() -> None:
    cache = {"old": live("1")}
    codes = apply_commands(
        cache, [cset("k", "1"), cset("k", "2"), CacheDelete(action="a", key="old")], now_ms=NOW,
        limits=DEFAULT_LIMITS,
    )
    assert codes == []
    assert cache == {"k": live("2")}


def test_apply_commands_drops_expired_records_first() -> None:
    cache = {"gone": live(expires_at=NOW)}
    codes = apply_commands(cache, [CacheDelete(action="a", key="gone")], now_ms=NOW)
    assert codes == ["CacheKeyDoesNotExist"]
    assert cache == {}


def test_apply_commands_refuses_what_breaks_a_rule_and_applies_the_rest() -> None:
    cache: dict = {}
    commands = [
        cset("x" * 65), cset("ok"), cset("late", expires_at=NOW - 1),
        cset("far", expires_at=NOW + DAY_MS + 1),
    ]
    refused = apply_cache_commands(cache, commands, now_ms=NOW, limits=DEFAULT_LIMITS)
    assert [(r.command.key, r.code) for r in refused] == [
        ("x" * 65, "CacheKeySizeExceeded"), ("late", "ItemAlreadyExpired"), ("far", "InvalidExpiry"),
    ]
    assert list(cache) == ["ok"]


def test_apply_commands_enforces_side_effects_per_action() -> None:
    limits = Limits(side_effects_max_count=3)
    commands = [cset("k", str(i)) for i in range(4)] + [cset("other", action="b")]
    cache: dict = {}
    assert apply_commands(cache, commands, now_ms=NOW, limits=limits) == ["MaxSideEffectsExceeded"]
    assert cache["k"]["value"] == "2" and "other" in cache


def test_apply_commands_skips_commands_that_are_not_cache_commands() -> None:
    cache: dict = {}
    commands = [AccessDeny(action="a", reason="r"), cset("k")]
    assert apply_commands(cache, commands, now_ms=NOW, limits=DEFAULT_LIMITS) == []
    assert list(cache) == ["k"]

