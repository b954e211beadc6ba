"""The reply to a job, built by the worker and parsed by the client (JSON), and how it travels.

    {"ok": true,  "result": "<Result JSON>", "worker": "<hostname>"}            execute / resume
    {"ok": true,  "version": {ActionVersion fields}, "worker": ...}             upload
    {"ok": false, "error": {"type", "message", "field", "source", "name", "diagnostics"}, "worker": ...}

`error.type` names a class of `sandbox.errors`; `raise_for` raises that same class on the client, so
callers catch one error tree whether a check failed locally or on a worker.

How it travels: not through Celery's result backend (a SET + PUBLISH of a wrapped meta document on the
worker, a SUBSCRIBE / UNSUBSCRIBE pair per job on the client) but through one list per job,
`keys.reply(prefix, job_id)`: the worker RPUSHes the reply and sets its expiry in one round trip
(`push_reply`), the client waits with a blocking BLPOP (`wait_reply`). No polling, no per-job
subscription, and a reply pushed before the client waits is kept until it does (or expires).
"""

from __future__ import annotations

import json
import time
from typing import Any

from pydantic import BaseModel, ValidationError

from broker import keys
from sandbox import errors
from sandbox.limits import MIB, Limits
from sandbox.models import Diagnostic

# A BLPOP never blocks longer than this, so a Redis that vanished without closing the socket is
# noticed by the client's socket timeout (which must be longer) instead of hanging it.
WAIT_SLICE_SECONDS = 5.0

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


def reply_max_bytes(limits: Limits) -> int:
    """The largest reply a client accepts (bytes): a result at its limit, every character escaped
    (at most 6 bytes each), plus room for an error's diagnostics."""
    return 6 * limits.result_max_bytes + MIB


def push_reply(client: Any, prefix: str, job_id: str, reply: dict[str, Any], *,
               ttl_seconds: int) -> None:
    """Deliver `reply` to whoever waits for job `job_id` (RPUSH + EXPIRE, one round trip; kept
    `ttl_seconds` for a client that waits late). Raises redis errors."""
    data = json.dumps(reply, separators=(",", ":")).encode("ascii")
    key = keys.reply(prefix, job_id)
    pipe = client.pipeline(transaction=True)
    pipe.rpush(key, data)
    pipe.expire(key, ttl_seconds)
    pipe.execute()


def wait_reply(client: Any, prefix: str, job_id: str, *, deadline: float,
               max_bytes: int) -> Reply | None:
    """The reply to job `job_id`, blocking (BLPOP) until it comes or `deadline` (time.monotonic()
    seconds) passes: None then. Raises WorkerError for a reply over `max_bytes` or not a reply
    document; redis errors (lost connection, socket timeout) propagate."""
    key = keys.reply(prefix, job_id)
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        # Redis reads a timeout that rounds to 0 ms as "block forever": never send one.
        popped = client.blpop([key], timeout=max(0.01, min(remaining, WAIT_SLICE_SECONDS)))
        if popped is not None:
            break
    raw = popped[1]
    # SECURITY: the client never parses an unbounded document from Redis.
    if len(raw) > max_bytes:
        raise errors.WorkerError(f"the reply to job {job_id} is {len(raw)} bytes, over the limit "
                                 f"of {max_bytes} bytes")
    return parse_reply(raw)


def parse_reply(raw: bytes | str | dict[str, Any]) -> Reply:
    """A reply document, strictly parsed (JSON text or already decoded data). Raises WorkerError."""
    try:
        if isinstance(raw, dict):
            return Reply.model_validate(raw)
        return Reply.model_validate_json(raw)
    except ValidationError as exc:
        raise errors.WorkerError(f"the worker's reply is malformed: {exc}") from None
