"""The Celery application: JSON-only messages, one queue per trigger, settings for a fast and safe
request/response workload.

`Settings` is everything a worker and a client must agree on (broker URL, key prefix, trigger, limits,
redelivery bound). `create_app(settings)` builds a configured app with the tasks of `worker.tasks`
registered on it. With no broker URL the app is *embedded*: tasks run eagerly in the calling process
against in-memory stores, so the whole pipeline works on a machine without Redis.

Every Redis key Celery and kombu write (queues, unacked messages) lives under
`f"{settings.prefix}:celery:"` (kombu's `global_keyprefix`), and every reply under
`f"{settings.prefix}:reply:"`, so two deployments (or two test runs) sharing one Redis never see each
other's queues or replies. Celery has no result backend here: see broker/replies.py.

`celery -A broker.app worker` works too: the module attribute `app` is built lazily from the
environment (`Settings.from_env`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from kombu import Queue

from sandbox.limits import DEFAULT_LIMITS, Limits

TRIGGER = "password-reset-post-challenge"
UPLOAD_QUEUE = "actionrunner-uploads"

EXECUTE_TASK = "actionrunner.execute"
RESUME_TASK = "actionrunner.resume"
UPLOAD_TASK = "actionrunner.upload"
NOOP_TASK = "actionrunner.noop"


@dataclass(frozen=True)
class Settings:
    """What workers and clients of one deployment share. Durations in seconds.

    `broker_url` None means embedded (eager tasks, in-memory stores, one process).
    `visibility_timeout_seconds`: how long a delivered but unacknowledged message stays invisible
    before kombu hands it to another worker; None = 3x the execution wall limit + 30 s.
    `restore_interval_seconds`: how often a worker sweeps for such abandoned messages.
    `max_deliveries`: a job delivered more often than this (its worker keeps dying) gets a stored
    `failed` result with type WorkerError instead of running again.
    `reply_ttl_seconds`: how long a job's reply waits on its list for a client that is late.
    """

    broker_url: str | None = None
    prefix: str = "actionrunner"
    trigger: str = TRIGGER
    limits: Limits = field(default=DEFAULT_LIMITS)
    max_deliveries: int = 3
    visibility_timeout_seconds: float | None = None
    restore_interval_seconds: float = 10.0
    result_ttl_seconds: int = 24 * 3600
    reply_ttl_seconds: int = 600

    @property
    def embedded(self) -> bool:
        return self.broker_url is None

    @property
    def queue(self) -> str:
        """The queue of this trigger's executions and resumes."""
        return self.trigger

    @property
    def celery_keyprefix(self) -> str:
        return f"{self.prefix}:celery:"

    @property
    def visibility_timeout(self) -> float:
        if self.visibility_timeout_seconds is not None:
            return self.visibility_timeout_seconds
        return 3 * self.limits.execution_wall_seconds + 30

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Settings from `REDIS_URL` (or `ACTIONRUNNER_BROKER_URL`), `ACTIONRUNNER_PREFIX`,
        `ACTIONRUNNER_TRIGGER`, `ACTIONRUNNER_MAX_DELIVERIES`, `ACTIONRUNNER_VISIBILITY_TIMEOUT`,
        `ACTIONRUNNER_RESTORE_INTERVAL`, the `ACTIONRUNNER_LIMIT_*` limits; `overrides` that are not
        None win. Raises ValueError naming the variable when a value does not parse."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        url = env.get("ACTIONRUNNER_BROKER_URL") or env.get("REDIS_URL")
        if url:
            values["broker_url"] = url
        for var, name, kind in (
            ("ACTIONRUNNER_PREFIX", "prefix", str),
            ("ACTIONRUNNER_TRIGGER", "trigger", str),
            ("ACTIONRUNNER_MAX_DELIVERIES", "max_deliveries", int),
            ("ACTIONRUNNER_VISIBILITY_TIMEOUT", "visibility_timeout_seconds", float),
            ("ACTIONRUNNER_RESTORE_INTERVAL", "restore_interval_seconds", float),
            ("ACTIONRUNNER_RESULT_TTL", "result_ttl_seconds", int),
        ):
            if env.get(var):
                try:
                    values[name] = kind(env[var])
                except ValueError:
                    raise ValueError(f"{var}={env[var]!r} is not a {kind.__name__}") from None
        values["limits"] = Limits.from_env(dict(env))
        values.update({k: v for k, v in overrides.items() if v is not None})
        return dataclasses.replace(cls(), **values)


