"""The orchestrator's client: upload and bind actions, submit executions and resumes, get results.

Every call returns typed values (`Result`, `ActionVersion`, `Binding`) or raises exactly one error of
`sandbox.errors`: InvalidEvent / InvalidInput (checked here, before anything is sent, and again on the
worker), UnknownTenant, NothingBound, UnknownAction, LimitExceeded, CompileFailed, ResumeRefused,
ExecutionTimeout (no answer by the deadline: `execute` never waits longer than its `timeout`) and
WorkerError (the worker or the broker failed; not the tenant's code, which gives a `failed` Result).

The registry calls (`bind`, `list_actions`, `versions`) go straight to the stores; compilation
(`upload_action`) and executions go through the broker to a worker, because only a worker has a jail.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from celery.exceptions import TimeoutError as CeleryTimeout
from kombu.exceptions import OperationalError
from pydantic import ValidationError

from broker.app import EXECUTE_TASK, RESUME_TASK, TRIGGER, UPLOAD_TASK, Settings, create_app
from broker.replies import Reply, raise_for
from broker.stores import ActionVersion, Binding, Stores
from sandbox.errors import ExecutionTimeout, InvalidEvent, InvalidInput, WorkerError
from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import ContinueRequest, Event, Result, ResumeInfo, event_to_dict, parse_event

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


class PendingJob:
    """A submitted execution or resume; `wait()` returns its Result by the submission's deadline."""

    def __init__(self, execution_id: str, async_result: Any, deadline: float) -> None:
        self.execution_id = execution_id
        self.worker: str | None = None  # who answered, once `wait` returned
        self._async = async_result
        self._deadline = deadline

    def wait(self) -> Result:
        """The job's Result. Raises ExecutionTimeout at the deadline (monotonic clock), WorkerError,
        or the job's own error (UnknownTenant, NothingBound, InvalidEvent, ResumeRefused...)."""
        reply = _wait_reply(self._async, self._deadline, what=f"execution {self.execution_id}")
        self.worker = reply.worker
        if not reply.ok or reply.result is None:
            raise_for(reply.error)
        try:
            return Result.model_validate_json(reply.result)  # type: ignore[arg-type]
        except ValidationError as exc:
            raise WorkerError(f"the worker's result is not a result document: {exc}") from None


def _wait_reply(async_result: Any, deadline: float, *, what: str) -> Reply:
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise ExecutionTimeout(f"no worker answered {what} before the deadline")
    try:
        value = async_result.get(timeout=remaining, propagate=False, disable_sync_subtasks=False)
    except CeleryTimeout:
        raise ExecutionTimeout(
            f"no worker answered {what} within the deadline; it may still run and be stored"
        ) from None
    except (OperationalError, OSError) as exc:
        raise WorkerError(f"lost the broker while waiting for {what}: {exc}") from None
    state = async_result.state
    if state == "REVOKED":
        raise ExecutionTimeout(f"{what} expired in the queue before a worker took it")
    if state != "SUCCESS":
        raise WorkerError(f"the worker failed {what}: {type(value).__name__}: {value}")
    try:
        return Reply.model_validate(value)
    except ValidationError as exc:
        raise WorkerError(f"the worker's reply to {what} is malformed: {exc}") from None


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
        job: dict[str, Any] = {"tenant": tenant, "event": self._event_data(event),
                               "execution_id": execution_id}
        task = EXECUTE_TASK
        if resume is not None:
            if continue_request is None:
                raise InvalidInput("a resume needs the continue request", field="continue_request")
            try:
                job["resume"] = ResumeInfo.model_validate(resume).model_dump(mode="json")
                job["continue_request"] = ContinueRequest.model_validate(
                    continue_request).model_dump(mode="json")
            except ValidationError as exc:
                raise InvalidInput(str(exc.errors()[0]["msg"]), field="resume") from None
            task = RESUME_TASK
        seconds = self.default_timeout_seconds if timeout is None else timeout
        deadline = time.monotonic() + seconds
        return PendingJob(execution_id, self._send(task, job, seconds), deadline)

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

    def close(self) -> None:
        """Release broker and store connections."""
        if self._stores is not None and not self.settings.embedded:
            self._stores.close()
        self.app.close()

    def __enter__(self) -> ActionRunnerClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------------------------- helpers

    def _event_data(self, event: Event | Mapping[str, Any] | str | bytes) -> dict[str, Any]:
        """The event as snake_case JSON data, after checking its size and fields."""
        limit = self.settings.limits.event_max_bytes
        if isinstance(event, Event):
            parsed = event
        else:
            if isinstance(event, (str, bytes)):
                raw = event.encode("utf-8", "surrogatepass") if isinstance(event, str) else event
            else:
                try:
                    raw = json.dumps(event, separators=(",", ":")).encode("utf-8", "surrogatepass")
                except (TypeError, ValueError) as exc:
                    raise InvalidEvent(f"not JSON data: {exc}", source="event") from None
            if len(raw) > limit:
                raise InvalidEvent(f"{len(raw)} bytes, over the limit of {limit} bytes",
                                   source="event", field="(size)")
            if isinstance(event, (str, bytes)):
                try:
                    event = json.loads(raw)
                except ValueError as exc:
                    raise InvalidEvent(f"not JSON: {exc}", source="event") from None
            parsed = parse_event(event)
        data = event_to_dict(parsed)
        size = len(json.dumps(data, separators=(",", ":")).encode("utf-8", "surrogatepass"))
        if size > limit:
            raise InvalidEvent(f"{size} bytes, over the limit of {limit} bytes", source="event",
                               field="(size)")
        return data

    def _send(self, name: str, payload: dict[str, Any], timeout: float) -> Any:
        task = self.app.tasks[name]
        if self.settings.embedded:
            return task.apply(args=(payload,))
        # The message's printable form (worker logs, monitoring) names the job, never its content:
        # uploads carry secrets, events carry users' data.
        summary = f"(tenant={payload.get('tenant')!r}, execution_id={payload.get('execution_id')!r})"
        try:
            return task.apply_async(args=(payload,), expires=timeout, retry=True, argsrepr=summary,
                                    kwargsrepr="{}")
        except (OperationalError, OSError) as exc:
            raise WorkerError(f"cannot reach the broker: {exc}") from None

    def _call(self, name: str, payload: dict[str, Any], timeout: float | None, *, what: str) -> Reply:
        seconds = self.default_timeout_seconds if timeout is None else timeout
        deadline = time.monotonic() + seconds
        return _wait_reply(self._send(name, payload, seconds), deadline, what=what)
