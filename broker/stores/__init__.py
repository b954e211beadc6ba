"""The stores: action registry, per-(tenant, trigger) cache, committed results and resume ids.

Each has a small interface (`ActionRegistry`, `CacheStore`, `ResultStore`), an in-memory
implementation for the embedded mode and a Redis one; `open_stores` picks by URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker.stores.cache import CacheRecords, CacheStore
from broker.stores.job_start import JobStart, read_job_start
from broker.stores.loaded import LoadedActions
from broker.stores.memory import MemoryActionRegistry, MemoryStateStore
from broker.stores.redis_registry import RedisActionRegistry
from broker.stores.redis_state import RedisStateStore
from broker.stores.registry import ActionRegistry, ActionVersion, Binding, StoredAction
from broker.stores.results import ResultStore
from sandbox.limits import DEFAULT_LIMITS, Limits

__all__ = [
    "ActionRegistry", "ActionVersion", "Binding", "CacheRecords", "CacheStore", "JobStart",
    "LoadedActions", "MemoryActionRegistry", "MemoryStateStore", "RedisActionRegistry", "RedisStateStore",
    "ResultStore", "Stores", "StoredAction", "open_stores",
]


@dataclass(frozen=True)
class Stores:
    """The three stores of one deployment. `cache` and `results` may be the same object."""

    registry: ActionRegistry
    cache: CacheStore
    results: ResultStore
    client: Any = None  # the redis.Redis client when Redis-backed, else None

    def start_job(
        self, tenant: str, trigger: str, execution_id: str, *, now_ms: int, with_bindings: bool
    ) -> JobStart:
        """The reads a job starts from (stored result, cache, bindings), one round trip on Redis;
        see broker/stores/job_start.py. Raises InvalidInput for malformed names."""
        return read_job_start(self.registry, self.cache, self.results, tenant, trigger,
                              execution_id, now_ms=now_ms, with_bindings=with_bindings)

    def close(self) -> None:
        """Release the Redis connections, if any (the stores must not be used afterwards)."""
        if self.client is not None:
            self.client.close()


def open_stores(
    url: str | None, *, prefix: str = "actionrunner", limits: Limits = DEFAULT_LIMITS
) -> Stores:
    """Redis-backed stores with every key under f"{prefix}:" when `url` is a redis:// URL; in-memory
    stores (this process only) when `url` is None. Connecting is lazy: a Redis that does not answer
    raises redis.ConnectionError on first use."""
    if url is None:
        state = MemoryStateStore(limits)
        return Stores(MemoryActionRegistry(limits), state, state)
    import redis

    client = redis.Redis.from_url(url, decode_responses=False)
    shared = RedisStateStore(client, prefix, limits)
    return Stores(RedisActionRegistry(client, prefix, limits), shared, shared, client)
