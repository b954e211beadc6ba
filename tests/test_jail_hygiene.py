"""The jail over time and under failure: nothing accumulates (zombies, descriptors, memory), a dead
fork server takes its children with it and is replaced, refused layers are loud."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from sandbox.errors import JailBroken, JailUnavailable
from sandbox.jail import Jail
from sandbox.limits import MIB, Limits
from sandbox.runner import ActionRequest

LIMITS = Limits(action_cpu_seconds=1, action_memory_bytes=64 * MIB)
HOSTILE = "tests.jail_hostile"
SOURCE = (
    "def on_execute_post_challenge(event, api):\n"
    "    if event.user.email.endswith('@blocked.example'):\n"
    "        api.access.deny('domain blocked')\n"
)


def request(email: str) -> ActionRequest:
    return ActionRequest(
        action="deny-by-domain", source=SOURCE, handler="on_execute_post_challenge",
        event={"user": {"user_id": "auth0|1", "email": email}}, now_ms=0, limits=LIMITS,
    )


def children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(child) for child in text.split()]


def state(pid: int) -> str:
    """The process state letter (R, S, Z, ...) or "gone"."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return "gone"
    return stat.rsplit(")", 1)[1].split()[0]


def wait_for(condition, what: str) -> None:
    """Poll `condition` (not a timing assertion: a generous bound so a broken jail fails, not hangs)."""
    for _ in range(1000):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"never happened: {what}")


def idle_with_one_spare(fork_server: int) -> bool:
    """The fork server waits for a request and its one spare child waits for its request."""
    spares = children(fork_server)
    return len(spares) == 1 and state(spares[0]) == "S" and state(fork_server) == "S"


def sleeping(pid: int) -> bool:
    """Blocked in nanosleep/clock_nanosleep (running the `sleep` request, not waiting for one)."""
    try:
        return Path(f"/proc/{pid}/syscall").read_text().split()[0] in ("35", "230")
    except (FileNotFoundError, IndexError):
        return False


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def resident_kb(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


@pytest.mark.slow
def test_two_thousand_runs_leave_no_zombie_descriptor_or_memory_growth() -> None:
    with Jail(LIMITS) as jail:
        for email in ("warm@example.com", "warm@blocked.example") * 5:
            jail.run(request(email), timeout_seconds=5)
        fork_server = jail.fork_server_pid
        wait_for(lambda: idle_with_one_spare(fork_server), "the fork server settles")
        server_fds, own_fds, server_kb = fd_count(fork_server), fd_count(os.getpid()), resident_kb(fork_server)
        outcomes = set()
        denied = 0
        for index in range(2000):
            email = "x@blocked.example" if index % 2 else "x@example.com"
            run = jail.run(request(email), timeout_seconds=5)
            outcomes.add(run.outcome)
            denied += bool(run.output and run.output.commands)
            if index % 500 == 0:
                assert [c for c in children(fork_server) if state(c) == "Z"] == []
        wait_for(lambda: idle_with_one_spare(fork_server), "the fork server settles")
        assert outcomes == {"ok"} and denied == 1000
        assert jail.fork_server_pid == fork_server
        assert [c for c in children(fork_server) if state(c) == "Z"] == []
        assert fd_count(fork_server) == server_fds
        assert fd_count(os.getpid()) == own_fds
        assert resident_kb(fork_server) - server_kb < 10 * 1024


def test_killing_the_fork_server_kills_the_running_child_and_the_next_call_restarts_it() -> None:
    with Jail(LIMITS, _test_hooks=True) as jail:
        jail.run_callable_for_tests(HOSTILE, "sleep", 0)  # the fork server imports the module
        fork_server = jail.fork_server_pid
        wait_for(lambda: idle_with_one_spare(fork_server), "the fork server settles")
        (running_child,) = children(fork_server)  # the spare takes the next request
        errors: list[BaseException] = []

        def call() -> None:
            try:
                jail.run_callable_for_tests(HOSTILE, "sleep", 30, timeout_seconds=60)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

        caller = threading.Thread(target=call)
        caller.start()
        wait_for(lambda: sleeping(running_child), "the child is sleeping in its request")
        os.kill(fork_server, signal.SIGKILL)
        wait_for(lambda: state(running_child) in ("gone", "Z"), "the running child dies")
        caller.join(30)
        assert not caller.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], JailBroken)
        run = jail.run(request("a@blocked.example"), timeout_seconds=5)
        assert run.outcome == "ok" and run.output is not None and len(run.output.commands) == 1
        assert jail.fork_server_pid not in (None, fork_server)


def test_a_fork_server_killed_between_calls_is_replaced() -> None:
    with Jail(LIMITS) as jail:
        jail.run(request("a@example.com"), timeout_seconds=5)
        first = jail.fork_server_pid
        os.kill(first, signal.SIGKILL)
        wait_for(lambda: state(first) in ("gone", "Z"), "the fork server dies")
        assert jail.run(request("a@example.com"), timeout_seconds=5).outcome == "ok"
        assert jail.fork_server_pid != first


def test_close_stops_the_fork_server_and_its_spare() -> None:
    jail = Jail(LIMITS)
    jail.run(request("a@example.com"), timeout_seconds=5)
    fork_server = jail.fork_server_pid
    wait_for(lambda: idle_with_one_spare(fork_server), "the fork server settles")
    (spare,) = children(fork_server)
    jail.close()
    assert state(fork_server) == "gone"
    wait_for(lambda: state(spare) in ("gone", "Z"), "the spare dies")
    with pytest.raises(JailBroken):
        jail.run(request("a@example.com"), timeout_seconds=5)


