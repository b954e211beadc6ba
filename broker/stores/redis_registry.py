"""`ActionRegistry` on Redis. Key layout: broker/keys.py.

Each read-modify-write (add_version's numbering and pruning, bind's existence check) runs as one
WATCH/MULTI transaction, retried on conflict, so a version that is being bound is never pruned and
a version number is never handed out twice. Every write is a plain hash command, which append-only
persistence records: nothing uploaded is lost across a Redis restart.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import redis

from broker import keys
from broker.stores import registry as policy
from broker.stores.registry import ActionVersion, Binding, StoredAction, wall_ms
from sandbox.errors import NothingBound, UnknownAction, UnknownTenant
from sandbox.limits import DEFAULT_LIMITS, Limits


def require_bytes_client(client: redis.Redis) -> None:
    """Raise ValueError unless `client` returns bytes (decode_responses=False): the stores decode
    themselves, losslessly (tenants' cache keys may hold any code point)."""
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValueError("the stores need a redis client created with decode_responses=False")


def parse_bindings(raw: bytes | None) -> list[Binding]:
    """The bindings stored in one field of the bindings hash ([] for none)."""
    return [Binding(str(name), int(version)) for name, version in json.loads(raw)] if raw else []


class RedisActionRegistry:
    """`ActionRegistry` on Redis; every key under f"{prefix}:"."""

    def __init__(
        self, client: redis.Redis, prefix: str, limits: Limits = DEFAULT_LIMITS, *,
        clock_ms: Callable[[], int] = wall_ms,
    ) -> None:
        require_bytes_client(client)
        self.client = client
        self.prefix = prefix
        self.limits = limits
        self._clock_ms = clock_ms

    def __repr__(self) -> str:
        return f"RedisActionRegistry(prefix={self.prefix!r})"

    def add_version(
        self, tenant: str, name: str, source: str, secrets: Mapping[str, str]
    ) -> ActionVersion:
        """See `ActionRegistry.add_version`."""
        secrets_copy, digest = policy.check_upload(tenant, name, source, secrets, self.limits)
        k_actions = keys.actions(self.prefix, tenant)
        k_meta = keys.action_meta(self.prefix, tenant, name)
        k_src = keys.action_source(self.prefix, tenant, name)
        k_bindings = keys.bindings(self.prefix, tenant)

        def attempt(pipe: Any) -> ActionVersion:
            last = pipe.hget(k_actions, name)
            kept = [int(v) for v in pipe.hkeys(k_meta)]
            bound = policy.bound_versions(map(parse_bindings, pipe.hvals(k_bindings)), name)
            dropped = policy.versions_to_drop(kept, bound, name, self.limits)
            meta = ActionVersion(tenant, name, int(last or 0) + 1, digest, self._clock_ms())
            pipe.multi()
            pipe.hset(k_actions, name, meta.version)
            pipe.hset(k_meta, meta.version, json.dumps(
                {"source_hash": digest, "created_at_ms": meta.created_at_ms}))
            pipe.hset(k_src, meta.version, json.dumps({"source": source, "secrets": secrets_copy}))
            if dropped:
                pipe.hdel(k_meta, *dropped)
                pipe.hdel(k_src, *dropped)
            return meta

        result: ActionVersion = self.client.transaction(
            attempt, k_actions, k_meta, k_bindings, value_from_callable=True)
        return result

    def versions(self, tenant: str, name: str) -> list[ActionVersion]:
        """See `ActionRegistry.versions`."""
        policy.check_name(tenant, "tenant")
        policy.check_name(name, "name")
        raw = self.client.hgetall(keys.action_meta(self.prefix, tenant, name))
        if not raw:
            raise UnknownAction(f"tenant {tenant!r} has no action {name!r}")
        found = [self._meta(tenant, name, int(v), data) for v, data in raw.items()]
        return sorted(found, key=lambda m: m.version)

    def list_actions(self, tenant: str) -> list[ActionVersion]:
        """See `ActionRegistry.list_actions`."""
        policy.check_name(tenant, "tenant")
        latest = sorted(
            (n.decode(), int(v))
            for n, v in self.client.hgetall(keys.actions(self.prefix, tenant)).items()
        )
        pipe = self.client.pipeline(transaction=False)
        for name, version in latest:
            pipe.hget(keys.action_meta(self.prefix, tenant, name), version)
        return [
            self._meta(tenant, name, version, data)
            for (name, version), data in zip(latest, pipe.execute())
            if data is not None
        ]

    def load(self, tenant: str, name: str, version: int) -> StoredAction:
        """See `ActionRegistry.load`."""
        policy.check_name(tenant, "tenant")
        policy.check_name(name, "name")
        policy.check_version(version)
        pipe = self.client.pipeline(transaction=True)
        pipe.hget(keys.action_meta(self.prefix, tenant, name), version)
        pipe.hget(keys.action_source(self.prefix, tenant, name), version)
        meta_raw, src_raw = pipe.execute()
        if meta_raw is None or src_raw is None:
            raise policy.unknown_version(tenant, name, version)
        meta, src = json.loads(meta_raw), json.loads(src_raw)
        return StoredAction(tenant, name, version, src["source"], dict(src["secrets"]),
                            meta["source_hash"])

    def bind(self, tenant: str, trigger: str, bindings: Sequence[Binding]) -> list[Binding]:
        """See `ActionRegistry.bind`."""
        policy.check_name(tenant, "tenant")
        policy.check_name(trigger, "trigger")
        checked = policy.check_bindings(bindings, self.limits)
        k_bindings = keys.bindings(self.prefix, tenant)
        meta_keys = {b.name: keys.action_meta(self.prefix, tenant, b.name) for b in checked}

        def attempt(pipe: Any) -> None:
            for b in checked:
                if not pipe.hexists(meta_keys[b.name], b.version):
                    raise policy.unknown_version(tenant, b.name, b.version)
            pipe.multi()
            if checked:
                pipe.hset(k_bindings, trigger, json.dumps([[b.name, b.version] for b in checked]))
            else:
                pipe.hdel(k_bindings, trigger)

        # Watching the versions' metadata: a concurrent add_version that prunes one of them makes
        # this transaction retry and then fail with UnknownAction, instead of binding a ghost.
        self.client.transaction(attempt, *meta_keys.values())
        return list(checked)

    def bound(self, tenant: str, trigger: str) -> list[Binding]:
        """See `ActionRegistry.bound`."""
        policy.check_name(tenant, "tenant")
        policy.check_name(trigger, "trigger")
        pipe = self.client.pipeline(transaction=True)
        pipe.exists(keys.actions(self.prefix, tenant))
        pipe.hget(keys.bindings(self.prefix, tenant), trigger)
        exists, raw = pipe.execute()
        if not exists:
            raise UnknownTenant(f"tenant {tenant!r} has not uploaded any action")
        found = parse_bindings(raw)
        if not found:
            raise NothingBound(f"tenant {tenant!r} has no action bound to {trigger!r}")
        return found

    def tenant_exists(self, tenant: str) -> bool:
        """See `ActionRegistry.tenant_exists`."""
        if not isinstance(tenant, str) or policy.NAME_PATTERN.fullmatch(tenant) is None:
            return False
        return bool(self.client.exists(keys.actions(self.prefix, tenant)))

    @staticmethod
    def _meta(tenant: str, name: str, version: int, raw: bytes) -> ActionVersion:
        data = json.loads(raw)
        return ActionVersion(tenant, name, version, str(data["source_hash"]),
                             int(data["created_at_ms"]))
