"""The seam between the flow (trusted) and whatever runs one action's handler.

The flow asks an `ActionRunner` to run one handler of one action and gets back an `ActionRun`: how it
ended, what it answered (already parsed against `ActionOutput`), and what it cost. The only runner used
for tenant code is the process jail (`sandbox.jail`); `sandbox.execute.InProcessRunner` exists for the
benchmark's no-isolation baseline and for unit tests of pure logic.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Protocol

from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import ActionOutput, Diagnostic, Handler, Outcome


def source_hash(source: str) -> str:
    """The sha256 hex digest of an action's source text (UTF-8, lone surrogates kept): its
    compile-cache key and the registry's content hash."""
    return hashlib.sha256(source.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class ActionRequest:
    """Everything one handler run needs. Built by the trusted side; the child sees only this.

    `event` is the plain event dict (snake_case) with this action's own `secrets` and, on a resume
    after a prompt, `prompt`. `cache` maps key -> {"value": str, "expires_at": ms} as the action must
    see it (earlier actions' writes applied). `continue_request` is the `/continue` request's
    {"state", "query", "body"} when resuming, else None. `now_ms` is the wall clock the action sees.
    """

    action: str
    source: str
    handler: Handler
    event: dict[str, Any]
    now_ms: int
    cache: dict[str, dict[str, Any]] = field(default_factory=dict)
    continue_request: dict[str, Any] | None = None
    limits: Limits = DEFAULT_LIMITS

    @property
    def source_hash(self) -> str:
        return source_hash(self.source)


@dataclass(frozen=True)
class ActionRun:
    """How one handler run ended.

    `output` is None when the child died or was killed before answering (`timeout`, `cpu_limit`,
    `memory_limit`, `output_too_large`, `crashed`); `detail` then says what happened, in words a tenant
    can act on. Figures: `wall_ms` and `cpu_ms` in milliseconds, `peak_memory_kb` in KiB.
    """

    outcome: Outcome
    output: ActionOutput | None
    wall_ms: float
    cpu_ms: float
    peak_memory_kb: int
    detail: str = ""


class ActionRunner(Protocol):
    """Runs untrusted action code. Implementations: `sandbox.jail.Jail` (the only one for tenants)."""

    def check(self, source: str | bytes, *, name: str) -> list[Diagnostic]:
        """Compile `source` under the policy; return its diagnostics ([] when it compiles)."""
        ...

    def run(self, request: ActionRequest, *, timeout_seconds: float) -> ActionRun:
        """Run `request.handler`; never raises for anything the tenant's code does."""
        ...

    def close(self) -> None:
        """Release processes and descriptors; the runner is unusable afterwards."""
        ...
