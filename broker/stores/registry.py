"""The action registry: numbered immutable versions of each tenant's actions, and what is bound.

This module holds the interface (`ActionRegistry`), the records that cross it, and the policy both
implementations share (name and secrets validation, which versions to drop, binding checks), so the
memory and Redis backends only store and fetch.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from sandbox import bound
from sandbox.errors import InvalidInput, LimitExceeded, UnknownAction
from sandbox.limits import Limits
from sandbox.runner import source_hash

NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
ID_MAX_CHARS = 256


@dataclass(frozen=True)
class ActionVersion:
    """One immutable version of an action, without its source or secrets."""

    tenant: str
    name: str
    version: int
    source_hash: str  # sha256 hex of the UTF-8 source
    created_at_ms: int  # ms since the epoch


@dataclass(frozen=True)
class StoredAction:
    """One version with its source and secrets: for the worker only. `repr` hides secret values."""

    tenant: str
    name: str
    version: int
    source: str
    secrets: dict[str, str]
    source_hash: str

    def __repr__(self) -> str:
        # SECURITY: a logged or printed StoredAction must not leak the tenant's secret values.
        hidden = {name: "***" for name in self.secrets}
        return (
            f"StoredAction(tenant={self.tenant!r}, name={self.name!r}, version={self.version}, "
            f"source=<{len(self.source)} chars>, secrets={hidden}, "
            f"source_hash={self.source_hash!r})"
        )

    __str__ = __repr__


@dataclass(frozen=True)
class Binding:
    """One action version bound to a trigger, in flow order."""

    name: str
    version: int


class ActionRegistry(Protocol):
    """Where tenants' actions live. Every method raises InvalidInput for a malformed tenant/name."""

    def add_version(
        self, tenant: str, name: str, source: str, secrets: Mapping[str, str]
    ) -> ActionVersion:
        """Store a new immutable version (1, 2, ...). Keeps at most `limits.versions_kept_count`
        versions, dropping the oldest unbound ones; raises LimitExceeded when every older version is
        bound, or when the source (`limits.source_max_bytes`) or secrets cross their limits;
        InvalidInput for bad names, a non-str source or non-str secrets."""
        ...

    def versions(self, tenant: str, name: str) -> list[ActionVersion]:
        """Kept versions of one action, oldest first. Raises UnknownAction if there is none."""
        ...

    def list_actions(self, tenant: str) -> list[ActionVersion]:
        """The latest version of each of the tenant's actions, by name ([] for an unknown
        tenant)."""
        ...

    def load(self, tenant: str, name: str, version: int) -> StoredAction:
        """One version with its source and secrets. Raises UnknownAction."""
        ...

    def bind(self, tenant: str, trigger: str, bindings: Sequence[Binding]) -> list[Binding]:
        """Replace what is bound to the trigger, in order (an empty list unbinds; an older version is
        a rollback). Raises LimitExceeded past `limits.actions_max_count`, UnknownAction when a
        version does not exist."""
        ...

    def bound(self, tenant: str, trigger: str) -> list[Binding]:
        """What is bound to the trigger, in order. Raises UnknownTenant if the tenant never uploaded
        anything, NothingBound if nothing is bound."""
        ...

    def tenant_exists(self, tenant: str) -> bool:
        """True once the tenant uploaded any action (False for a malformed tenant id)."""
        ...


# --------------------------------------------------------------------------------------------------
# Shared policy


def check_name(value: object, field: str) -> str:
    """`value` if it is 1-64 chars of [A-Za-z0-9_.-]; else InvalidInput naming `field`."""
    if not isinstance(value, str) or NAME_PATTERN.fullmatch(value) is None:
        raise InvalidInput(
            f"{value!r} is not a valid name (1-64 characters of A-Z a-z 0-9 _ . -)", field=field
        )
    return value


def check_id(value: object, field: str) -> str:
    """`value` if it is a non-empty str of at most 256 chars (any characters: it is escaped in key
    names); else InvalidInput naming `field`."""
    if not isinstance(value, str) or not 0 < len(value) <= ID_MAX_CHARS:
        raise InvalidInput(f"must be a non-empty string of at most {ID_MAX_CHARS} characters",
                           field=field)
    return value


