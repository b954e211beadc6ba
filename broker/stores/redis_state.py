"""`CacheStore` and `ResultStore` on Redis, as one class: the commit writes both atomically.

Key layout and the cache's shape (one hash per (tenant, trigger), expiry stored per field):
broker/keys.py.

How the commit stays atomic while the cache limits stay in ONE place: the limits must be re-checked
by `sandbox.cache_rules`, the very code the flow and the tenant's `api.cache` use (a Lua copy would be
a second implementation free to drift). So `commit` reads the result key and the cache hash in one
round trip, applies the commands in Python, and hands the new cache to commit.lua, a compare-and-set
that stores it with the result only if no result exists yet and the cache still holds exactly what
was read; otherwise it applies nothing and the commit starts over from fresh reads. A redelivered job
therefore finds its result already stored and applies nothing; two executions writing one cache
never lose each other's writes. (Two round trips; WATCH/MULTI needed four.) A worker that read the
cache when its job started (`JobStart.cache_seen`, broker/stores/job_start.py) passes that raw hash:
the first compare-and-set then goes without the read, one round trip when nobody wrote meanwhile.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis

from broker import keys
from broker.stores import registry as policy
from broker.stores.cache import CacheRecords
from broker.stores.redis_registry import require_bytes_client
from broker.stores.results import check_commit_args, check_ttl
from sandbox import cache_rules
from sandbox.errors import WorkerError
from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import CacheDelete, CacheSet

log = logging.getLogger(__name__)

COMMIT_SCRIPT = resources.files("broker.stores").joinpath("commit.lua").read_text("utf-8")
COMMIT_ATTEMPTS_MAX = 100  # each retry means another commit changed this cache meanwhile
STORED, CACHE_CHANGED, APPLIED = 0, 1, 2  # commit.lua's answers


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", "surrogatepass")


def _bytes(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def _flat(pairs: dict[bytes, bytes]) -> list[bytes]:
    return [item for pair in pairs.items() for item in pair]


def decode_cache(raw: dict[bytes, bytes], now_ms: int) -> CacheRecords:
    """The records of one cache hash still alive at `now_ms` (ms since the epoch)."""
    records: CacheRecords = {}
    for field, data in raw.items():
        expires_at, value = json.loads(data)
        if expires_at > now_ms:
            records[_text(field)] = {"value": value, "expires_at": expires_at}
    return records


def encode_cache(records: CacheRecords) -> dict[bytes, bytes]:
    """Hash fields for `records`: the tenant's key as the field, [expires_at, value] as JSON."""
    return {
        _bytes(key): _bytes(json.dumps([int(rec["expires_at"]), rec["value"]]))
        for key, rec in records.items()
    }


