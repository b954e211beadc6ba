"""What a worker reads before it runs a job, in ONE round trip on Redis.

A job needs three reads that do not depend on each other: is a result already committed for this
execution id (then nothing runs), what is bound to the trigger (skipped for a resume: its token names
the actions), and the (tenant, trigger) cache snapshot. On Redis they go out as one MULTI/EXEC (every
key is in the tenant's hash slot), so they are also one consistent point in time; on the in-memory
stores they are three plain calls.

The binding errors (UnknownTenant, NothingBound) are kept, not raised, because a job whose result is
already stored must get that result even if its tenant unbound everything since.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from broker import keys
from broker.stores import registry as policy
from broker.stores.cache import CacheRecords
from broker.stores.redis_registry import RedisActionRegistry, parse_bindings
from broker.stores.redis_state import RedisStateStore, decode_cache
from broker.stores.registry import ActionRegistry, Binding
from broker.stores.results import ResultStore
from sandbox.errors import ActionRunnerError, NothingBound, UnknownTenant


@dataclass(frozen=True)
class JobStart:
    """The reads a job starts from. `stored`: the committed result JSON, or None. `cache`: the live
    records. `cache_seen`: an opaque token for `ResultStore.commit(cache_seen=...)`."""

    stored: str | None
    cache: CacheRecords
    bindings: list[Binding] | None = None
    bindings_error: ActionRunnerError | None = None
    cache_seen: Any = None

    def bound(self) -> list[Binding]:
        """What is bound to the trigger, in order. Raises UnknownTenant / NothingBound as
        `ActionRegistry.bound`, or ValueError when the bindings were not read."""
        if self.bindings_error is not None:
            raise self.bindings_error
        if self.bindings is None:
            raise ValueError("the bindings were not read for this job")
        return list(self.bindings)


def read_job_start(
    registry: ActionRegistry, cache: Any, results: ResultStore, tenant: str, trigger: str,
    execution_id: str, *, now_ms: int, with_bindings: bool,
) -> JobStart:
    """The stored result, the cache snapshot at `now_ms` (ms since the epoch) and, when
    `with_bindings`, the trigger's bindings of (tenant, execution_id). One round trip when every
    store is on the same Redis client. Raises InvalidInput for a malformed tenant, trigger or id."""
    policy.check_name(tenant, "tenant")
    policy.check_name(trigger, "trigger")
    policy.check_id(execution_id, "execution_id")
    if (isinstance(registry, RedisActionRegistry) and isinstance(results, RedisStateStore)
            and cache is results and registry.client is results.client
            and registry.prefix == results.prefix):
        return _from_redis(results, tenant, trigger, execution_id, now_ms, with_bindings)
    stored = results.get(tenant, execution_id)
    if stored is not None:
        return JobStart(stored=stored, cache={})
    records = cache.snapshot(tenant, trigger, now_ms=now_ms)
    if not with_bindings:
        return JobStart(stored=None, cache=records)
    try:
        return JobStart(stored=None, cache=records, bindings=registry.bound(tenant, trigger))
    except (UnknownTenant, NothingBound) as exc:
        return JobStart(stored=None, cache=records, bindings_error=exc)


def _from_redis(
    store: RedisStateStore, tenant: str, trigger: str, execution_id: str, now_ms: int,
    with_bindings: bool,
) -> JobStart:
    prefix = store.prefix
    pipe = store.client.pipeline(transaction=True)
    pipe.get(keys.result(prefix, tenant, execution_id))
    pipe.hgetall(keys.cache(prefix, tenant, trigger))
    if with_bindings:
        pipe.exists(keys.actions(prefix, tenant))
        pipe.hget(keys.bindings(prefix, tenant), trigger)
    answers = pipe.execute()
    stored_raw, cache_raw = answers[0], answers[1]
    if stored_raw is not None:
        return JobStart(stored=stored_raw.decode("utf-8", "surrogatepass"), cache={})
    records = decode_cache(cache_raw, now_ms)
    if not with_bindings:
        return JobStart(stored=None, cache=records, cache_seen=cache_raw)
    exists, bindings_raw = answers[2], answers[3]
    error: ActionRunnerError | None = None
    bindings = parse_bindings(bindings_raw)
    if not exists:
        error = UnknownTenant(f"tenant {tenant!r} has not uploaded any action")
    elif not bindings:
        error = NothingBound(f"tenant {tenant!r} has no action bound to {trigger!r}")
    return JobStart(stored=None, cache=records, bindings=None if error else bindings,
                    bindings_error=error, cache_seen=cache_raw)
