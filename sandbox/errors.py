"""Every error actionrunner raises to its callers, in one tree.

Each error carries what its reader needs to act: the file or field at fault, the diagnostics, the
limit that was crossed. Errors raised *to tenant code* (by `api` calls) are not here: they live in
`sandbox.api` because tenant code sees them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sandbox.models import Diagnostic


class ActionRunnerError(Exception):
    """Base of every error actionrunner raises to its callers."""


class InvalidInput(ActionRunnerError):
    """Input that cannot be used at all: a missing file, invalid JSON, a value of the wrong type.

    `source` names where the input came from (a file path, "stdin", "job"), `field` the dotted path of
    the offending field when there is one.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None) -> None:
        self.source = source
        self.field = field
        where = ": ".join(part for part in (source, field) if part)
        super().__init__(f"{where}: {message}" if where else message)


class LimitExceeded(InvalidInput):
    """Input over a tenant-side limit (actions bound, versions kept, secrets, source size)."""


class InvalidEvent(InvalidInput):
    """The event failed validation; `field` is the dotted path of the first bad field."""


class CompileFailed(ActionRunnerError):
    """An action's source did not compile; `diagnostics` lists each problem with line and column."""

    def __init__(self, name: str, diagnostics: list[Diagnostic]) -> None:
        self.name = name
        self.diagnostics = diagnostics
        first = diagnostics[0] if diagnostics else None
        detail = f"line {first.line}, column {first.column}: {first.message}" if first else "no detail"
        super().__init__(f"action {name!r} does not compile: {detail}")


class ResumeRefused(ActionRunnerError):
    """A resume state that is forged, expired, or does not match the continue request."""


class JailUnavailable(ActionRunnerError):
    """The kernel refused an isolation layer and the jail runs in strict mode; names the layer."""

    def __init__(self, layer: str, reason: str) -> None:
        self.layer = layer
        self.reason = reason
        super().__init__(f"isolation layer {layer!r} is unavailable: {reason}")


class JailBroken(ActionRunnerError):
    """The fork server died or answered something it should not have; the jail must be restarted."""


class UnknownTenant(ActionRunnerError):
    """No action was ever uploaded for this tenant."""


class NothingBound(ActionRunnerError):
    """The tenant has no action bound to the trigger."""


class UnknownAction(ActionRunnerError):
    """The named action, or the named version of it, does not exist for this tenant."""




class ExecutionTimeout(ActionRunnerError):
    """No worker answered before the client's deadline; the job may still run and be stored."""


class WorkerError(ActionRunnerError):
    """A worker failed to run the job (not the tenant's code: that is a `failed` result)."""
