"""The orchestrator's client: upload and bind actions, submit executions and resumes, get results.

Every call returns typed values (`Result`, `ActionVersion`, `Binding`) or raises exactly one error of
`sandbox.errors`: InvalidEvent / InvalidInput (checked here, before anything is sent, and again on the
worker), UnknownTenant, NothingBound, UnknownAction, LimitExceeded, CompileFailed, ResumeRefused,
ExecutionTimeout (no answer by the deadline: `execute` never waits longer than its `timeout`) and
WorkerError (the worker or the broker failed; not the tenant's code, which gives a `failed` Result).

The registry calls (`bind`, `list_actions`, `versions`) go straight to the stores; compilation
(`upload_action`) and executions go through the broker to a worker, because only a worker has a jail.
A job's message carries the job as ONE JSON string (validated here, validated once more by the worker
straight from that string); its reply comes back on a per-job list (broker/replies.py), not through
Celery's result backend.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from kombu.exceptions import OperationalError
from pydantic import ValidationError

from broker.app import (
    EXECUTE_TASK, NOOP_TASK, RESUME_TASK, TRIGGER, UPLOAD_TASK, Settings, create_app,
)
from broker.jobs import event_json, job_json
from broker.replies import (
    WAIT_SLICE_SECONDS, Reply, parse_reply, raise_for, reply_max_bytes, wait_reply,
)
from broker.stores import ActionVersion, Binding, Stores
from sandbox.errors import ExecutionTimeout, InvalidInput, WorkerError
from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import ContinueRequest, Event, Result, ResumeInfo

DEFAULT_TIMEOUT_SECONDS = 30.0
EXECUTION_ID_MAX_CHARS = 200

@contextmanager
def _stores_errors() -> Iterator[None]:
    """Redis failures of the registry calls as the client's one error for "the back end failed"."""
    import redis

    try:
        yield
    except (redis.RedisError, OSError) as exc:
        raise WorkerError(f"cannot reach the stores: {type(exc).__name__}: {exc}") from None


@dataclass(frozen=True)
class _Sent:
    """A job handed to the broker: its id (the Celery task id) and, in embedded mode, its outcome."""

    job_id: str
    eager: Any = None


class PendingJob:
    """A submitted execution or resume; `wait()` returns its Result by the submission's deadline."""

    def __init__(self, client: ActionRunnerClient, execution_id: str, sent: _Sent,
                 deadline: float) -> None:
        self.execution_id = execution_id
        self.worker: str | None = None  # who answered, once `wait` returned
        self._client = client
        self._sent = sent
        self._deadline = deadline
        self._reply: Reply | None = None

    def wait(self) -> Result:
        """The job's Result. Raises ExecutionTimeout at the deadline (monotonic clock), WorkerError,
        or the job's own error (UnknownTenant, NothingBound, InvalidEvent, ResumeRefused...)."""
        if self._reply is None:  # the reply is popped from Redis once; `wait` may be called again
            self._reply = self._client._wait(self._sent, self._deadline,
                                             what=f"execution {self.execution_id}")
        reply = self._reply
        self.worker = reply.worker
        if not reply.ok or reply.result is None:
            raise_for(reply.error)
        try:
            return Result.model_validate_json(reply.result)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise WorkerError(f"the worker's result is not a result document: {exc}") from None


