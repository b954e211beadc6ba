"""Real `actionrunner worker` processes for the pipeline tests: start, wait until ready, kill, stop.

Each worker runs in its own process group with its own log file; `stop()` ends it with SIGTERM then
SIGKILL of that group only (the worker, its pool processes, their jails).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from broker.client import ActionRunnerClient

REPO = Path(__file__).resolve().parents[2]
TEST_SECRET_KEY = "ab" * 32

# An action that counts its own executions in the cache (one key per correlation id) and says whose
# secret it saw: a job whose cache writes were applied twice reads 2.
COUNTER = '''
def on_execute_post_challenge(event, api):
    key = "n-" + event.transaction.correlation_id
    record = api.cache.get(key)
    count = int(record.value) + 1 if record else 1
    api.cache.set(key, str(count), ttl=3600000)
    api.transaction.set_result_url("https://done.example/" + event.secrets.who, {"count": str(count)})
'''


def worker_env(redis_url: str, prefix: str, **extra: str) -> dict[str, str]:
    """The environment a test worker (and a test client in a subprocess) runs with."""
    env = dict(os.environ)
    env.update({
        "REDIS_URL": redis_url,
        "ACTIONRUNNER_PREFIX": prefix,
        "ACTIONRUNNER_SECRET_KEY": TEST_SECRET_KEY,
        "PYTHONPATH": str(REPO),
    })
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    """One `actionrunner worker` subprocess serving the deployment at (redis_url, prefix)."""

    redis_url: str
    prefix: str
    name: str = "w1"
    concurrency: int = 1
    extra_env: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen[bytes] | None = None
    log_path: Path = field(default_factory=lambda: Path(tempfile.mkstemp(prefix="arworker-",
                                                                         suffix=".log")[1]))

    @property
    def hostname(self) -> str:
        return f"{self.name}@{self.prefix}"

    def start(self, *, timeout: float = 60.0) -> WorkerProcess:
        """Start the worker and return once it consumes (its log says "ready"); RuntimeError else."""
        argv = [sys.executable, "-m", "worker", "worker", "--concurrency", str(self.concurrency),
                "--hostname", self.hostname, "--loglevel", "INFO"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the child
        self.process = subprocess.Popen(
            argv, cwd=REPO, env=worker_env(self.redis_url, self.prefix, **self.extra_env),
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log()}")
            if " ready." in self.log():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"worker {self.name} did not get ready:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL the worker's whole process group at once (no warm shutdown, no acks)."""
        if self.process is not None:
            _signal_group(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL of the group after 10 s."""
        if self.process is not None and self.process.poll() is None:
            _signal_group(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        if self.process is not None:
            _signal_group(self.process.pid, signal.SIGKILL)  # stragglers of the group
            self.process.wait(timeout=10)
        self.process = None


def _signal_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass  # already gone: fine


def new_prefix() -> str:
    """A key prefix (and so a queue namespace) of one test module's own."""
    return f"artest:{uuid.uuid4().hex[:12]}"


def delete_prefix(redis_url: str, prefix: str) -> None:
    """Delete every key under `prefix` (the stores' keys and Celery's queues and replies)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
    if keys:
        client.delete(*keys)
    client.close()


@contextmanager
def deployment(
    redis_url: str, *, workers: int = 1, concurrency: int = 1, **extra_env: str
) -> Iterator[tuple[ActionRunnerClient, list[WorkerProcess]]]:
    """A fresh prefix, `workers` started worker processes and a client; everything is stopped and
    every key deleted afterwards."""
    from broker.client import ActionRunnerClient

    prefix = new_prefix()
    started: list[WorkerProcess] = []
    client = ActionRunnerClient(redis_url, prefix=prefix)
    try:
        for index in range(workers):
            worker = WorkerProcess(redis_url, prefix, name=f"w{index + 1}", concurrency=concurrency,
                                   extra_env=dict(extra_env))
            started.append(worker)
            worker.start()
        yield client, started
    finally:
        for worker in started:
            worker.stop()
            worker.log_path.unlink(missing_ok=True)
        client.close()
        delete_prefix(redis_url, prefix)
