"""The fork server's side of one child: watch it, bound what it writes, kill it, reap it.

The child's answer arrives through a pipe read in bounded chunks; its death through a pidfd, so one
poll() waits for both and a child that closes its pipe early cannot hang the fork server. Past the
wall-clock deadline or the output cap, the whole process group is SIGKILLed. Everything observed is
returned as `ChildFacts` (plain data) for `status.classify` to turn into an outcome.
"""

from __future__ import annotations

import mmap
import os
import select
import signal
import socket
import time
from dataclasses import dataclass
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
        """The facts as a JSON object (for the wire): every field is a plain value."""
        return dict(self.__dict__)

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


class OwnerGone(Exception):
    """The Jail's end of the socket closed while a child ran (its process died): the child has been
    killed and reaped; the fork server should exit."""


class AnswerBuffer:
    """The fork server's one buffer for children's answers: mapped once, never inherited by a child
    (MADV_DONTFORK), wiped after each answer (only the part that was written).

    Reusing it spares a fresh 256 KiB allocation per request, and, because no child shares its pages,
    the fork server's writes to it never copy-on-write. Grows (remaps) when a request allows more.
    """

    def __init__(self, size: int) -> None:
        self.size = 0
        self.map = mmap.mmap(-1, 1)
        self.ensure(size)

    def ensure(self, size: int) -> None:
        """Make room for `size` bytes (a new, zeroed, non-inherited mapping when it must grow)."""
        if size <= self.size:
            return
        self.map.close()
        self.map = mmap.mmap(-1, size)
        # SECURITY: without it every later child would inherit the last answers' pages (wiped, but
        # one missed wipe away from handing one tenant's output to the next).
        self.map.madvise(mmap.MADV_DONTFORK)
        self.size = size

    def wipe(self, end: int) -> None:
        """Zero the first `end` bytes (all that an answer can have written)."""
        self.map[:end] = bytes(end)


def read_proc(path: str, size: int = 512) -> bytes:
    """A small /proc file's bytes (os.open/os.read: no io objects on the fork server's hot path)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, size)
    finally:
        os.close(fd)


def cpu_ms_of(pid: int) -> float:
    """CPU time (user + system) the process has used so far, in ms; 0.0 if it is gone."""
    try:
        return int(read_proc(f"/proc/{pid}/schedstat").split()[0]) / 1e6
    except (OSError, IndexError, ValueError):
        return 0.0


@dataclass
class Answer:
    """A child's answer inside the fork server's `AnswerBuffer`, which it wipes after sending (so no
    later child inherits one tenant's console output or commands in stale heap memory)."""

    buffer: AnswerBuffer
    start: int
    end: int
    # How far the child wrote (markers and one byte past the cap included): what `wipe` must clear.
    written: int = 0

    def view(self) -> memoryview:
        return memoryview(self.buffer.map)[self.start : self.end]

    def wipe(self) -> None:
        self.buffer.wipe(self.written)


def _owner_closed(owner: socket.socket) -> bool:
    """True when the Jail's end of the socket is closed (EOF or error), False when data waits."""
    try:
        return owner.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def watch_child(
    pid: int, read_fd: int, *, started: float, timeout_seconds: float, max_output_bytes: int,
    expect_marker: bool, baseline_rss_kb: int, cpu_before_ms: float = 0.0,
    answer_buffer: AnswerBuffer | None = None, owner: socket.socket | None = None,
) -> tuple[ChildFacts, Answer]:
    """Collect the child's answer and its death; return (facts, answer without markers).

    `started` is the time.monotonic() of the dispatch; `max_output_bytes` caps the answer (markers
    excluded). `cpu_before_ms` is CPU the child used before its request (set-up, warm-up): not the
    tenant's, so not counted in `cpu_ms`. The answer lands in `answer_buffer` (a fresh one if None);
    the caller wipes it (`Answer.wipe`) once sent. With `owner` (the socket to the Jail), a Jail
    that goes away mid-run gets its child killed and reaped at once, then OwnerGone is raised.
    Closes `read_fd`. Never raises for anything the child does.
    """
    deadline = started + timeout_seconds
    cap = max_output_bytes + (1 if expect_marker else 0)
    # One byte past the cap is enough to know the cap was crossed.
    if answer_buffer is None:
        answer_buffer = AnswerBuffer(cap + 1)
    answer_buffer.ensure(cap + 1)
    buffer = answer_buffer.map
    limit = cap + 1
    received = 0
    killed_for: KilledFor | None = None
    os.set_blocking(read_fd, False)
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(read_fd, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    owner_fd = -1
    if owner is not None:
        owner_fd = owner.fileno()
        poller.register(owner_fd, select.POLLIN)
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
            elif fd == owner_fd:
                if owner is not None and _owner_closed(owner):
                    # SECURITY/robustness: without it a worker process killed mid-run leaves its
                    # child computing until its own limits end it.
                    kill_child(pid)
                    os.close(pidfd)
                    os.close(read_fd)
                    os.waitpid(pid, 0)
                    raise OwnerGone()
                poller.unregister(owner_fd)  # bytes out of turn: the next read will refuse them
            elif pipe_open:
                pipe_open, received = _drain(read_fd, buffer, received, limit)
                if not pipe_open:
                    poller.unregister(read_fd)
                if received > cap:
                    killed_for = "output"
                    break
    if killed_for is None and pipe_open:
        # Exited: what it wrote is all in the pipe now (no other process holds the write end).
        _, received = _drain(read_fd, buffer, received, limit)
        if received > cap:
            killed_for = "output"
    if killed_for is not None:
        kill_child(pid)
    os.close(pidfd)
    os.close(read_fd)
    _, status, usage = os.wait4(pid, 0)
    exit_code = os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else None
    term_signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    cpu_ms, peak_memory_kb = (usage.ru_utime + usage.ru_stime) * 1000, usage.ru_maxrss
    wall_ms = (time.monotonic() - started) * 1000
    answer = Answer(answer_buffer, 0, received, written=received)
    compiled = False
    setup_failed = None
    first = buffer[:1] if received else b""
    if first == MARK_SETUP_FAILED:
        setup_failed = bytes(buffer[1 : min(received, 1 + _SETUP_STEP_MAX_BYTES)]).decode(
            "ascii", "replace")
        answer.end = 0
    elif expect_marker and first == MARK_COMPILED:
        compiled = True
        answer.start = 1
    if killed_for == "output":
        answer.start = answer.end = 0
    facts = ChildFacts(
        exit_code=exit_code,
        term_signal=term_signal,
        killed_for=killed_for,
        wall_ms=wall_ms,
        cpu_ms=max(0.0, cpu_ms - cpu_before_ms),
        peak_memory_kb=peak_memory_kb,
        compiled=compiled,
        setup_failed=setup_failed,
        baseline_rss_kb=baseline_rss_kb,
    )
    return facts, answer


def _drain(fd: int, buffer: mmap.mmap, received: int, limit: int) -> tuple[bool, int]:
    """Read what the pipe holds into `buffer[:limit]` until that is full (one byte past the cap).

    Returns (pipe still open, bytes so far).
    """
    view = memoryview(buffer)
    try:
        while received < limit:
            try:
                count = os.readv(fd, [view[received:limit]])
            except BlockingIOError:
                return True, received
            if count == 0:
                return False, received
            received += count
        return True, received
    finally:
        view.release()
