"""An action as the flow runs it: name, source, version and its own secrets, checked on the way in."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from sandbox.errors import InvalidInput, LimitExceeded
from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.runner import source_hash


def check_secrets(secrets: Any, *, source: str, limits: Limits = DEFAULT_LIMITS) -> dict[str, str]:
    """`secrets` as a plain dict after checking SPEC's bounds (count, name and value lengths, str only).

    Raises InvalidInput (wrong types) or LimitExceeded (over a limit) naming `source` (where the
    secrets came from) and the bad secret, never its value.
    """
    if not isinstance(secrets, Mapping):
        raise InvalidInput("secrets must map names to strings", source=source, field="secrets")
    if len(secrets) > limits.secrets_max_count:
        raise LimitExceeded(
            f"{len(secrets)} secrets, over the limit of {limits.secrets_max_count}",
            source=source, field="secrets",
        )
    for name, value in secrets.items():
        if not isinstance(name, str) or not name:
            raise InvalidInput("a secret's name must be a non-empty string", source=source,
                               field=f"secrets.{name!r}")
        if len(name) > limits.secret_name_max_chars:
            raise LimitExceeded(f"the name is over {limits.secret_name_max_chars} characters",
                               source=source, field=f"secrets.{name[:40]}...")
        if not isinstance(value, str):
            raise InvalidInput(f"the value must be a string, not {type(value).__name__}",
                               source=source, field=f"secrets.{name}")
        if len(value) > limits.secret_value_max_chars:
            raise LimitExceeded(f"the value is over {limits.secret_value_max_chars} characters",
                               source=source, field=f"secrets.{name}")
    return dict(secrets)


@dataclass(frozen=True)
class BoundAction:
    """One action bound to the trigger: its name (tags its commands), source, version and secrets.

    Raises InvalidInput at construction for a bad name or source, or secrets outside SPEC's default
    bounds (the flow re-checks them against its own `Limits`).
    """

    name: str
    source: str
    version: int | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise InvalidInput("an action's name must be a non-empty string", field="name")
        if not isinstance(self.source, str):
            raise InvalidInput("the source must be text", source=f"action {self.name!r}")
        frozen = MappingProxyType(check_secrets(self.secrets, source=f"action {self.name!r}"))
        object.__setattr__(self, "secrets", frozen)

    @property
    def fingerprint(self) -> tuple[str, int | None, str]:
        """(name, version, sha256 of source): what a resume token pins."""
        return (self.name, self.version, source_hash(self.source))
