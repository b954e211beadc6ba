"""`api.cache`: the trigger's short-lived key/value cache as one action sees it (SPEC section 3).

Reads see the cache the action was given plus this action's own writes. Writes are checked with
`sandbox.cache_rules` (the same rules the trusted side re-checks) and answered with a result object,
never an exception; only misuse (a key or value that is not a string) raises ApiError.
"""

from __future__ import annotations

from typing import Any, ClassVar

from sandbox import cache_rules
from sandbox.api_base import Namespace, require_str
from sandbox.models import CacheDelete, CacheSet
from sandbox.visible import TenantObject


class CacheRecordView(TenantObject):
    """A cached record: `.value` (str) and `.expires_at` (ms since the epoch)."""

    __slots__ = ("_value", "_expires_at")
    _exports: ClassVar[frozenset[str]] = frozenset({"value", "expires_at"})

    def __init__(self, value: str, expires_at: int) -> None:
        self._value = value
        self._expires_at = expires_at

    @property
    def value(self) -> str:
        return self._value

    @property
    def expires_at(self) -> int:
        return self._expires_at

    def __repr__(self) -> str:
        return f"CacheRecord(value={self._value!r}, expires_at={self._expires_at})"


class CacheResult(TenantObject):
    """The answer to a cache write: `.type` is "success" (with `.record` for a set) or "error" (with
    `.code`, one of the SPEC cache error codes)."""

    __slots__ = ("_type", "_record", "_code")
    _exports: ClassVar[frozenset[str]] = frozenset({"type", "record", "code"})

    def __init__(
        self, kind: str, record: CacheRecordView | None = None, code: str | None = None
    ) -> None:
        self._type = kind
        self._record = record
        self._code = code

    @property
    def type(self) -> str:
        return self._type

    @property
    def record(self) -> CacheRecordView | None:
        return self._record

    @property
    def code(self) -> str | None:
        return self._code

    def __repr__(self) -> str:
        detail = f"code={self._code!r}" if self._code else f"record={self._record!r}"
        return f"CacheResult(type={self._type!r}, {detail})"


def _error(code: str) -> CacheResult:
    return CacheResult("error", code=code)


class Cache(Namespace):
    """`api.cache`: get, set and delete records of the (tenant, trigger) cache."""

    __slots__ = ()
    _name = "api.cache"
    _exports: ClassVar[frozenset[str]] = frozenset({"get", "set", "delete"})

    def get(self, key: Any) -> CacheRecordView | None:
        """The live record at `key` (including this action's own writes), or None.

        Raises ApiError when `key` is not a non-empty string.
        """
        key = require_str(key, "api.cache.get: key")
        record = self._state.cache.get(key)
        if record is None or not cache_rules.is_live(record, self._state.request.now_ms):
            return None
        return CacheRecordView(record["value"], record["expires_at"])

    def set(self, key: Any, value: Any, ttl: Any = None, expires_at: Any = None) -> CacheResult:
        """Store `value` at `key` for `ttl` ms and/or until `expires_at` (ms since the epoch; the
        earlier wins; default 15 minutes). Returns a success result with `.record`, or an error
        result with `.code` (see `sandbox.cache_rules.check_set`, plus MaxSideEffectsExceeded).

        Raises ApiError when `key` is not a non-empty string or `value` is not a string.
        """
        key = require_str(key, "api.cache.set: key")
        value = require_str(value, "api.cache.set: value", empty_ok=True)
        state = self._state
        if state.side_effects >= state.request.limits.side_effects_max_count:
            return _error(cache_rules.MAX_SIDE_EFFECTS_EXCEEDED)
        expiry, code = cache_rules.check_set(
            state.cache, key, value, now_ms=state.request.now_ms, ttl=ttl, expires_at=expires_at,
            limits=state.request.limits,
        )
        if code is not None:
            return _error(code)
        assert expiry is not None
        state.cache[key] = {"value": value, "expires_at": expiry}
        state.side_effects += 1
        state.issue(CacheSet(action=state.request.action, key=key, value=value, expires_at=expiry))
        return CacheResult("success", record=CacheRecordView(value, expiry))

    def delete(self, key: Any) -> CacheResult:
        """Delete the live record at `key`: a success result, or an error result with `.code`
        CacheKeyDoesNotExist (no live record) or MaxSideEffectsExceeded.

        Raises ApiError when `key` is not a non-empty string.
        """
        key = require_str(key, "api.cache.delete: key")
        state = self._state
        if state.side_effects >= state.request.limits.side_effects_max_count:
            return _error(cache_rules.MAX_SIDE_EFFECTS_EXCEEDED)
        record = state.cache.pop(key, None)
        if record is None or not cache_rules.is_live(record, state.request.now_ms):
            return _error(cache_rules.CACHE_KEY_DOES_NOT_EXIST)
        state.side_effects += 1
        state.issue(CacheDelete(action=state.request.action, key=key))
        return CacheResult("success")

