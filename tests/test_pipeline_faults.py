"""Faults: a worker SIGKILLed mid-run, Redis restarted, a worker that never answers, a job whose
worker keeps dying.

The counting action increments a per-execution counter in the cache: a job whose cache writes were
applied twice would show a count of 2.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

import pytest

from broker.client import ActionRunnerClient
from sandbox.errors import ExecutionTimeout
from tests.support.redis_server import PrivateRedis, cleanup_private, redis_server_binary
from tests.support.workers import COUNTER, WorkerProcess, deployment

pytestmark = [pytest.mark.redis, pytest.mark.slow]


BUSY = '''
def on_execute_post_challenge(event, api):
    while True:
        pass
'''

# The cache holds at most 20 records per tenant: 50 tenants x 20 jobs, one counter key per job.
TENANTS, JOBS_PER_TENANT = 50, 20
# Short enough for the test to recover a killed worker's job quickly, far above a tiny job's runtime.
FAST_RECOVERY = {"ACTIONRUNNER_VISIBILITY_TIMEOUT": "3", "ACTIONRUNNER_RESTORE_INTERVAL": "1"}


def now_ms() -> int:
    return int(time.time() * 1000)


def test_sigkill_of_a_worker_mid_run_loses_no_job_and_applies_no_cache_write_twice(
    redis_url: str,
) -> None:
    with deployment(redis_url, workers=3, concurrency=1, **FAST_RECOVERY) as (client, workers):
        tenants = [f"fault-{i}-{uuid.uuid4().hex[:6]}" for i in range(TENANTS)]
        for t in tenants:
            # Straight into the registry: uploads are tested elsewhere; this test is about jobs.
            client.stores.registry.add_version(t, "counter", COUNTER, {"who": t})
            client.bind(t, [("counter", 1)])
        pending = [
            (t, j, client.submit(t, {"user": {"user_id": "u"},
                                     "transaction": {"correlation_id": f"j{j}"}}, timeout=120))
            for j in range(JOBS_PER_TENANT) for t in tenants
        ]

        for _t, _j, job in pending[:200]:
            job.wait()
        victim = workers[1]
        _wait_for_busy_pool_process(victim)  # so a job is surely in flight there (not yet acked)
        # The whole process group at once: main process and pool process. The kill lands anywhere
        # in the victim's cycle, often just after it took its next job off the queue: that job
        # must be registered as unacknowledged already (broker/fetch.lua) or it is lost for good.
        victim.kill()

        served: dict[str, int] = {}
        for t, _j, job in pending:
            result = job.wait()
            assert result.status == "completed", result
            url = [c for c in result.commands if c.type == "transaction.set_result_url"][0]
            assert url.url == f"https://done.example/{t}"
            served[job.worker or "?"] = served.get(job.worker or "?", 0) + 1
        print("\nper-worker share (w2 killed after ~200 jobs):", dict(sorted(served.items())))

        for t in tenants:
            snapshot = client.stores.cache.snapshot(t, client.settings.trigger, now_ms=now_ms())
            counts = {key: record["value"] for key, record in snapshot.items()}
            assert counts == {f"n-j{j}": "1" for j in range(JOBS_PER_TENANT)}, t
        assert victim.hostname in served  # it did take part before it died


def test_uploads_survive_a_redis_restart_with_appendonly() -> None:
    if redis_server_binary() is None:
        pytest.skip("NO redis-server binary: the restart test did NOT run")
    server = PrivateRedis(appendonly=True).start()
    try:
        with deployment(server.url, workers=1, concurrency=1) as (client, _workers):
            t = "durable"
            version = client.upload_action(t, "counter", COUNTER, {"who": t})
            client.bind(t, [("counter", version.version)])

            server.restart()

            result = client.execute(t, {"user": {"user_id": "u"},
                                        "transaction": {"correlation_id": "after-restart"}},
                                    timeout=60)
            assert result.status == "completed"
            assert [(a.name, a.version) for a in result.actions] == [("counter", version.version)]
            assert [v.version for v in client.versions(t, "counter")] == [version.version]
    finally:
        cleanup_private(server)


def test_a_stopped_worker_makes_execute_fail_with_execution_timeout(redis_url: str) -> None:
    with deployment(redis_url, workers=1, concurrency=1) as (client, workers):
        t = "frozen"
        client.stores.registry.add_version(t, "counter", COUNTER, {"who": t})
        client.bind(t, [("counter", 1)])
        job_event = {"user": {"user_id": "u"}, "transaction": {"correlation_id": "c"}}
        assert client.execute(t, job_event).status == "completed"
        assert workers[0].process is not None
        os.killpg(workers[0].process.pid, signal.SIGSTOP)
        try:
            with pytest.raises(ExecutionTimeout):
                client.execute(t, job_event, timeout=1.0)
        finally:
            os.killpg(workers[0].process.pid, signal.SIGCONT)


def test_a_job_whose_worker_keeps_dying_gets_a_stored_failed_result(redis_url: str) -> None:
    env = {"ACTIONRUNNER_MAX_DELIVERIES": "1", "ACTIONRUNNER_LIMIT_ACTION_CPU_SECONDS": "10",
           **FAST_RECOVERY}
    with deployment(redis_url, workers=1, concurrency=1, **env) as (client, workers):
        t = "poison"
        client.stores.registry.add_version(t, "busy", BUSY, {})
        client.bind(t, [("busy", 1)])
        job = client.submit(t, {"user": {"user_id": "u"}}, execution_id="poison-1", timeout=60)

        pool, jailed = _wait_for_busy_pool_process(workers[0])
        os.kill(pool, signal.SIGKILL)  # the pool process dies mid-job: Celery requeues the job

        result = job.wait()
        for pid in jailed:  # the orphaned fork server and its busy child: do not leave them running
            _kill_quietly(pid)
        assert result.status == "failed" and result.error is not None
        assert result.error.type == "WorkerError"
        assert client.stores.results.get(t, "poison-1") == result.model_dump_json()


def _wait_for_busy_pool_process(worker: WorkerProcess) -> tuple[int, list[int]]:
    """The pid of the worker's pool process once it runs a job, and the pids of its fork server and
    the jailed child running the job."""
    assert worker.process is not None
    main = worker.process.pid
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for pool in _children(main):
            for server in _children(pool):
                busy = _children(server)
                if busy:  # the fork server has forked an action's child
                    return pool, [server, *busy]
        time.sleep(0.02)
    raise AssertionError(f"no pool process started a job:\n{worker.log()}")


def _kill_quietly(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found