def celery_config(settings: Settings) -> dict[str, Any]:
    """The Celery configuration for `settings`; each setting says why it is there."""
    limits = settings.limits
    config: dict[str, Any] = {
        # SECURITY: JSON only. A pickle message is code execution in the worker for whoever can
        # write to the queue; such messages are refused (logged and dropped) before any task runs.
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # One queue per trigger, plus one for compile-on-upload so a burst of uploads never delays
        # executions on workers that serve both.
        "task_default_queue": settings.queue,
        "task_queues": (Queue(settings.queue), Queue(UPLOAD_QUEUE)),
        "task_routes": {
            EXECUTE_TASK: {"queue": settings.queue},
            RESUME_TASK: {"queue": settings.queue},
            NOOP_TASK: {"queue": settings.queue},
            UPLOAD_TASK: {"queue": UPLOAD_QUEUE},
        },
        "task_create_missing_queues": True,
        # Acknowledge after the task ran: a worker killed mid-job leaves the message unacknowledged,
        # so another worker runs it (the commit is idempotent per execution id, so this is safe).
        "task_acks_late": True,
        # A pool process killed mid-job (OOM killer, SIGKILL) requeues the message instead of
        # acknowledging it; bounded by `max_deliveries` in worker.tasks.
        "task_reject_on_worker_lost": True,
        # Reserve one message per idle pool process and no more (Redis only): jobs are short, and a
        # message reserved by a busy or dying worker is a message another worker could be serving.
        "worker_prefetch_multiplier": 1,
        "worker_disable_prefetch": True,
        # A lost broker connection means unacknowledged messages will be redelivered anyway; stop
        # running them here rather than run them twice.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "broker_connection_retry_on_startup": True,
        # Never let the trusted side of a worker grow without bound (KiB): the pool process is
        # replaced after the job that crossed it. Tenant code runs in jailed children, not here.
        "worker_max_memory_per_child": 512 * 1024,
        # The jail enforces the execution's wall clock; these are the backstops for the trusted
        # side (a stuck store call): soft raises in the task, hard kills the pool process.
        "task_soft_time_limit": limits.execution_wall_seconds + 10,
        "task_time_limit": limits.execution_wall_seconds + 20,
        # No Celery results: the durable result is in the ResultStore, and the reply travels on the
        # job's own list (broker/replies.py: one RPUSH on the worker, one BLPOP on the client),
        # cheaper than the result backend's SET + PUBLISH and per-job SUBSCRIBE / UNSUBSCRIBE.
        "task_ignore_result": True,
        # Request/response: no events, no gossip, no remote control broadcast traffic.
        "worker_send_task_events": False,
        "task_send_sent_event": False,
        "worker_enable_remote_control": False,
    }
    if settings.embedded:
        config.update({
            # Embedded mode: tasks run in the caller's thread against in-memory stores.
            "broker_url": "memory://",
            "result_backend": "cache+memory://",
            "task_always_eager": True,
            "task_eager_propagates": False,
            "task_store_eager_result": False,
        })
        return config
    transport_options = {
        "global_keyprefix": settings.celery_keyprefix,
        # Above the longest execution (so a running job is never handed to a second worker), and
        # the time after which a job whose worker died is redelivered.
        "visibility_timeout": settings.visibility_timeout,
        # Sweep for abandoned messages every `restore_interval_seconds`, really scanning each time.
        "unacked_restore_interval": settings.restore_interval_seconds,
        "unacked_restore_throttle": 1,
        # A client must fail by its deadline even when Redis vanishes without closing the socket.
        "socket_timeout": 10,
        "socket_connect_timeout": 5,
    }
    config.update({
        "broker_url": settings.broker_url,
        # kombu's Redis transport, minus one way to crash it: see broker/transport.py.
        "broker_transport": "broker.transport:GuardedRedisTransport",
        "broker_transport_options": transport_options,
        "redis_socket_timeout": 10,
        "redis_socket_connect_timeout": 5,
        # Publishing retries briefly, then fails: the client turns that into one clear error.
        "task_publish_retry_policy": {
            "max_retries": 3, "interval_start": 0, "interval_step": 0.5, "interval_max": 1,
        },
        "broker_pool_limit": 32,
    })
    return config


def create_app(settings: Settings) -> Celery:
    """A Celery app configured for `settings`, with the tasks of `worker.tasks` registered."""
    app = Celery("actionrunner", set_as_current=False)
    app.conf.update(celery_config(settings))
    app.actionrunner_settings = settings  # type: ignore[attr-defined]
    from worker.tasks import register_tasks

    register_tasks(app)
    return app


def settings_of(app: Celery) -> Settings:
    """The `Settings` an app was created with."""
    settings: Settings = app.actionrunner_settings  # type: ignore[attr-defined]
    return settings


_default_app: Celery | None = None


def __getattr__(name: str) -> Any:
    """`broker.app.app`: the app of `Settings.from_env()`, for `celery -A broker.app worker`."""
    global _default_app
    if name in ("app", "celery"):
        if _default_app is None:
            _default_app = create_app(Settings.from_env())
        return _default_app
    raise AttributeError(name)
