"""The reply a worker's task returns, built by the worker and parsed by the client (JSON):

    {"ok": true,  "result": "<Result JSON>", "worker": "<hostname>"}            execute / resume
    {"ok": true,  "version": {ActionVersion fields}, "worker": ...}             upload
    {"ok": false, "error": {"type", "message", "field", "source", "name", "diagnostics"}, "worker": ...}

`error.type` names a class of `sandbox.errors`; `raise_for` raises that same class on the client, so
callers catch one error tree whether a check failed locally or on a worker.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from sandbox import errors
from sandbox.models import Diagnostic

# Errors a worker may name, rebuilt as the same class by the client. Anything else: WorkerError.
_PLAIN_ERRORS: dict[str, type[errors.ActionRunnerError]] = {
    cls.__name__: cls for cls in (
        errors.UnknownTenant, errors.NothingBound, errors.UnknownAction, errors.LimitExceeded,
        errors.ResumeRefused, errors.WorkerError,
    )
}


class ErrorBody(BaseModel):
    """A caller-facing error as it crosses the broker."""

    type: str
    message: str
    field: str | None = None
    source: str | None = None
    name: str | None = None
    diagnostics: list[Diagnostic] | None = None


class Reply(BaseModel):
    """A worker's reply; the client parses it strictly before using anything in it."""

    ok: bool
    worker: str | None = None
    result: str | None = None
    version: dict[str, Any] | None = None
    error: ErrorBody | None = None


def error_reply(exc: errors.ActionRunnerError, worker: str) -> dict[str, Any]:
    """The reply for a caller-facing error: its class name, message, field and diagnostics."""
    body: dict[str, Any] = {"type": type(exc).__name__, "message": str(exc)}
    if isinstance(exc, errors.InvalidInput):
        body["field"] = exc.field
        body["source"] = exc.source
    if isinstance(exc, errors.CompileFailed):
        body["name"] = exc.name
        body["diagnostics"] = [d.model_dump(mode="json") for d in exc.diagnostics]
    return {"ok": False, "error": body, "worker": worker}


def result_reply(result_json: str, worker: str) -> dict[str, Any]:
    """The reply carrying a committed result document."""
    return {"ok": True, "result": result_json, "worker": worker}


def raise_for(error: ErrorBody | None) -> None:
    """Raise the caller-facing error a reply names (WorkerError for anything unknown)."""
    if error is None:
        raise errors.WorkerError("the worker answered neither a result nor an error")
    if error.type in ("InvalidInput", "InvalidEvent"):
        kind = errors.InvalidEvent if error.type == "InvalidEvent" else errors.InvalidInput
        where = ": ".join(p for p in (error.source, error.field) if p)
        message = error.message.removeprefix(f"{where}: ") if where else error.message
        raise kind(message, source=error.source, field=error.field)
    if error.type == "CompileFailed":
        raise errors.CompileFailed(error.name or "?", error.diagnostics or [])
    found = _PLAIN_ERRORS.get(error.type)
    if found is None:
        raise errors.WorkerError(f"{error.type}: {error.message}")
    raise found(error.message)