def test_strict_jail_refuses_to_run_without_a_layer() -> None:
    with Jail(LIMITS, _test_hooks=True, _pretend_refused=("network_namespace",)) as jail:
        with pytest.raises(JailUnavailable) as raised:
            jail.run(request("a@example.com"), timeout_seconds=5)
    assert raised.value.layer == "network_namespace"
    assert "network_namespace" in str(raised.value)


def test_lenient_jail_warns_once_per_refused_layer_and_runs(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="sandbox.jail")
    with Jail(LIMITS, strict=False, _test_hooks=True, _pretend_refused=("seccomp",)) as jail:
        assert jail.layers["seccomp"] == "refused (pretended by a test)"
        assert jail.run(request("a@example.com"), timeout_seconds=5).outcome == "ok"
        assert jail.run(request("a@example.com"), timeout_seconds=5).outcome == "ok"
    warnings = [record.getMessage() for record in caplog.records if "seccomp" in record.getMessage()]
    assert warnings == ["jail: isolation layer 'seccomp' is OFF: refused (pretended by a test)"]


def memory_contains(pid: int, needle: bytes) -> bool:
    """Whether any readable private mapping of `pid` holds `needle` (read from outside, as root)."""
    with open(f"/proc/{pid}/maps") as maps, open(f"/proc/{pid}/mem", "rb", buffering=0) as mem:
        for line in maps:
            fields = line.split()
            if not fields[1].startswith("r") or (len(fields) > 5 and fields[5] in ("[vvar]", "[vsyscall]")):
                continue
            start, end = (int(part, 16) for part in fields[0].split("-"))
            try:
                mem.seek(start)
                if needle in mem.read(end - start):
                    return True
            except OSError:
                continue
    return False


def test_SECURITY_no_secret_lingers_in_the_fork_server_or_the_next_child() -> None:
    secret = f"s3cret-{os.urandom(8).hex()}"
    source = (
        "def on_execute_post_challenge(event, api):\n"
        "    print('key ' + event.secrets['API_KEY'])\n"
        "    api.access.deny(event.secrets['API_KEY'])\n"
    )
    with Jail(LIMITS) as jail:
        run = jail.run(
            ActionRequest(action="a", source=source, handler="on_execute_post_challenge",
                          event={"user": {"user_id": "u"}, "secrets": {"API_KEY": secret}},
                          now_ms=0, limits=LIMITS),
            timeout_seconds=5,
        )
        assert run.output is not None and run.output.console == f"key {secret}\n"  # it did travel
        fork_server = jail.fork_server_pid
        wait_for(lambda: idle_with_one_spare(fork_server), "the fork server settles")
        (spare,) = children(fork_server)
        assert not memory_contains(fork_server, secret.encode())
        assert not memory_contains(spare, secret.encode())


def test_a_spare_killed_while_idle_is_replaced_without_losing_the_request() -> None:
    with Jail(LIMITS) as jail:
        jail.run(request("a@example.com"), timeout_seconds=5)
        fork_server = jail.fork_server_pid
        wait_for(lambda: idle_with_one_spare(fork_server), "the fork server settles")
        (spare,) = children(fork_server)
        os.kill(spare, signal.SIGKILL)
        wait_for(lambda: state(spare) == "Z", "the spare dies")
        run = jail.run(request("a@blocked.example"), timeout_seconds=5)
        assert run.outcome == "ok" and run.output is not None and len(run.output.commands) == 1
        assert jail.fork_server_pid == fork_server


OWNER_SCRIPT = """
import sys
from sandbox.jail import Jail
from sandbox.limits import MIB, Limits
with Jail(Limits(action_cpu_seconds=1, action_memory_bytes=64 * MIB), _test_hooks=True) as jail:
    jail.run_callable_for_tests("tests.jail_hostile", "sleep", 0)
    print(jail.fork_server_pid, flush=True)
    jail.run_callable_for_tests("tests.jail_hostile", "sleep", 120, timeout_seconds=120)
"""


@pytest.mark.parametrize("thread", ["main", "pool"])
def test_a_killed_owner_takes_its_fork_server_and_running_child_along(thread: str) -> None:
    # "pool": the Jail lives in a non-main thread, so only the socket's EOF (no parent-death signal)
    # can tell the fork server its owner is gone.
    script = OWNER_SCRIPT if thread == "main" else (
        "import threading\nbody = " + repr(OWNER_SCRIPT) + "\n"
        "worker = threading.Thread(target=exec, args=(body, {}))\nworker.start()\nworker.join()\n")
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                             cwd=Path(__file__).resolve().parents[1])
    try:
        assert owner.stdout is not None
        fork_server = int(owner.stdout.readline())
        wait_for(lambda: any(sleeping(child) for child in children(fork_server)),
                 "the owner's child is running its long request")
        jailed = children(fork_server)  # the running child and the spare
        owner.kill()
        owner.wait()
        for pid in [fork_server, *jailed]:
            wait_for(lambda pid=pid: state(pid) in ("gone", "Z"), f"process {pid} dies")
    finally:
        owner.kill()
        owner.wait()
