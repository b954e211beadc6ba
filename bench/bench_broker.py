"""The broker benchmark (prints, never asserts): a no-op Celery round trip (the floor) side by side
with a full execution of an example action, through the same Redis and the same worker.

    python -m bench.bench_broker [--jobs N] [--threads T]

Measures p50 / p99 round trip and jobs/s, sequential and with T client threads; worker-side CPU ms
per job (every process of the worker's tree: main, pool, fork server, and the jailed children they
reaped, from /proc/<pid>/stat); and how evenly three workers share jobs.
Redis: $REDIS_URL, else 127.0.0.1:6379, else a private redis-server.
"""

from __future__ import annotations

import argparse
import collections
import os
import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = "deny_by_email_domain"


def _redis_url() -> tuple[str, Any]:
    from tests.support.redis_server import PrivateRedis, ping

    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    if ping(url):
        return url, None
    server = PrivateRedis().start()
    return server.url, server


def _tree_cpu_seconds(root: int) -> float:
    """User + system CPU of `root` and every live descendant, plus what they reaped (seconds)."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid = int(fields[1])
        cpu = sum(int(f) for f in fields[11:15]) / ticks  # utime stime cutime cstime
        stats[int(entry.name)] = (ppid, cpu)
    total, frontier = 0.0, [root]
    while frontier:
        pid = frontier.pop()
        if pid in stats:
            total += stats[pid][1]
        frontier.extend(child for child, (ppid, _) in stats.items() if ppid == pid)
    return total


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _measure(call: Callable[[], Any], jobs: int, threads: int) -> tuple[list[float], float]:
    """Round-trip times (ms) of `jobs` calls spread over `threads` threads, and the wall time (s)."""
    times: list[float] = []
    lock = threading.Lock()
    per_thread = [jobs // threads + (1 if i < jobs % threads else 0) for i in range(threads)]

    def loop(count: int) -> None:
        mine = []
        for _ in range(count):
            started = time.perf_counter()
            call()
            mine.append((time.perf_counter() - started) * 1000)
        with lock:
            times.extend(mine)

    started = time.perf_counter()
    workers = [threading.Thread(target=loop, args=(n,)) for n in per_thread]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return times, time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the figures; returns 0."""
    import json

    from broker.app import NOOP_TASK
    from tests.support.workers import deployment

    parser = argparse.ArgumentParser(description="actionrunner broker benchmark")
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--threads", type=int, default=16)
    args = parser.parse_args(argv)
    url, private = _redis_url()
    source = (REPO / "examples" / f"{EXAMPLE}.py").read_text()
    event = json.loads((REPO / "examples" / f"{EXAMPLE}.event.json").read_text())
    print(f"broker benchmark: {args.jobs} jobs per run, Redis at {url}, {os.cpu_count()} CPUs")
    try:
        with deployment(url, workers=1, concurrency=2) as (client, workers):
            client.bind("bench", [("a", client.upload_action("bench", "a", source).version)])
            worker_pid = workers[0].process.pid  # type: ignore[union-attr]

            def noop() -> Any:
                return client.app.tasks[NOOP_TASK].apply_async(args=(None,), expires=60).get(timeout=60)

            def execute() -> Any:
                return client.execute("bench", event, timeout=60)

            for call in (noop, execute):  # warm up: pool processes, jails, connections
                _measure(call, 20, 2)
            rows = {}
            print(f"\n{'':26}{'p50 ms':>8}{'p99 ms':>8}{'jobs/s':>9}{'worker CPU ms/job':>19}")
            for label, call in (("no-op task", noop), ("execute " + EXAMPLE, execute)):
                for threads in (1, args.threads):
                    cpu_before = _tree_cpu_seconds(worker_pid)
                    times, wall = _measure(call, args.jobs, threads)
                    cpu_ms = (_tree_cpu_seconds(worker_pid) - cpu_before) * 1000 / args.jobs
                    p50, p99 = statistics.median(times), _percentile(times, 0.99)
                    rows[(label, threads)] = (p50, args.jobs / wall)
                    name = f"{label}, {threads} thread{'s' if threads > 1 else ''}"
                    print(f"{name:26}{p50:8.2f}{p99:8.2f}{args.jobs / wall:9.0f}{cpu_ms:19.2f}")
            exec_label = "execute " + EXAMPLE
            print(f"\nexecution p50 / no-op p50 (sequential): "
                  f"{rows[(exec_label, 1)][0] / rows[('no-op task', 1)][0]:.2f}x (target <= 1.5x)")
            print(f"execution / no-op throughput ({args.threads} threads): "
                  f"{rows[(exec_label, args.threads)][1] / rows[('no-op task', args.threads)][1]:.2f}x"
                  f" (target >= 0.7x)")

        with deployment(url, workers=3, concurrency=1) as (client, workers):
            client.bind("bench", [("a", client.upload_action("bench", "a", source).version)])
            pending = [client.submit("bench", event, timeout=120) for _ in range(args.jobs)]
            shares: collections.Counter[str] = collections.Counter()
            for job in pending:
                job.wait()
                shares[(job.worker or "?").split("@")[0]] += 1
            print(f"\nshare of {args.jobs} executions over three workers (concurrency 1 each): "
                  + ", ".join(f"{w} {100 * n / args.jobs:.0f}%" for w, n in sorted(shares.items())))
    finally:
        if private is not None:
            from tests.support.redis_server import cleanup_private

            cleanup_private(private)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
