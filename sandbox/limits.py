"""The limits of SPEC section 6 and the cache rules, as one frozen settings object.

Units are in every name. An operator changes them by building another `Limits` (see
`Limits.from_env`); nothing reads module-wide mutable state.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

KIB = 1024
MIB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Every bound one execution is held to. Defaults are SPEC section 6."""

    execution_wall_seconds: float = 20.0
    action_cpu_seconds: float = 2.0
    action_memory_bytes: int = 128 * MIB
    console_kept_bytes: int = 16 * KIB
    # Console output past this fails the action with `output_too_large`: a flood, not a log.
    console_max_bytes: int = 1 * MIB
    source_max_bytes: int = 100 * KIB
    secrets_max_count: int = 30
    secret_name_max_chars: int = 128
    secret_value_max_chars: int = 4096
    actions_max_count: int = 20
    versions_kept_count: int = 50
    result_max_bytes: int = 256 * KIB
    # What one jailed child may write back; past it the action fails with `output_too_large`.
    action_output_max_bytes: int = 256 * KIB
    side_effects_max_count: int = 100
    cache_key_max_bytes: int = 64
    cache_value_max_bytes: int = 4 * KIB
    cache_records_max_count: int = 20
    cache_total_max_bytes: int = 8 * KIB
    cache_default_ttl_ms: int = 15 * 60 * 1000
    cache_max_ttl_ms: int = 24 * 60 * 60 * 1000
    token_default_expiry_seconds: int = 900
    resume_state_ttl_seconds: int = 3600
    event_max_bytes: int = 1 * MIB

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Limits:
        """Defaults overridden by `ACTIONRUNNER_LIMIT_<FIELD>` variables (e.g. `..._ACTION_CPU_SECONDS=1`).

        Raises ValueError naming the variable when a value does not parse.
        """
        env = os.environ if environ is None else environ
        changes: dict[str, float | int] = {}
        for field in dataclasses.fields(cls):
            var = f"ACTIONRUNNER_LIMIT_{field.name.upper()}"
            if var in env:
                kind = float if field.type in ("float", float) else int
                try:
                    changes[field.name] = kind(env[var])
                except ValueError:
                    raise ValueError(f"{var}={env[var]!r} is not a {kind.__name__}") from None
        return dataclasses.replace(cls(), **changes)


DEFAULT_LIMITS = Limits()
