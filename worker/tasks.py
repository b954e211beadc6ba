"""The worker's tasks: execute, resume and upload, plus a no-op (the benchmark's floor).

Every task takes plain JSON and returns a reply (broker/replies.py); it never raises for bad input.
A job is idempotent per (tenant, execution id): a result already committed is returned without
running anything, and the commit (result + cache writes) happens once, atomically, in the store.

Per process state (`Runtime`: stores, loaded actions, resume signer, the jail) is built lazily on
first use in the process that runs the task, i.e. in the prefork pool child after the fork, never
before it.

Per job, on Redis: one round trip reads the stored result, the bindings and the cache together
(`Stores.start_job`); action versions come from the process's LRU (`LoadedActions`: versions are
immutable); the commit is one round trip unless another job wrote the tenant's cache meanwhile; the
reply is one more (`broker.replies.push_reply`). A redelivery costs one more (`count_delivery`), a
resume one more (`consume_resume`).
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

from broker.replies import error_reply, push_reply, result_reply
from sandbox.errors import (
    ActionRunnerError, CompileFailed, InvalidEvent, InvalidInput, JailBroken, JailUnavailable,
    LimitExceeded, ResumeRefused, WorkerError,
)
from sandbox.models import JobInput, Result

if TYPE_CHECKING:
    from celery import Celery

    from broker.app import Settings
    from broker.stores import LoadedActions, Stores
    from sandbox.resume import ResumeSigner, ResumeState
    from sandbox.runner import ActionRunner

log = logging.getLogger("actionrunner.worker")

ReplyData = dict[str, Any]
NOOP_RESULT = '{"status":"completed","commands":[],"logs":[],"actions":[]}'  # the no-op's answer
EXECUTION_ID_MAX_CHARS = 200  # as the client's (the stores would take up to 256)


@dataclass
class Runtime:
    """What one process needs to serve jobs: stores, the loaded action versions, the resume signer
    and (lazily) one jail."""

    settings: Settings
    stores: Stores
    signer: ResumeSigner
    actions: LoadedActions
    _jail: ActionRunner | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def jail(self) -> ActionRunner:
        """This process's jail, started on first use (after the prefork fork, in the pool child)."""
        with self._lock:
            if self._jail is None:
                from sandbox.jail import Jail

                self._jail = Jail.from_env(self.settings.limits)
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
            from broker.stores import LoadedActions, open_stores
            from sandbox.resume import ResumeSigner, load_key

            stores = open_stores(settings.broker_url, prefix=settings.prefix, limits=settings.limits)
            found = Runtime(settings=settings, stores=stores, signer=ResumeSigner(load_key()),
                            actions=LoadedActions(stores.registry))
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
    """Which delivery of this job this is (1 = first); above max_deliveries means "too many".

    A first delivery costs nothing. A redelivery (kombu marks a message restored after its worker
    died, or requeued after its pool process died) is counted in the store (`count_delivery`: one
    atomic INCR), so the count holds across workers and survives their deaths."""
    if not redelivered:
        return 1
    return 1 + rt.stores.results.count_delivery(tenant, execution_id,
                                                ttl_seconds=rt.settings.result_ttl_seconds)


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
        start = stores.start_job(job.tenant, settings.trigger, execution_id,
                                 now_ms=int(time.time() * 1000), with_bindings=job.resume is None)
        if start.stored is not None:
            return result_reply(start.stored, worker)  # idempotent: already ran, run nothing
        if _delivery_number(rt, job.tenant, execution_id,
                            redelivered=redelivered) > settings.max_deliveries:
            return result_reply(_give_up(rt, job, execution_id), worker)
        state = None if job.resume is None else _verified_resume(rt, job)
        if state is None:
            bound = [(b.name, b.version) for b in start.bound()]
        else:
            bound = [(name, version) for name, version, _sha in state.actions if version is not None]
        actions = []
        for name, version in bound:
            loaded = rt.actions.load(job.tenant, name, version)
            # A copy of the secrets: the loaded version is shared with later jobs of this process.
            actions.append(BoundAction(name=name, source=loaded.source, version=version,
                                       secrets=dict(loaded.secrets)))
        common = dict(runner=rt.jail, cache=start.cache, signer=rt.signer, tenant=job.tenant,
                      limits=settings.limits)
        if state is None:
            result = run_flow(actions, job.event, **common)  # type: ignore[arg-type]
        else:
            assert job.resume is not None and job.continue_request is not None  # _verified_resume
            result = resume_flow(actions, job.event, resume=job.resume,  # type: ignore[arg-type]
                                 continue_request=job.continue_request, **common)
            # Single use, owned by this execution id: only a resume that verified and ran consumes
            # its token, and a retry of the same execution (its worker died before the commit) may
            # go on; any other execution is refused.
            if not stores.results.consume_resume(
                    job.tenant, state.id, execution_id=execution_id,
                    ttl_seconds=settings.limits.resume_state_ttl_seconds):
                raise ResumeRefused("the resume token was already used")
        commands = [c for c in result.commands if isinstance(c, (CacheSet, CacheDelete))]
        committed = stores.results.commit(
            job.tenant, settings.trigger, execution_id, result.model_dump_json(), commands,
            now_ms=int(time.time() * 1000), result_ttl_seconds=settings.result_ttl_seconds,
            cache_seen=start.cache_seen,
        )
        return result_reply(committed, worker)
    except ActionRunnerError as exc:
        if isinstance(exc, (WorkerError, JailBroken, JailUnavailable)):
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

    # ignore_result: the reply travels on the job's own list (push_reply), not Celery's backend.
    @app.task(name=EXECUTE_TASK, bind=True, shared=False, ignore_result=True)
    def execute(self: Any, job: Any) -> ReplyData | None:
        return answer(self, lambda rt, worker: run_job(rt, job, worker=worker,
                                                       redelivered=redelivered(self)))

    @app.task(name=RESUME_TASK, bind=True, shared=False, ignore_result=True)
    def resume(self: Any, job: Any) -> ReplyData | None:
        return answer(self, lambda rt, worker: run_job(rt, job, worker=worker,
                                                       redelivered=redelivered(self)))

    @app.task(name=UPLOAD_TASK, bind=True, shared=False, ignore_result=True)
    def upload_task(self: Any, request: Any) -> ReplyData | None:
        return answer(self, lambda rt, worker: upload(rt, request, worker=worker))

    @app.task(name=NOOP_TASK, bind=True, shared=False, ignore_result=True)
    def noop(self: Any, payload: Any = None) -> ReplyData | None:
        return answer(self, lambda rt, worker: result_reply(NOOP_RESULT, worker))

    def answer(task: Any, serve: Any) -> ReplyData | None:
        """Serve the job and deliver its reply: returned in embedded mode (eager tasks), pushed on
        the job's reply list otherwise (then nothing goes back to Celery: no result pickled through
        the pool's pipe, no repr of it computed for the log)."""
        settings, worker = settings_of(task.app), hostname(task)
        rt: Runtime | None = None
        try:
            rt = runtime(settings)
            reply: ReplyData = serve(rt, worker)
        except Exception as exc:  # a bug, a store failure, a bad key: the client must hear of it
            log.exception("task %s[%s] failed on the worker", task.name, task.request.id)
            reply = error_reply(WorkerError(f"{type(exc).__name__}: {exc}"[:1000]), worker)
        if not settings.embedded and task.request.id:
            try:
                if rt is None:
                    import redis

                    with redis.Redis.from_url(settings.broker_url) as client:
                        push_reply(client, settings.prefix, task.request.id, reply,
                                   ttl_seconds=settings.reply_ttl_seconds)
                    return None
                push_reply(rt.stores.client, settings.prefix, task.request.id, reply,
                           ttl_seconds=settings.reply_ttl_seconds)
            except Exception:  # the client will time out; nothing else can be done here
                log.exception("could not deliver the reply to job %s", task.request.id)
            return None
        return reply
