"""The fork server's side of one child: watch it, bound what it writes, kill it, reap it.

The child's answer arrives through a pipe read in bounded chunks; its death through a pidfd, so one
poll() waits for both and a child that closes its pipe early cannot hang the fork server. Past the
wall-clock deadline or the output cap, the whole process group is SIGKILLed. Everything observed is
returned as `ChildFacts` (plain data) for `status.classify` to turn into an outcome.
"""

from __future__ import annotations

import os
import select
import signal
import time
from dataclasses import asdict, dataclass
from typing import Any, Literal

KilledFor = Literal["deadline", "output"]

# Markers a child writes before its answer (never after tenant code starts, see child.py).
MARK_COMPILED = b"C"
MARK_SETUP_FAILED = b"!"
_SETUP_STEP_MAX_BYTES = 64


@dataclass(frozen=True)
class ChildFacts:
    """What the fork server observed about one child. Times in ms, memory in KiB.

    `exit_code` xor `term_signal` is set. `killed_for` says why the fork server killed it, if it did.
    `compiled` is true when the child compiled the source cleanly before any tenant code ran.
    `setup_failed` names the set-up step that failed (no tenant code ran). `baseline_rss_kb` is the
    fork server's resident size when it forked (the child's inherited share).
    """

    exit_code: int | None
    term_signal: int | None
    killed_for: KilledFor | None
    wall_ms: float
    cpu_ms: float
    peak_memory_kb: int
    compiled: bool = False
    setup_failed: str | None = None
    baseline_rss_kb: int = 0

    def to_json(self) -> dict[str, Any]:
        """The facts as a JSON object (for the wire)."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ChildFacts:
        """Facts back from the wire. Raises TypeError/ValueError on a malformed object."""
        facts = cls(**data)
        if (facts.exit_code is None) == (facts.term_signal is None):
            raise ValueError("exactly one of exit_code and term_signal must be set")
        return facts


def kill_child(pid: int) -> None:
    """SIGKILL the child's process group and the child itself; a child already gone is fine."""
    # The child leads its own group after setsid(); before that, killpg(pid) finds no such group.
    for kill in (os.killpg, os.kill):
        try:
            kill(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


@dataclass
class Answer:
    """A child's answer inside a buffer of the fork server's own, which it wipes after sending (so no
    later child inherits one tenant's console output or commands in stale heap memory)."""

    buffer: bytearray
    start: int
    end: int

    def view(self) -> memoryview:
        return memoryview(self.buffer)[self.start : self.end]


def watch_child(
    pid: int, read_fd: int, *, started: float, timeout_seconds: float, max_output_bytes: int,
    expect_marker: bool, baseline_rss_kb: int, cpu_before_ms: float = 0.0,
) -> tuple[ChildFacts, Answer]:
    """Collect the child's answer and its death; return (facts, answer without markers).

    `started` is the time.monotonic() of the dispatch; `max_output_bytes` caps the answer (markers
    excluded). `cpu_before_ms` is CPU the child used before its request (set-up, warm-up): not the
    tenant's, so not counted in `cpu_ms`. Closes `read_fd`. Never raises for anything the child does.
    """
    deadline = started + timeout_seconds
    cap = max_output_bytes + (1 if expect_marker else 0)
    # One byte past the cap is enough to know the cap was crossed.
    buffer = bytearray(cap + 1)
    received = 0
    killed_for: KilledFor | None = None
    os.set_blocking(read_fd, False)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    pipe_open = True
    exited = False
    while not exited and killed_for is None:
        remaining_ms = (deadline - time.monotonic()) * 1000
        if remaining_ms <= 0:
            killed_for = "deadline"
            break
        for fd, _ in poller.poll(max(1, int(remaining_ms))):
            if fd == pidfd:
                exited = True
            elif pipe_open:
                pipe_open, received = _drain(read_fd, buffer, received)
                if not pipe_open:
                    poller.unregister(read_fd)
                if received > cap:
                    killed_for = "output"
                    break
    if killed_for is not None:
        kill_child(pid)
    elif pipe_open:
        # Exited: what it wrote is all in the pipe now (no other process holds the write end).
        _, received = _drain(read_fd, buffer, received)
        if received > cap:
            killed_for = "output"
    os.close(pidfd)
    os.close(read_fd)
    _, status, usage = os.wait4(pid, 0)
    wall_ms = (time.monotonic() - started) * 1000
    answer = Answer(buffer, 0, received)
    compiled = False
    setup_failed = None
    if buffer.startswith(MARK_SETUP_FAILED):
        setup_failed = bytes(buffer[1 : min(received, 1 + _SETUP_STEP_MAX_BYTES)]).decode(
            "ascii", "replace")
        answer.end = 0
    elif expect_marker and received and buffer.startswith(MARK_COMPILED):
        compiled = True
        answer.start = 1
    if killed_for == "output":
        answer.start = answer.end = 0
    facts = ChildFacts(
        exit_code=os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None,
        term_signal=os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
        killed_for=killed_for,
        wall_ms=wall_ms,
        cpu_ms=max(0.0, (usage.ru_utime + usage.ru_stime) * 1000 - cpu_before_ms),
        peak_memory_kb=usage.ru_maxrss,
        compiled=compiled,
        setup_failed=setup_failed,
        baseline_rss_kb=baseline_rss_kb,
    )
    return facts, answer


def _drain(fd: int, buffer: bytearray, received: int) -> tuple[bool, int]:
    """Read what the pipe holds into `buffer` until it is full (one byte past the cap).

    Returns (pipe still open, bytes so far).
    """
    view = memoryview(buffer)
    while received < len(buffer):
        try:
            count = os.readv(fd, [view[received:]])
        except BlockingIOError:
            return True, received
        if count == 0:
            return False, received
        received += count
    return True, received
