"""The jail benchmark (prints, never asserts): one small realistic action run three ways, side by side
in one process, interleaved in rounds so machine noise hits all three alike:

- in-process: `sandbox.execute.run_handler` directly (no isolation: the floor);
- jail: `sandbox.jail.Jail.run` (fork server, one jailed child per execution), back to back and with
  a short pause between executions (the spare child is then ready: the latency a lightly loaded
  worker sees);
- fresh interpreter: `python -c` per execution that imports the runtime and runs the handler (the way
  subprocess-per-run sandboxes work).

    python -m bench.bench_jail [--rounds R] [--per-round N] [--fresh-per-round F]

Prints p50 / p99 latency per execution, CPU ms per execution and executions per CPU-second (all
processes involved: "per core"; on a 2-core worker CPU per execution decides throughput), the jail's
CPU split (caller / fork server / jailed children, from the kernel's rusage figures in /proc), and
the ratios the targets are stated in: jail p50 - in-process p50 (target < 1.5 ms) and fresh p50 /
jail p50 (target >= 20).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from sandbox.execute import run_handler  # noqa: E402
from sandbox.jail import Jail  # noqa: E402
from sandbox.runner import ActionRequest  # noqa: E402

# The deny-by-domain example action, as a tenant would upload it.
SOURCE = (REPO / "examples" / "deny_by_email_domain.py").read_text(encoding="utf-8")

EVENT = {
    "user": {"user_id": "auth0|65a1f0c2e4b0a1b2c3d4e5f6", "email": "throwaway.user@mailinator.com",
             "email_verified": True, "name": "Throwaway User", "app_metadata": {"plan": "business"},
             "user_metadata": {"locale": "en"}, "enrolled_factors": []},
    "request": {"ip": "203.0.113.42", "method": "POST", "hostname": "login.example.com",
                "user_agent": "Mozilla/5.0 (X11; Linux x86_64) Firefox/132.0", "language": "en-US",
                "geoip": {"country_code": "PT", "city_name": "Lisbon"}},
    "transaction": {"state": "hKFo2SBQd2R4cmVzZXQtc3RhdGUtMDAx", "locale": "en"},
    "tenant": {"id": "example-tenant"}, "secrets": {},
}

REQUEST = ActionRequest(action="deny-by-domain", source=SOURCE, handler="on_execute_post_challenge",
                        event=EVENT, now_ms=1_767_225_600_000)

# A fresh interpreter per execution: import the runtime, read the request, run, print the answer.
FRESH_SCRIPT = """
import json, sys
from sandbox.execute import run_handler
from sandbox.runner import ActionRequest
request = ActionRequest(**json.loads(sys.stdin.read()))
sys.stdout.write(run_handler(request).model_dump_json())
"""


def _fresh_run() -> None:
    data = dataclasses.asdict(REQUEST)
    del data["limits"]
    done = subprocess.run(
        [sys.executable, "-c", FRESH_SCRIPT], input=json.dumps(data).encode(), capture_output=True,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)}, check=True,
    )
    json.loads(done.stdout)


def _server_cpu_seconds(pid: int) -> tuple[float, float]:
    """(CPU of the fork server itself, CPU of its reaped children), in seconds (rusage in /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / tick, (int(fields[13]) + int(fields[14])) / tick


def _own_cpu_seconds() -> float:
    self_usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (self_usage.ru_utime + self_usage.ru_stime + children.ru_utime + children.ru_stime)


@dataclasses.dataclass
class Series:
    name: str
    latencies_ms: list[float] = dataclasses.field(default_factory=list)
    cpu_seconds: float = 0.0
    # CPU seconds by process (caller, fork server, children), for the jail's series.
    cpu_parts: list[float] = dataclasses.field(default_factory=lambda: [0.0, 0.0, 0.0])

    def measure(self, runs: int, once: Callable[[], None], cpu: Callable[[], tuple[float, ...]],
                pause_seconds: float = 0.0) -> None:
        before = cpu()
        for _ in range(runs):
            if pause_seconds:
                time.sleep(pause_seconds)
            started = time.perf_counter()
            once()
            self.latencies_ms.append((time.perf_counter() - started) * 1000)
        used = [after - first for first, after in zip(before, cpu())]
        self.cpu_seconds += sum(used)
        for index, value in enumerate(used):
            self.cpu_parts[index] += value

    def cpu_ms_per_run(self, part: int | None = None) -> float:
        used = self.cpu_seconds if part is None else self.cpu_parts[part]
        return used * 1000 / len(self.latencies_ms)

    def p(self, share: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    def line(self) -> str:
        per_cpu_second = len(self.latencies_ms) / self.cpu_seconds if self.cpu_seconds else float("nan")
        return (f"{self.name:<28} n={len(self.latencies_ms):>5}  p50={self.p(0.5):8.3f} ms  "
                f"p99={self.p(0.99):8.3f} ms  mean={statistics.fmean(self.latencies_ms):8.3f} ms  "
                f"CPU {self.cpu_ms_per_run():7.3f} ms/exec  {per_cpu_second:6.0f} exec/CPU-s")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-round", type=int, default=200)
    parser.add_argument("--fresh-per-round", type=int, default=4)
    parser.add_argument("--pause-ms", type=float, default=3.0)
    args = parser.parse_args(argv)

    in_process = Series("in-process (no isolation)")
    jail_busy = Series("jail, back to back")
    jail_paused = Series(f"jail, {args.pause_ms:g} ms between runs")
    fresh = Series("fresh interpreter per run")
    with Jail() as jail:
        assert_ok = jail.run(REQUEST, timeout_seconds=20)
        if assert_ok.outcome != "ok":
            sys.exit(f"the jail did not run the action: {assert_ok.outcome} {assert_ok.detail}")
        fork_server = jail.fork_server_pid
        assert fork_server is not None

        def jail_cpu() -> tuple[float, float, float]:
            return (time.process_time(), *_server_cpu_seconds(fork_server))

        def jail_once() -> None:
            jail.run(REQUEST, timeout_seconds=20)

        for _ in range(args.rounds):
            in_process.measure(args.per_round, lambda: run_handler(REQUEST),
                               lambda: (time.process_time(),))
            jail_busy.measure(args.per_round, jail_once, jail_cpu)
            jail_paused.measure(args.per_round // 4, jail_once, jail_cpu, args.pause_ms / 1000)
            fresh.measure(args.fresh_per_round, _fresh_run, lambda: (_own_cpu_seconds(),))

    print(f"jail benchmark: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}, "
          f"{args.rounds} interleaved rounds")
    for series in (in_process, jail_busy, jail_paused, fresh):
        print("  " + series.line())
    for series in (jail_busy, jail_paused):
        print(f"  {series.name + ', CPU ms/exec:':<40} caller {series.cpu_ms_per_run(0):.3f}  "
              f"fork server {series.cpu_ms_per_run(1):.3f}  jailed children {series.cpu_ms_per_run(2):.3f}")
    print(f"  jail p50 - in-process p50:  back to back {jail_busy.p(0.5) - in_process.p(0.5):.3f} ms, "
          f"paused {jail_paused.p(0.5) - in_process.p(0.5):.3f} ms  (target < 1.5 ms)")
    print(f"  fresh p50 / jail p50:       back to back {fresh.p(0.5) / jail_busy.p(0.5):.1f}x, "
          f"paused {fresh.p(0.5) / jail_paused.p(0.5):.1f}x  (target >= 20x)")


if __name__ == "__main__":
    main()
