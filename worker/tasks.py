"""The worker's tasks: execute, resume and upload, plus a no-op (the benchmark's floor).

Every task takes plain JSON and returns a reply (broker/replies.py); it never raises for bad input.
A job is idempotent per (tenant, execution id): a result already committed is returned without
running anything, and the commit (result + cache writes) happens once, atomically, in the store.

Per process state (`Runtime`: stores, resume signer, the jail) is built lazily on first use in the
process that runs the task, i.e. in the prefork pool child after the fork, never before it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from broker.replies import error_reply, result_reply
from sandbox.errors import (
    ActionRunnerError, CompileFailed, InvalidEvent, InvalidInput, LimitExceeded, ResumeRefused,
    WorkerError,
)
from sandbox.models import JobInput, Result

if TYPE_CHECKING:
    from celery import Celery

    from broker.app import Settings
    from broker.stores import Stores
    from sandbox.resume import ResumeSigner, ResumeState
    from sandbox.runner import ActionRunner

log = logging.getLogger("actionrunner.worker")

ReplyData = dict[str, Any]
EXECUTION_ID_MAX_CHARS = 200  # the stores take ids up to 256; delivery counting appends to it


@dataclass
class Runtime:
    """What one process needs to serve jobs: stores, the resume signer and (lazily) one jail."""

    settings: Settings
    stores: Stores
    signer: ResumeSigner
    _jail: ActionRunner | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def jail(self) -> ActionRunner:
        """This process's jail, started on first use (after the prefork fork, in the pool child)."""
        with self._lock:
            if self._jail is None:
                from sandbox.jail import Jail

                self._jail = Jail(self.settings.limits)
            return self._jail


_runtimes: dict[tuple[int, Settings], Runtime] = {}
_runtimes_lock = threading.Lock()


def runtime(settings: Settings) -> Runtime:
    """The Runtime of `settings` in this process (one per process id: never shared across a fork).

    In embedded mode (no broker URL) the stores are in-memory and shared by the client and the tasks
    of this process."""
    key = (os.getpid(), settings)
    with _runtimes_lock:
        found = _runtimes.get(key)
        if found is None:
            from broker.stores import open_stores
            from sandbox.resume import ResumeSigner, load_key

            found = Runtime(
                settings=settings,
                stores=open_stores(settings.broker_url, prefix=settings.prefix, limits=settings.limits),
                signer=ResumeSigner(load_key()),
            )
            _runtimes[key] = found
        return found


# --------------------------------------------------------------------------------------------------
# Jobs


