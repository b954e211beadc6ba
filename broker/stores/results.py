"""The result store: committed results (idempotent per execution id), single-use resume ids (owned by
the execution that consumed them) and delivery counts (bounded redelivery of a job)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from sandbox.errors import InvalidInput
from sandbox.models import CacheDelete, CacheSet


class ResultStore(Protocol):
    """Where a job's outcome is committed exactly once."""

    def get(self, tenant: str, execution_id: str) -> str | None:
        """The result JSON committed for (tenant, execution_id), or None (never run, or expired)."""
        ...

    def commit(
        self, tenant: str, trigger: str, execution_id: str, result_json: str,
        cache_commands: Sequence[CacheSet | CacheDelete], *, now_ms: int, result_ttl_seconds: int,
        cache_seen: Any = None,
    ) -> str:
        """Atomically and idempotently: when a result is already stored for (tenant, execution_id),
        return it and apply nothing; else apply `cache_commands` in order to the (tenant, trigger)
        cache (re-checking every SPEC cache limit with sandbox.cache_rules; refused commands are
        skipped and logged), store `result_json` for `result_ttl_seconds` and return it.
        `cache_seen`: the `JobStart.cache_seen` the job started from, or None; a backend may use it
        to skip re-reading a cache that did not change (same outcome either way: one round trip
        instead of two on Redis). Raises InvalidInput for malformed arguments."""
        ...

    def consume_resume(
        self, tenant: str, resume_id: str, *, execution_id: str, ttl_seconds: int
    ) -> bool:
        """Single use of a resume id, owned by an execution: True when `resume_id` was never consumed
        for the tenant (it now belongs to `execution_id`) or was consumed by this same
        `execution_id` (a retry of that execution); False when another execution consumed it.
        Remembered for `ttl_seconds`, which must cover the resume token's lifetime."""
        ...

    def count_delivery(self, tenant: str, execution_id: str, *, ttl_seconds: int) -> int:
        """Count one more delivery of the job (tenant, execution_id) and return the count so far
        (1 for the first call). Atomic across workers; the count is kept for `ttl_seconds`."""
        ...


def check_commit_args(
    result_json: object, cache_commands: object, now_ms: object, result_ttl_seconds: object
) -> list[CacheSet | CacheDelete]:
    """The cache commands as a list after checking every commit argument's type; InvalidInput."""
    if not isinstance(result_json, str):
        raise InvalidInput(f"must be a str, not {type(result_json).__name__}", field="result_json")
    if not isinstance(now_ms, int) or isinstance(now_ms, bool):
        raise InvalidInput("must be an int (ms since the epoch)", field="now_ms")
    check_ttl(result_ttl_seconds, "result_ttl_seconds")
    if isinstance(cache_commands, (str, bytes)) or not isinstance(cache_commands, Sequence):
        raise InvalidInput("must be a list of CacheSet / CacheDelete", field="cache_commands")
    for index, command in enumerate(cache_commands):
        if not isinstance(command, (CacheSet, CacheDelete)):
            raise InvalidInput(f"{type(command).__name__} is not a cache command",
                               field=f"cache_commands.{index}")
    return list(cache_commands)


def check_ttl(value: object, field: str) -> int:
    """`value` if it is a positive int of seconds; else InvalidInput naming `field`."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInput(f"{value!r} is not a positive number of seconds", field=field)
    return value
