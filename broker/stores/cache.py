"""The per-(tenant, trigger) cache store: what `api.cache` starts from in each execution.

Writes happen only through `ResultStore.commit` (atomically with the execution's result), so this
interface is read-only. Records are `{"value": str, "expires_at": ms since the epoch}`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

CacheRecords = dict[str, dict[str, Any]]


class CacheStore(Protocol):
    """Read side of the cache: one namespace per (tenant, trigger) that no key can leave."""

    def snapshot(self, tenant: str, trigger: str, *, now_ms: int) -> CacheRecords:
        """A fresh copy of the (tenant, trigger) cache as {key: {"value", "expires_at"}}, records
        whose `expires_at` (ms) is at or before `now_ms` omitted. Raises InvalidInput for a
        malformed tenant or trigger."""
        ...


def live_records(records: Mapping[str, Mapping[str, Any]], now_ms: int) -> CacheRecords:
    """A copy of `records` without those expired at `now_ms` (ms since the epoch)."""
    return {
        key: {"value": rec["value"], "expires_at": rec["expires_at"]}
        for key, rec in records.items()
        if rec["expires_at"] > now_ms
    }
