"""The cache rules of SPEC section 3, as pure functions over a plain dict.

Used in three places, so standalone: by `api.cache` in the jailed child (the tenant's answer), by
the flow on the trusted side (re-checking every cache command a child returned) and by the cache
stores (re-checking again at commit). A cache maps key -> {"value": str, "expires_at": ms since
the epoch}; a record whose `expires_at <= now_ms` is gone. Sizes are UTF-8 bytes.

Side effects: every applied `cache.set` and `cache.delete` counts as one side effect of the action
that issued it; past `limits.side_effects_max_count` per action, writes are refused with
`MaxSideEffectsExceeded`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, MutableMapping
from typing import Any, NamedTuple, Union

from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import CacheDelete, CacheSet

CACHE_KEY_SIZE_EXCEEDED = "CacheKeySizeExceeded"
CACHE_VALUE_SIZE_EXCEEDED = "CacheValueSizeExceeded"
CACHE_SIZE_EXCEEDED = "CacheSizeExceeded"
INVALID_EXPIRY = "InvalidExpiry"
ITEM_ALREADY_EXPIRED = "ItemAlreadyExpired"
MAX_SIDE_EFFECTS_EXCEEDED = "MaxSideEffectsExceeded"
CACHE_KEY_DOES_NOT_EXIST = "CacheKeyDoesNotExist"

ERROR_CODES = frozenset({
    CACHE_KEY_SIZE_EXCEEDED, CACHE_VALUE_SIZE_EXCEEDED, CACHE_SIZE_EXCEEDED, INVALID_EXPIRY,
    ITEM_ALREADY_EXPIRED, MAX_SIDE_EFFECTS_EXCEEDED, CACHE_KEY_DOES_NOT_EXIST,
})

CacheCommand = Union[CacheSet, CacheDelete]


class Refusal(NamedTuple):
    """A cache command that was not applied, and the error code saying why."""

    command: CacheCommand
    code: str


def utf8_size(text: str) -> int:
    """Size of `text` in UTF-8 bytes (a lone surrogate counts 3 bytes; never raises)."""
    return len(text.encode("utf-8", "surrogatepass"))


def is_live(record: Mapping[str, Any], now_ms: int) -> bool:
    """True when `record` has not expired at `now_ms` (its `expires_at` is later)."""
    return record["expires_at"] > now_ms


def drop_expired(cache: MutableMapping[str, Any], now_ms: int) -> None:
    """Remove, in place, every record of `cache` that has expired at `now_ms`."""
    for key in [key for key, record in cache.items() if not is_live(record, now_ms)]:
        del cache[key]


def check_set(
    cache: Mapping[str, Mapping[str, Any]],
    key: str,
    value: str,
    *,
    now_ms: int,
    ttl: Any = None,
    expires_at: Any = None,
    limits: Limits = DEFAULT_LIMITS,
) -> tuple[int, None] | tuple[None, str]:
    """Whether `cache[key] = value` may be written at `now_ms` (ms since the epoch).

    Returns `(expires_at_ms, None)` when it may, else `(None, error_code)`, checking in this order:
    key size (CacheKeySizeExceeded), value size (CacheValueSizeExceeded), lifetime (`ttl` in ms
    and/or absolute `expires_at` in ms; not a positive finite number or longer than the maximum
    lifetime: InvalidExpiry; `expires_at <= now_ms`: ItemAlreadyExpired; both given: the earlier
    wins; neither: the default lifetime), then the whole cache after the write, ignoring expired
    records (too many records or key+value bytes: CacheSizeExceeded). Does not count side effects.
    Raises TypeError when `key` or `value` is not a str.
    """
    if not isinstance(key, str) or not isinstance(value, str):
        raise TypeError(
            f"cache key and value must be str, got {type(key).__name__} and {type(value).__name__}"
        )
    if utf8_size(key) > limits.cache_key_max_bytes:
        return None, CACHE_KEY_SIZE_EXCEEDED
    if utf8_size(value) > limits.cache_value_max_bytes:
        return None, CACHE_VALUE_SIZE_EXCEEDED
    expiry, code = _expiry(now_ms, ttl, expires_at, limits)
    if code is not None:
        return None, code
    records, total_bytes = 1, utf8_size(key) + utf8_size(value)
    for other_key, record in cache.items():
        if other_key != key and is_live(record, now_ms):
            records += 1
            total_bytes += utf8_size(other_key) + utf8_size(record["value"])
    if records > limits.cache_records_max_count or total_bytes > limits.cache_total_max_bytes:
        return None, CACHE_SIZE_EXCEEDED
    assert expiry is not None
    return expiry, None


def _expiry(
    now_ms: int, ttl: Any, expires_at: Any, limits: Limits
) -> tuple[int | None, str | None]:
    """The absolute expiry (ms) a write gets, or the error code of its bad lifetime."""
    candidates = []
    if ttl is not None:
        if not _positive_number(ttl) or ttl > limits.cache_max_ttl_ms:
            return None, INVALID_EXPIRY
        candidates.append(now_ms + math.ceil(ttl))
    if expires_at is not None:
        if not _finite_number(expires_at):
            return None, INVALID_EXPIRY
        if expires_at <= now_ms:
            return None, ITEM_ALREADY_EXPIRED
        if expires_at - now_ms > limits.cache_max_ttl_ms:
            return None, INVALID_EXPIRY
        candidates.append(math.ceil(expires_at))
    if not candidates:
        return now_ms + limits.cache_default_ttl_ms, None
    return min(candidates), None


def _finite_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _positive_number(x: Any) -> bool:
    return _finite_number(x) and x > 0


def apply_cache_commands(
    cache: MutableMapping[str, dict[str, Any]],
    commands: Iterable[Any],
    *,
    now_ms: int,
    limits: Limits = DEFAULT_LIMITS,
) -> list[Refusal]:
    """Apply the cache commands among `commands` to `cache`, in order, in place.

    Expired records are dropped first. Each `CacheSet` is re-checked with `check_set` (its
    `expires_at` as the lifetime), each `CacheDelete` needs a live record (CacheKeyDoesNotExist),
    and each action (`command.action`) gets at most `limits.side_effects_max_count` applied commands
    (MaxSideEffectsExceeded). Commands of other types are skipped. Returns the refused commands with
    their error codes, in order; a refused command changes nothing.
    """
    drop_expired(cache, now_ms)
    refused: list[Refusal] = []
    effects: dict[str, int] = {}
    for command in commands:
        if not isinstance(command, (CacheSet, CacheDelete)):
            continue
        code = None
        if effects.get(command.action, 0) >= limits.side_effects_max_count:
            code = MAX_SIDE_EFFECTS_EXCEEDED
        elif isinstance(command, CacheSet):
            expiry, code = check_set(
                cache, command.key, command.value, now_ms=now_ms, expires_at=command.expires_at,
                limits=limits,
            )
            if expiry is not None:
                cache[command.key] = {"value": command.value, "expires_at": expiry}
        elif command.key in cache:
            del cache[command.key]
        else:
            code = CACHE_KEY_DOES_NOT_EXIST
        if code is None:
            effects[command.action] = effects.get(command.action, 0) + 1
        else:
            refused.append(Refusal(command, code))
    return refused


def apply_commands(
    cache: MutableMapping[str, dict[str, Any]],
    commands: Iterable[Any],
    *,
    now_ms: int,
    limits: Limits = DEFAULT_LIMITS,
) -> list[str]:
    """`apply_cache_commands`, returning only the error codes of the refused commands, in order."""
    refused = apply_cache_commands(cache, commands, now_ms=now_ms, limits=limits)
    return [refusal.code for refusal in refused]