class ActionRunnerClient:
    """The orchestrator's handle on one deployment (one broker URL, key prefix and trigger).

    `broker_url` None: embedded mode, everything in this process (in-memory stores, eager tasks,
    one jail); for demos and tests on a machine without Redis.
    """

    def __init__(
        self, broker_url: str | None = None, *, trigger: str = TRIGGER,
        prefix: str = "actionrunner", limits: Limits = DEFAULT_LIMITS,
        default_timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS, settings: Settings | None = None,
    ) -> None:
        self.settings = settings or Settings(broker_url=broker_url, prefix=prefix, trigger=trigger,
                                             limits=limits)
        self.default_timeout_seconds = default_timeout_seconds
        self.app = create_app(self.settings)
        self._stores: Stores | None = None
        self._replies: Any = None  # the redis client replies are awaited on (socket timeouts set)
        if not self.settings.embedded:
            import redis

            # Connects lazily, one connection per waiting thread. The socket timeout is above the
            # longest BLPOP, so a Redis that vanishes without closing the socket is noticed.
            self._replies = redis.Redis.from_url(self.settings.broker_url,
                                                 socket_timeout=WAIT_SLICE_SECONDS + 5,
                                                 socket_connect_timeout=5)

    # ---------------------------------------------------------------------------------- registry

    @property
    def stores(self) -> Stores:
        """The deployment's stores (shared in-process ones in embedded mode)."""
        if self._stores is None:
            from worker.tasks import runtime

            if self.settings.embedded:
                self._stores = runtime(self.settings).stores
            else:
                from broker.stores import open_stores

                self._stores = open_stores(self.settings.broker_url, prefix=self.settings.prefix,
                                           limits=self.settings.limits)
        return self._stores

    def upload_action(
        self, tenant: str, name: str, source: str, secrets: Mapping[str, str] | None = None, *,
        timeout: float | None = None,
    ) -> ActionVersion:
        """Compile `source` in a worker's jail and store it as the action's next version.

        Raises CompileFailed (with every diagnostic), InvalidInput (bad name, secrets, size),
        LimitExceeded, ExecutionTimeout, WorkerError."""
        request = {"tenant": tenant, "name": name, "source": source, "secrets": dict(secrets or {})}
        reply = self._call(UPLOAD_TASK, request, timeout, what=f"the upload of {name!r}")
        if not reply.ok or reply.version is None:
            raise_for(reply.error)
        return ActionVersion(**reply.version)  # type: ignore[arg-type]

    def bind(self, tenant: str, actions: Sequence[tuple[str, int] | Binding]) -> list[Binding]:
        """Bind `actions` (name, version), in order, to the trigger; [] unbinds. Rebinding an older
        version is a rollback. Raises UnknownAction, LimitExceeded, InvalidInput."""
        bindings = [a if isinstance(a, Binding) else Binding(name=a[0], version=a[1]) for a in actions]
        with _stores_errors():
            return self.stores.registry.bind(tenant, self.settings.trigger, bindings)

    def list_actions(self, tenant: str) -> list[ActionVersion]:
        """The latest version of each of the tenant's actions (secrets never included)."""
        with _stores_errors():
            return self.stores.registry.list_actions(tenant)

    def versions(self, tenant: str, name: str) -> list[ActionVersion]:
        """Every kept version of one action, oldest first. Raises UnknownAction."""
        with _stores_errors():
            return self.stores.registry.versions(tenant, name)

    def bound(self, tenant: str) -> list[Binding]:
        """What is bound to the trigger. Raises UnknownTenant, NothingBound."""
        with _stores_errors():
            return self.stores.registry.bound(tenant, self.settings.trigger)

    # -------------------------------------------------------------------------------- executions

    def submit(
        self, tenant: str, event: Event | Mapping[str, Any] | str | bytes, *,
        execution_id: str | None = None, timeout: float | None = None,
        resume: ResumeInfo | None = None, continue_request: ContinueRequest | Mapping[str, Any] | None = None,
    ) -> PendingJob:
        """Validate and send one execution (or, with `resume`, one resume); returns at once.

        The job expires in the queue at its deadline, so a worker never runs a job nobody waits for.
        Raises InvalidEvent (naming the field) or InvalidInput before sending, WorkerError when the
        broker cannot be reached."""
        execution_id = execution_id if execution_id is not None else uuid.uuid4().hex
        if not isinstance(execution_id, str) or not 0 < len(execution_id) <= EXECUTION_ID_MAX_CHARS:
            raise InvalidInput(f"must be 1 to {EXECUTION_ID_MAX_CHARS} characters",
                               field="execution_id")
        fields: dict[str, Any] = {"tenant": tenant, "execution_id": execution_id}
        task = EXECUTE_TASK
        if resume is not None:
            if continue_request is None:
                raise InvalidInput("a resume needs the continue request", field="continue_request")
            try:
                fields["resume"] = ResumeInfo.model_validate(resume).model_dump(mode="json")
                fields["continue_request"] = ContinueRequest.model_validate(
                    continue_request).model_dump(mode="json")
            except ValidationError as exc:
                raise InvalidInput(str(exc.errors()[0]["msg"]), field="resume") from None
            task = RESUME_TASK
        return self._submit_job(task, fields, event, timeout)

    def _submit_job(self, task: str, fields: dict[str, Any],
                    event: Event | Mapping[str, Any] | str | bytes, timeout: float | None) -> PendingJob:
        job = job_json(fields, event_json(event, self.settings.limits))
        seconds = self.default_timeout_seconds if timeout is None else timeout
        deadline = time.monotonic() + seconds
        summary = f"(tenant={fields['tenant']!r}, execution_id={fields['execution_id']!r})"
        return PendingJob(self, fields["execution_id"], self._send(task, job, seconds, summary),
                          deadline)

    def execute(
        self, tenant: str, event: Event | Mapping[str, Any] | str | bytes, execution_id: str | None = None,
        timeout: float | None = None,
    ) -> Result:
        """Run the trigger's bound actions on `event`; returns or raises by `timeout` seconds.

        Submitting again with the same `execution_id` returns the stored result without running
        anything. Raises InvalidEvent, UnknownTenant, NothingBound, ExecutionTimeout, WorkerError."""
        return self.submit(tenant, event, execution_id=execution_id, timeout=timeout).wait()

    def resume(
        self, tenant: str, resume: ResumeInfo, continue_request: ContinueRequest | Mapping[str, Any],
        event: Event | Mapping[str, Any] | str | bytes, execution_id: str | None = None,
        timeout: float | None = None,
    ) -> Result:
        """Resume a suspended execution with the `/continue` request and a fresh event.

        Raises ResumeRefused (forged, expired, already used, actions changed), and as `execute`."""
        return self.submit(tenant, event, execution_id=execution_id, timeout=timeout, resume=resume,
                           continue_request=continue_request).wait()

    def noop(self, tenant: str, event: Event | Mapping[str, Any] | str | bytes, *,
             timeout: float | None = None) -> Result:
        """The pipeline's floor, for benchmarks and health checks: `event` is checked and sent
        exactly as by `execute`, to a worker task that runs nothing and answers an empty `completed`
        Result the same way. Raises InvalidEvent, ExecutionTimeout, WorkerError."""
        fields = {"tenant": tenant, "execution_id": uuid.uuid4().hex}
        return self._submit_job(NOOP_TASK, fields, event, timeout).wait()

    def close(self) -> None:
        """Release broker and store connections."""
        if self._stores is not None and not self.settings.embedded:
            self._stores.close()
        if self._replies is not None:
            self._replies.close()
        self.app.close()

    def __enter__(self) -> ActionRunnerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- helpers

    def _send(self, name: str, payload: Any, timeout: float, summary: str) -> _Sent:
        task = self.app.tasks[name]
        if self.settings.embedded:
            eager = task.apply(args=(payload,))
            return _Sent(job_id=eager.id, eager=eager)
        job_id = uuid.uuid4().hex
        # The message's printable form (worker logs, monitoring) names the job, never its content:
        # uploads carry secrets, events carry users' data.
        try:
            task.apply_async(args=(payload,), task_id=job_id, expires=timeout, retry=True,
                             argsrepr=summary, kwargsrepr="{}")
        except (OperationalError, OSError) as exc:
            raise WorkerError(f"cannot reach the broker: {exc}") from None
        return _Sent(job_id=job_id)

    def _wait(self, sent: _Sent, deadline: float, *, what: str) -> Reply:
        """The reply to a sent job by `deadline` (monotonic seconds); ExecutionTimeout after it."""
        if sent.eager is not None:
            if sent.eager.state != "SUCCESS":
                raise WorkerError(f"the worker failed {what}: {sent.eager.result!r}")
            return parse_reply(sent.eager.result)
        if deadline - time.monotonic() <= 0:
            raise ExecutionTimeout(f"no worker answered {what} before the deadline")
        import redis

        try:
            reply = wait_reply(self._replies, self.settings.prefix, sent.job_id, deadline=deadline,
                               max_bytes=reply_max_bytes(self.settings.limits))
        except (redis.RedisError, OSError) as exc:
            raise WorkerError(f"lost the broker while waiting for {what}: {exc}") from None
        if reply is None:
            raise ExecutionTimeout(
                f"no worker answered {what} within the deadline; it may still run and be stored")
        return reply

    def _call(self, name: str, payload: dict[str, Any], timeout: float | None, *, what: str) -> Reply:
        seconds = self.default_timeout_seconds if timeout is None else timeout
        deadline = time.monotonic() + seconds
        summary = f"(tenant={payload.get('tenant')!r}, name={payload.get('name')!r})"
        return self._wait(self._send(name, payload, seconds, summary), deadline, what=what)

