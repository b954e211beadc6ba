"""A worker process's cache of loaded action versions (source + secrets), in front of the registry.

Action versions are immutable (a number is never reused, a version's source and secrets never
change), so a version loaded once can serve every later job of this process without a Redis round
trip. The cache is bounded twice: at most `max_entries` versions (least recently used dropped
first) and each for at most `max_age_seconds`, so a version the registry pruned stops being served
soon after, and secrets do not linger in memory indefinitely.

Secrets stay in the trusted worker's memory only: nothing here logs or prints them (`repr` counts
entries, `StoredAction.__repr__` masks values).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from broker.stores.registry import ActionRegistry, StoredAction

DEFAULT_MAX_ENTRIES = 256
DEFAULT_MAX_AGE_SECONDS = 300.0


class LoadedActions:
    """`registry.load` with a bounded LRU by (tenant, name, version) in front of it."""

    def __init__(
        self, registry: ActionRegistry, *, max_entries: int = DEFAULT_MAX_ENTRIES,
        max_age_seconds: float = DEFAULT_MAX_AGE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1 or max_age_seconds <= 0:
            raise ValueError("max_entries must be >= 1 and max_age_seconds > 0")
        self.registry = registry
        self.max_entries = max_entries
        self.max_age_seconds = max_age_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[tuple[str, str, int], tuple[StoredAction, float]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def __repr__(self) -> str:
        # SECURITY: never the entries themselves: they hold tenants' secrets.
        return f"LoadedActions({len(self._entries)}/{self.max_entries} versions)"

    def __len__(self) -> int:
        return len(self._entries)

    def load(self, tenant: str, name: str, version: int) -> StoredAction:
        """One version with its source and secrets, from memory when loaded within
        `max_age_seconds`, else from the registry. Raises as `ActionRegistry.load` (UnknownAction,
        InvalidInput); failures are not cached."""
        # SECURITY: the key is built from the job's tenant (validated by the registry on a miss, and
        # a hit can only be a key a validated miss stored), so one tenant never gets another's.
        key = (tenant, name, version)
        now = self._clock()
        with self._lock:
            found = self._entries.get(key)
            if found is not None and now - found[1] < self.max_age_seconds:
                self._entries.move_to_end(key)
                self.hits += 1
                return found[0]
        loaded = self.registry.load(tenant, name, version)
        if (loaded.tenant, loaded.name, loaded.version) != key:
            raise ValueError("the registry answered another action version than asked for")
        with self._lock:
            self.misses += 1
            self._entries[key] = (loaded, now)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return loaded

    def clear(self) -> None:
        """Forget every loaded version."""
        with self._lock:
            self._entries.clear()
