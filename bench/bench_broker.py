"""The broker benchmark (prints, never asserts): a no-op round trip (the floor) side by side with a
full execution of an example action, through the same client path, Redis, worker and reply path.

    python -m bench.bench_broker [--jobs N] [--threads T]

The no-op is `client.noop`: the same event checked and sent as by `client.execute`, answered by a
worker task that runs nothing, with a Result parsed by the client; so the difference between the two
rows is exactly the worker's execution work. Measures p50 / p99 round trip and jobs/s, sequential
and with T client threads; worker CPU ms per job over every process of the worker's tree, split into
the main process, the pool processes and the jail (fork servers and the jailed children they reaped:
grandchildren of the pool processes), from /proc/<pid>/stat; the client's own CPU ms per job (it
shares the machine); and how evenly three workers share jobs.
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


def _tree_cpu_seconds(root: int) -> tuple[float, float, float]:
    """CPU seconds (user + system) of `root`'s process tree: (main, pool, jail) = depth 0, 1 and
    2+. A live process counts its own CPU at its depth and what it reaped (cutime + cstime: children
    that exited, e.g. each jailed child reaped by its fork server) one level deeper."""
    ticks = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        own = (int(fields[11]) + int(fields[12])) / ticks  # utime stime
        reaped = (int(fields[13]) + int(fields[14])) / ticks  # cutime cstime
        stats[int(entry.name)] = (int(fields[1]), own, reaped)
    by_depth = [0.0, 0.0, 0.0]
    frontier = [(root, 0)]
    while frontier:
        pid, depth = frontier.pop()
        if pid in stats:
            by_depth[min(depth, 2)] += stats[pid][1]
            by_depth[min(depth + 1, 2)] += stats[pid][2]
        frontier.extend((child, depth + 1) for child, (ppid, _, _) in stats.items() if ppid == pid)
    return by_depth[0], by_depth[1], by_depth[2]


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
                return client.noop("bench", event, timeout=60)

            def execute() -> Any:
                return client.execute("bench", event, timeout=60)

            for call in (noop, execute):  # warm up: pool processes, jails, connections
                _measure(call, 20, 2)
            rows = {}
            print(f"\n{'':34}{'p50 ms':>8}{'p99 ms':>8}{'jobs/s':>8}   worker CPU ms/job: "
                  f"{'all':>5} {'main':>5} {'pool':>5} {'jail':>5}   client CPU ms/job")
            for label, call in (("no-op", noop), ("execute " + EXAMPLE, execute)):
                for threads in (1, args.threads):
                    cpu_before = _tree_cpu_seconds(worker_pid)
                    client_before = time.process_time()
                    times, wall = _measure(call, args.jobs, threads)
                    client_ms = (time.process_time() - client_before) * 1000 / args.jobs
                    cpu_ms = [(after - before) * 1000 / args.jobs
                              for before, after in zip(cpu_before, _tree_cpu_seconds(worker_pid))]
                    p50, p99 = statistics.median(times), _percentile(times, 0.99)
                    rows[(label, threads)] = (p50, args.jobs / wall)
                    name = f"{label}, {threads} thread{'s' if threads > 1 else ''}"
                    print(f"{name:34}{p50:8.2f}{p99:8.2f}{args.jobs / wall:8.0f}   {'':19}"
                          f"{sum(cpu_ms):5.2f} {cpu_ms[0]:5.2f} {cpu_ms[1]:5.2f} {cpu_ms[2]:5.2f}"
                          f"   {client_ms:17.2f}")
            exec_label = "execute " + EXAMPLE
            print(f"\nexecution p50 / no-op p50 (sequential): "
                  f"{rows[(exec_label, 1)][0] / rows[('no-op', 1)][0]:.2f}x (target <= 1.5x)")
            print(f"execution / no-op throughput ({args.threads} threads): "
                  f"{rows[(exec_label, args.threads)][1] / rows[('no-op', args.threads)][1]:.2f}x"
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
