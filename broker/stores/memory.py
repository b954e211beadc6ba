"""In-process stores for the embedded mode (no Redis): plain dicts behind one lock each.

They implement the same contracts as the Redis stores (tests/test_stores_contract.py runs one suite
on both); nothing survives the process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from broker.stores import registry as policy
from broker.stores.cache import CacheRecords, live_records
from broker.stores.registry import ActionVersion, Binding, StoredAction, wall_ms
from broker.stores.results import check_commit_args, check_ttl
from sandbox import cache_rules
from sandbox.errors import NothingBound, UnknownAction, UnknownTenant
from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import CacheDelete, CacheSet

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Version:
    meta: ActionVersion
    source: str
    secrets: dict[str, str]


class MemoryActionRegistry:
    """`ActionRegistry` in process memory."""

    def __init__(
        self, limits: Limits = DEFAULT_LIMITS, *, clock_ms: Callable[[], int] = wall_ms
    ) -> None:
        self.limits = limits
        self._clock_ms = clock_ms
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], int] = {}
        self._kept: dict[tuple[str, str], dict[int, _Version]] = {}
        self._bindings: dict[str, dict[str, list[Binding]]] = {}
        self._tenants: set[str] = set()

    def __repr__(self) -> str:
        return f"MemoryActionRegistry({len(self._last)} actions)"

    def add_version(
        self, tenant: str, name: str, source: str, secrets: Mapping[str, str]
    ) -> ActionVersion:
        """See `ActionRegistry.add_version`."""
        secrets_copy, digest = policy.check_upload(tenant, name, source, secrets, self.limits)
        with self._lock:
            kept = self._kept.get((tenant, name), {})
            bound = policy.bound_versions(self._bindings.get(tenant, {}).values(), name)
            dropped = policy.versions_to_drop(kept, bound, name, self.limits)
            self._kept[(tenant, name)] = kept
            self._tenants.add(tenant)
            version = self._last.get((tenant, name), 0) + 1
            meta = ActionVersion(tenant, name, version, digest, self._clock_ms())
            for old in dropped:
                del kept[old]
            kept[version] = _Version(meta, source, secrets_copy)
            self._last[(tenant, name)] = version
            return meta

    def versions(self, tenant: str, name: str) -> list[ActionVersion]:
        """See `ActionRegistry.versions`."""
        policy.check_name(tenant, "tenant")
        policy.check_name(name, "name")
        with self._lock:
            kept = self._kept.get((tenant, name))
            if not kept:
                raise UnknownAction(f"tenant {tenant!r} has no action {name!r}")
            return [kept[v].meta for v in sorted(kept)]

    def list_actions(self, tenant: str) -> list[ActionVersion]:
        """See `ActionRegistry.list_actions`."""
        policy.check_name(tenant, "tenant")
        with self._lock:
            return [
                self._kept[key][last].meta
                for key, last in sorted(self._last.items())
                if key[0] == tenant
            ]

    def load(self, tenant: str, name: str, version: int) -> StoredAction:
        """See `ActionRegistry.load`."""
        policy.check_name(tenant, "tenant")
        policy.check_name(name, "name")
        policy.check_version(version)
        with self._lock:
            found = self._kept.get((tenant, name), {}).get(version)
        if found is None:
            raise policy.unknown_version(tenant, name, version)
        return StoredAction(tenant, name, version, found.source, dict(found.secrets),
                            found.meta.source_hash)

    def bind(self, tenant: str, trigger: str, bindings: Sequence[Binding]) -> list[Binding]:
        """See `ActionRegistry.bind`."""
        policy.check_name(tenant, "tenant")
        policy.check_name(trigger, "trigger")
        checked = policy.check_bindings(bindings, self.limits)
        with self._lock:
            for b in checked:
                if b.version not in self._kept.get((tenant, b.name), {}):
                    raise policy.unknown_version(tenant, b.name, b.version)
            by_trigger = self._bindings.setdefault(tenant, {})
            if checked:
                by_trigger[trigger] = checked
            else:
                by_trigger.pop(trigger, None)
        return list(checked)

    def bound(self, tenant: str, trigger: str) -> list[Binding]:
        """See `ActionRegistry.bound`."""
        policy.check_name(tenant, "tenant")
        policy.check_name(trigger, "trigger")
        with self._lock:
            if tenant not in self._tenants:
                raise UnknownTenant(f"tenant {tenant!r} has not uploaded any action")
            found = self._bindings.get(tenant, {}).get(trigger)
        if not found:
            raise NothingBound(f"tenant {tenant!r} has no action bound to {trigger!r}")
        return list(found)

    def tenant_exists(self, tenant: str) -> bool:
        """See `ActionRegistry.tenant_exists`."""
        if not isinstance(tenant, str) or policy.NAME_PATTERN.fullmatch(tenant) is None:
            return False
        with self._lock:
            return tenant in self._tenants


class MemoryStateStore:
    """`CacheStore` and `ResultStore` in process memory (one object: commit writes both).

    Results and resume ids expire by the wall clock (`clock_s`, seconds); expired entries are swept
    on writes so memory stays bounded by what is live.
    """

    def __init__(
        self, limits: Limits = DEFAULT_LIMITS, *, clock_s: Callable[[], float] = time.time
    ) -> None:
        self.limits = limits
        self._clock_s = clock_s
        self._lock = threading.Lock()
        self._caches: dict[tuple[str, str], CacheRecords] = {}
        self._results: dict[tuple[str, str], tuple[str, float]] = {}
        self._resumes: dict[tuple[str, str], tuple[str, float]] = {}  # -> (owner, until)
        self._deliveries: dict[tuple[str, str], tuple[int, float]] = {}  # -> (count, until)
        self._next_sweep_s = 0.0

    def __repr__(self) -> str:
        return f"MemoryStateStore({len(self._caches)} caches, {len(self._results)} results)"

    def snapshot(self, tenant: str, trigger: str, *, now_ms: int) -> CacheRecords:
        """See `CacheStore.snapshot`."""
        policy.check_name(tenant, "tenant")
        policy.check_name(trigger, "trigger")
        with self._lock:
            return live_records(self._caches.get((tenant, trigger), {}), now_ms)

    def get(self, tenant: str, execution_id: str) -> str | None:
        """See `ResultStore.get`."""
        policy.check_name(tenant, "tenant")
        policy.check_id(execution_id, "execution_id")
        with self._lock:
            found = self._results.get((tenant, execution_id))
            if found is None or found[1] <= self._clock_s():
                return None
            return found[0]

    def commit(
        self, tenant: str, trigger: str, execution_id: str, result_json: str,
        cache_commands: Sequence[CacheSet | CacheDelete], *, now_ms: int, result_ttl_seconds: int,
        cache_seen: Any = None,
    ) -> str:
        """See `ResultStore.commit` (`cache_seen` is not needed here: one lock covers it all)."""
        policy.check_name(tenant, "tenant")
        policy.check_name(trigger, "trigger")
        policy.check_id(execution_id, "execution_id")
        commands = check_commit_args(result_json, cache_commands, now_ms, result_ttl_seconds)
        with self._lock:
            now_s = self._clock_s()
            self._sweep(now_s)
            found = self._results.get((tenant, execution_id))
            if found is not None and found[1] > now_s:
                return found[0]
            if commands:
                cache = live_records(self._caches.get((tenant, trigger), {}), now_ms)
                refused = cache_rules.apply_commands(cache, commands, now_ms=now_ms,
                                                     limits=self.limits)
                if refused:
                    log.warning("commit %s/%s: refused cache commands %s", tenant, execution_id,
                                refused)
                self._caches[(tenant, trigger)] = cache
            self._results[(tenant, execution_id)] = (result_json, now_s + result_ttl_seconds)
            return result_json

    def consume_resume(
        self, tenant: str, resume_id: str, *, execution_id: str, ttl_seconds: int
    ) -> bool:
        """See `ResultStore.consume_resume`."""
        policy.check_name(tenant, "tenant")
        policy.check_id(resume_id, "resume_id")
        policy.check_id(execution_id, "execution_id")
        check_ttl(ttl_seconds, "ttl_seconds")
        with self._lock:
            now_s = self._clock_s()
            self._sweep(now_s)
            found = self._resumes.get((tenant, resume_id))
            if found is not None and found[1] > now_s:
                return found[0] == execution_id
            self._resumes[(tenant, resume_id)] = (execution_id, now_s + ttl_seconds)
            return True

    def count_delivery(self, tenant: str, execution_id: str, *, ttl_seconds: int) -> int:
        """See `ResultStore.count_delivery`."""
        policy.check_name(tenant, "tenant")
        policy.check_id(execution_id, "execution_id")
        check_ttl(ttl_seconds, "ttl_seconds")
        with self._lock:
            now_s = self._clock_s()
            self._sweep(now_s)
            found = self._deliveries.get((tenant, execution_id))
            count = found[0] + 1 if found is not None and found[1] > now_s else 1
            self._deliveries[(tenant, execution_id)] = (count, now_s + ttl_seconds)
            return count

    def _sweep(self, now_s: float) -> None:
        """Drop expired results, resume ids and delivery counts, at most once a second (caller holds
        the lock)."""
        if now_s < self._next_sweep_s:
            return
        self._next_sweep_s = now_s + 1.0
        self._results = {k: v for k, v in self._results.items() if v[1] > now_s}
        self._resumes = {k: v for k, v in self._resumes.items() if v[1] > now_s}
        self._deliveries = {k: v for k, v in self._deliveries.items() if v[1] > now_s}