def parse_job(payload: Any, settings: Settings) -> JobInput:
    """The job in `payload` (a dict or a JSON string), size-bounded and validated.

    Raises InvalidEvent (field names the bad event field) or InvalidInput (source "job")."""
    if isinstance(payload, (str, bytes)):
        raw = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
    else:
        try:
            raw = json.dumps(payload, separators=(",", ":")).encode("utf-8", "surrogatepass")
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"not JSON data: {exc}", source="job") from None
    # SECURITY: the worker re-checks the size the client checked; a job put on the queue by hand
    # must not make the worker parse and run megabytes of event.
    limit = settings.limits.event_max_bytes + 64 * 1024
    if len(raw) > limit:
        raise InvalidEvent(f"the job is {len(raw)} bytes, over the limit of {limit} bytes",
                           source="job", field="event")
    try:
        job = JobInput.model_validate_json(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "(root)"
        kind = InvalidEvent if where.startswith("event") else InvalidInput
        raise kind(first["msg"], source="job", field=where) from None
    if job.execution_id is not None and not 0 < len(job.execution_id) <= EXECUTION_ID_MAX_CHARS:
        raise InvalidInput(f"must be 1 to {EXECUTION_ID_MAX_CHARS} characters", source="job",
                           field="execution_id")
    return job


def _delivery_number(rt: Runtime, tenant: str, execution_id: str, *, redelivered: bool) -> int:
    """Which delivery of this job this is (1 = first); max_deliveries + 1 means "more than allowed".

    A first delivery costs nothing. A redelivery (kombu marks a message restored after its worker
    died, or requeued after its pool process died) is counted with the store's single-use ids (one
    atomic SET NX each), so the count holds across workers and survives their deaths."""
    if not redelivered:
        return 1
    ttl = rt.settings.result_ttl_seconds
    for number in range(2, rt.settings.max_deliveries + 1):
        if rt.stores.results.consume_resume(tenant, f"delivery.{execution_id}.{number}",
                                            ttl_seconds=ttl):
            return number
    return rt.settings.max_deliveries + 1


def _give_up(rt: Runtime, job: JobInput, execution_id: str) -> str:
    """Store (once) a `failed` result for a job whose worker kept dying, and return it."""
    result = Result(status="failed", error={  # type: ignore[arg-type]
        "action": "", "type": "WorkerError",
        "message": f"the job was delivered {rt.settings.max_deliveries} times and its worker "
                   "died each time; it will not run again",
    })
    log.error("giving up on execution %s of tenant %r after %d deliveries",
              execution_id, job.tenant, rt.settings.max_deliveries)
    return rt.stores.results.commit(
        job.tenant, rt.settings.trigger, execution_id, result.model_dump_json(), [],
        now_ms=int(time.time() * 1000), result_ttl_seconds=rt.settings.result_ttl_seconds,
    )


def _verified_resume(rt: Runtime, job: JobInput) -> ResumeState:
    """The resume state of `job`'s token, checked before anything of the tenant's is loaded.

    Raises InvalidInput (no continue request) or ResumeRefused (forged, expired, other tenant); the
    flow then checks the rest (user, actions, state)."""
    assert job.resume is not None
    if job.continue_request is None:
        raise InvalidInput("a resume needs the continue request", source="job",
                           field="continue_request")
    state = rt.signer.verify(job.resume.token, now_s=time.time())
    # SECURITY: the token names its tenant; another tenant's token is refused before any of its
    # actions (and their secrets) are loaded.
    if state.tenant != job.tenant:
        raise ResumeRefused("the resume token belongs to another tenant")
    if any(version is None for _name, version, _sha in state.actions):
        raise ResumeRefused("the resume token names an action without a version")
    return state


def run_job(rt: Runtime, payload: Any, *, worker: str, redelivered: bool = False) -> ReplyData:
    """Run one execution or resume and commit it; the reply (never raises for bad input).

    `redelivered`: the broker says an earlier delivery of this message did not finish."""
    from sandbox.flow import BoundAction, resume_flow, run_flow
    from sandbox.models import CacheDelete, CacheSet

    settings, stores = rt.settings, rt.stores
    try:
        job = parse_job(payload, settings)
        execution_id = job.execution_id or uuid.uuid4().hex
        stored = stores.results.get(job.tenant, execution_id)
        if stored is not None:
            return result_reply(stored, worker)  # idempotent: already ran, run nothing
        if _delivery_number(rt, job.tenant, execution_id,
                            redelivered=redelivered) > settings.max_deliveries:
            return result_reply(_give_up(rt, job, execution_id), worker)
        cache = stores.cache.snapshot(job.tenant, settings.trigger, now_ms=int(time.time() * 1000))
        state = None if job.resume is None else _verified_resume(rt, job)
        if state is None:
            bound = [(b.name, b.version) for b in stores.registry.bound(job.tenant, settings.trigger)]
        else:
            bound = [(name, version) for name, version, _sha in state.actions if version is not None]
        actions = []
        for name, version in bound:
            stored_action = stores.registry.load(job.tenant, name, version)
            actions.append(BoundAction(name=name, source=stored_action.source, version=version,
                                       secrets=stored_action.secrets))
        common = dict(runner=rt.jail, cache=cache, signer=rt.signer, tenant=job.tenant,
                      limits=settings.limits)
        if state is None:
            result = run_flow(actions, job.event, **common)  # type: ignore[arg-type]
        else:
            assert job.resume is not None and job.continue_request is not None  # _verified_resume
            result = resume_flow(actions, job.event, resume=job.resume,  # type: ignore[arg-type]
                                 continue_request=job.continue_request, **common)
            # Single use: only a resume that verified and ran consumes its token.
            if not stores.results.consume_resume(job.tenant, state.id,
                                                 ttl_seconds=settings.limits.resume_state_ttl_seconds):
                raise ResumeRefused("the resume token was already used")
        commands = [c for c in result.commands if isinstance(c, (CacheSet, CacheDelete))]
        committed = stores.results.commit(
            job.tenant, settings.trigger, execution_id, result.model_dump_json(), commands,
            now_ms=int(time.time() * 1000), result_ttl_seconds=settings.result_ttl_seconds,
        )
        return result_reply(committed, worker)
    except ActionRunnerError as exc:
        if isinstance(exc, WorkerError) or type(exc).__name__ in ("JailBroken", "JailUnavailable"):
            log.error("job failed on the worker: %s", exc)
        return error_reply(exc, worker)


def upload(rt: Runtime, payload: Any, *, worker: str) -> ReplyData:
    """Compile an uploaded action in the jail and, when clean, store it as a new version."""
    try:
        if not isinstance(payload, dict):
            raise InvalidInput("an upload is an object {tenant, name, source, secrets}", source="upload")
        tenant, name, source = payload.get("tenant"), payload.get("name"), payload.get("source")
        secrets = payload.get("secrets") or {}
        for field_name, value in (("tenant", tenant), ("name", name), ("source", source)):
            if not isinstance(value, str):
                raise InvalidInput("must be a string", source="upload", field=field_name)
        assert isinstance(tenant, str) and isinstance(name, str) and isinstance(source, str)
        if len(source.encode("utf-8", "surrogatepass")) > rt.settings.limits.source_max_bytes:
            raise LimitExceeded(f"the source of {name!r} is over the limit of "
                                f"{rt.settings.limits.source_max_bytes} bytes")
        diagnostics = rt.jail.check(source, name=name)
        if diagnostics:
            raise CompileFailed(name, diagnostics)
        version = rt.stores.registry.add_version(tenant, name, source, secrets)
        return {"ok": True, "worker": worker, "version": {
            "tenant": version.tenant, "name": version.name, "version": version.version,
            "source_hash": version.source_hash, "created_at_ms": version.created_at_ms,
        }}
    except ActionRunnerError as exc:
        return error_reply(exc, worker)


# --------------------------------------------------------------------------------------------------
# Celery tasks


def register_tasks(app: Celery) -> None:
    """Register execute, resume, upload and noop on `app` (names from broker.app)."""
    import celery.app.trace

    from broker.app import EXECUTE_TASK, NOOP_TASK, RESUME_TASK, UPLOAD_TASK, settings_of

    # Replies hold tenants' result documents (their users' data, their console output): the worker's
    # log says that a task succeeded and how fast, never what it returned.
    celery.app.trace.LOG_SUCCESS = "Task %(name)s[%(id)s] succeeded in %(runtime)ss"

    def hostname(task: Any) -> str:
        return str(task.request.hostname or f"embedded@{os.getpid()}")

    def redelivered(task: Any) -> bool:
        return bool((task.request.delivery_info or {}).get("redelivered"))

    @app.task(name=EXECUTE_TASK, bind=True, shared=False)
    def execute(self: Any, job: Any) -> ReplyData:
        return run_job(runtime(settings_of(self.app)), job, worker=hostname(self),
                       redelivered=redelivered(self))

    @app.task(name=RESUME_TASK, bind=True, shared=False)
    def resume(self: Any, job: Any) -> ReplyData:
        return run_job(runtime(settings_of(self.app)), job, worker=hostname(self),
                       redelivered=redelivered(self))

    @app.task(name=UPLOAD_TASK, bind=True, shared=False)
    def upload_task(self: Any, request: Any) -> ReplyData:
        return upload(runtime(settings_of(self.app)), request, worker=hostname(self))

    @app.task(name=NOOP_TASK, bind=True, shared=False)
    def noop(self: Any, payload: Any = None) -> ReplyData:
        return {"ok": True, "worker": hostname(self)}