def check_version(value: object, field: str = "version") -> int:
    """`value` if it is a positive int (not a bool); else InvalidInput."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidInput(f"{value!r} is not a version number (an int >= 1)", field=field)
    return value


def check_source(source: object, limits: Limits) -> str:
    """`source` if it is a str within `limits.source_max_bytes` (UTF-8 bytes); else InvalidInput /
    LimitExceeded."""
    if not isinstance(source, str):
        raise InvalidInput(f"must be a str, not {type(source).__name__}", field="source")
    size = len(source.encode("utf-8", "surrogatepass"))
    if size > limits.source_max_bytes:
        raise LimitExceeded(
            f"source: {size} bytes is over the limit of {limits.source_max_bytes} bytes"
        )
    return source


def check_secrets(secrets: object, limits: Limits) -> dict[str, str]:
    """A plain copy of `secrets` within SPEC limits: `sandbox.bound.check_secrets`, the one check
    the flow applies too. Raises InvalidInput / LimitExceeded naming the secret, never its value."""
    return bound.check_secrets(secrets, source="upload", limits=limits)


def check_upload(
    tenant: object, name: object, source: object, secrets: object, limits: Limits
) -> tuple[dict[str, str], str]:
    """Every check of `ActionRegistry.add_version`'s arguments; returns (a plain copy of the
    secrets, the source's sha256). Raises InvalidInput / LimitExceeded naming the field."""
    check_name(tenant, "tenant")
    check_name(name, "name")
    checked = check_source(source, limits)
    return check_secrets(secrets, limits), source_hash(checked)


def wall_ms() -> int:
    """Milliseconds since the epoch (the default clock of `created_at_ms`)."""
    return time.time_ns() // 1_000_000


def versions_to_drop(kept: Iterable[int], bound: set[int], name: str, limits: Limits) -> list[int]:
    """Which of the `kept` versions to drop so that one more version fits the cap, oldest unbound
    first. Raises LimitExceeded when that would need dropping a bound version."""
    kept_sorted = sorted(kept)
    excess = len(kept_sorted) + 1 - limits.versions_kept_count
    if excess <= 0:
        return []
    droppable = [v for v in kept_sorted if v not in bound]
    if len(droppable) < excess:
        raise LimitExceeded(
            f"action {name!r} keeps {len(kept_sorted)} versions (limit "
            f"{limits.versions_kept_count}) and every older one is bound; unbind one first"
        )
    return droppable[:excess]


def bound_versions(bindings_by_trigger: Iterable[Sequence[Binding]], name: str) -> set[int]:
    """Every version of action `name` bound to any trigger."""
    return {b.version for bs in bindings_by_trigger for b in bs if b.name == name}


def check_bindings(bindings: object, limits: Limits) -> list[Binding]:
    """A validated list copy of `bindings` (at most `limits.actions_max_count` Binding items or
    (name, version) pairs).

    Raises LimitExceeded past the count, InvalidInput for anything that is not a Binding with a valid
    name and version. Existence is the backend's check.
    """
    if isinstance(bindings, (str, bytes)) or not isinstance(bindings, Sequence):
        raise InvalidInput("must be a list of Binding(name, version)", field="bindings")
    if len(bindings) > limits.actions_max_count:
        raise LimitExceeded(
            f"bindings: {len(bindings)} actions is over the limit of {limits.actions_max_count}"
        )
    checked = []
    for index, item in enumerate(bindings):
        if isinstance(item, tuple) and len(item) == 2:
            item = Binding(*item)  # a (name, version) pair is accepted too
        if not isinstance(item, Binding):
            raise InvalidInput(f"{item!r} is not a Binding(name, version)",
                               field=f"bindings.{index}")
        checked.append(Binding(check_name(item.name, f"bindings.{index}.name"),
                               check_version(item.version, f"bindings.{index}.version")))
    return checked


def unknown_version(tenant: str, name: str, version: int) -> UnknownAction:
    """The error for a missing (name, version) of `tenant`."""
    return UnknownAction(f"tenant {tenant!r} has no version {version} of action {name!r}")