class RedisStateStore:
    """The cache and result stores on Redis; every key under f"{prefix}:"."""

    def __init__(self, client: redis.Redis, prefix: str, limits: Limits = DEFAULT_LIMITS) -> None:
        require_bytes_client(client)
        self.client = client
        self.prefix = prefix
        self.limits = limits
        self._commit_script = client.register_script(COMMIT_SCRIPT)

    def __repr__(self) -> str:
        return f"RedisStateStore(prefix={self.prefix!r})"

    def snapshot(self, tenant: str, trigger: str, *, now_ms: int) -> CacheRecords:
        """See `CacheStore.snapshot`."""
        policy.check_name(tenant, "tenant")
        policy.check_name(trigger, "trigger")
        return decode_cache(self.client.hgetall(keys.cache(self.prefix, tenant, trigger)), now_ms)

    def get(self, tenant: str, execution_id: str) -> str | None:
        """See `ResultStore.get`."""
        policy.check_name(tenant, "tenant")
        policy.check_id(execution_id, "execution_id")
        raw = self.client.get(keys.result(self.prefix, tenant, execution_id))
        return None if raw is None else _text(raw)

    def commit(
        self, tenant: str, trigger: str, execution_id: str, result_json: str,
        cache_commands: Sequence[CacheSet | CacheDelete], *, now_ms: int, result_ttl_seconds: int,
        cache_seen: Any = None,
    ) -> str:
        """See `ResultStore.commit`; `cache_seen` is the raw hash (field -> bytes) read at the start
        of the job, tried first as the compare-and-set's expected cache."""
        policy.check_name(tenant, "tenant")
        policy.check_name(trigger, "trigger")
        policy.check_id(execution_id, "execution_id")
        commands = check_commit_args(result_json, cache_commands, now_ms, result_ttl_seconds)
        k_result = keys.result(self.prefix, tenant, execution_id)
        if not commands:
            # One command: store unless already stored, and return what was there (SET NX GET).
            old = self.client.set(k_result, _bytes(result_json), ex=result_ttl_seconds, nx=True,
                                  get=True)
            return result_json if old is None else _text(old)
        k_cache = keys.cache(self.prefix, tenant, trigger)
        presumed = cache_seen if _is_raw_hash(cache_seen) else None
        for _ in range(COMMIT_ATTEMPTS_MAX):
            if presumed is not None:
                # The script still checks that no result is stored and the cache is unchanged.
                seen, presumed = presumed, None
            else:
                reads = self.client.pipeline(transaction=False)
                reads.get(k_result)
                reads.hgetall(k_cache)
                old, seen = reads.execute()
                if old is not None:
                    # SECURITY: idempotence. The job already committed; applying its cache commands
                    # again would double every counter a redelivered job increments.
                    return _text(old)
            cache = decode_cache(seen, now_ms)
            refused = cache_rules.apply_commands(cache, commands, now_ms=now_ms, limits=self.limits)
            new = encode_cache(cache)
            args: list[bytes | int] = [
                _bytes(result_json), result_ttl_seconds,
                len(seen), *_flat(seen), len(new), *_flat(new),
            ]
            if cache:
                # The hash lives as long as its longest-lived record (no per-field expiry in 7.0).
                args.append(max(int(r["expires_at"]) for r in cache.values()))
            answer = self._commit_script(keys=[k_result, k_cache], args=args)
            if answer[0] == STORED:
                return _text(answer[1])  # a concurrent delivery of this job committed first
            if answer[0] == APPLIED:
                if refused:
                    log.warning("commit %s/%s: refused cache commands %s", tenant, execution_id,
                                refused)
                return result_json
        raise WorkerError(f"commit of {execution_id!r}: the cache of tenant {tenant!r} kept changing "
                          f"({COMMIT_ATTEMPTS_MAX} attempts)")

    def consume_resume(
        self, tenant: str, resume_id: str, *, execution_id: str, ttl_seconds: int
    ) -> bool:
        """See `ResultStore.consume_resume`: one SET NX GET (the first execution id stays)."""
        policy.check_name(tenant, "tenant")
        policy.check_id(resume_id, "resume_id")
        policy.check_id(execution_id, "execution_id")
        check_ttl(ttl_seconds, "ttl_seconds")
        owner = _bytes(execution_id)
        old = self.client.set(keys.resume(self.prefix, tenant, resume_id), owner, ex=ttl_seconds,
                              nx=True, get=True)
        return old is None or old == owner

    def count_delivery(self, tenant: str, execution_id: str, *, ttl_seconds: int) -> int:
        """See `ResultStore.count_delivery`: INCR and EXPIRE in one transaction."""
        policy.check_name(tenant, "tenant")
        policy.check_id(execution_id, "execution_id")
        check_ttl(ttl_seconds, "ttl_seconds")
        key = keys.delivery(self.prefix, tenant, execution_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.incr(key)
        pipe.expire(key, ttl_seconds)
        count, _ = pipe.execute()
        return int(count)


def _is_raw_hash(value: Any) -> bool:
    """True for what HGETALL answers on a bytes client: a dict of bytes to bytes."""
    return isinstance(value, dict) and all(
        isinstance(k, bytes) and isinstance(v, bytes) for k, v in value.items())
