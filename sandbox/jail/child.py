"""A jailed child's set-up: an ordered checklist of small named steps, then one request, then _exit.

The fork server forks each child *before* its request exists (a "spare", so fork and set-up cost
nothing on the request's critical path). `enter_jail` runs the steps in order right after fork; each
step's docstring says why it exists, and the order matters (noted where it does). If any step fails, no tenant code runs: the child writes
`!<step>` to its result pipe and exits with `EXIT_SETUP_FAILED`. The child never returns into the fork
server's code: every path ends in os._exit, so no clean-up of the fork server runs twice.
"""

from __future__ import annotations

import ctypes
import json
import os
import random
import select
import signal
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

from sandbox.jail import landlock
from sandbox.jail.jobs import Runtime, do_request, read_to_eof
from sandbox.jail.rlimits import apply_child_rlimits
from sandbox.jail.seccomp_filter import CompiledFilter
from sandbox.jail.supervise import MARK_SETUP_FAILED
from sandbox.limits import Limits

EXIT_OK = 0
EXIT_SETUP_FAILED = 121
EXIT_JOB_FAILED = 122

NOBODY_UID = 65534
NOBODY_GID = 65534

_PR_SET_PDEATHSIG = 1
_PR_SET_DUMPABLE = 4
_PR_SET_NO_NEW_PRIVS = 38
_LIBC = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True)
class ChildPlan:
    """What the fork server decided at start-up about the layers every child applies.

    `seccomp` and `landlock_ruleset_fd` are None when their layer is off (non-strict jail);
    `drop_privileges` is False when the fork server is not root (nothing to drop to).
    """

    limits: Limits
    fork_server_pid: int
    seccomp: CompiledFilter | None
    drop_privileges: bool
    landlock_ruleset_fd: int | None = None


class SetupFailed(Exception):
    """A set-up step failed; `step` names it."""

    def __init__(self, step: str, cause: BaseException) -> None:
        self.step = step
        super().__init__(f"{step}: {cause}")


def _prctl(option: int, value: int) -> None:
    if _LIBC.prctl(option, value, 0, 0, 0) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def enter_own_process_group() -> None:
    """setsid(): the child leads a new session and process group, so the fork server can SIGKILL the
    group as a whole, and terminal signals aimed at the worker do not reach it."""
    os.setsid()


def close_inherited_fds(keep_fds: tuple[int, ...]) -> None:
    """Close every descriptor but `keep_fds` (the request and result pipes, the Landlock ruleset
    until enacted) and put stdin, stdout and stderr on /dev/null.

    The fork server holds its socket to the Jail and the pipes of other children; a child that
    inherited them could talk to the Jail or tamper with another child's answer. Output to stdout or
    stderr (a stray C-level print) is discarded rather than reaching the worker's log.
    """
    null_fd = os.open(os.devnull, os.O_RDWR)
    for std_fd in (0, 1, 2):
        if null_fd != std_fd:
            os.dup2(null_fd, std_fd)
    if null_fd > 2 and null_fd not in keep_fds:
        os.close(null_fd)
    # SECURITY: without it the child holds the fork server's socket to the Jail.
    low = 3
    for fd in sorted(keep_fds):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)


def clear_environment() -> None:
    """Empty os.environ: nothing of the worker's configuration is visible to tenant code. (The fork
    server was started with an almost empty environment already; this is the second line.)"""
    os.environ.clear()


def reseed_random() -> None:
    """Reseed `random` from the kernel: every child would otherwise replay the fork server's state,
    so one tenant could predict another's "random" values."""
    random.seed(os.urandom(32))


def limit_resources(limits: Limits) -> None:
    """Set the rlimits (CPU, address space, files, processes, file size, core); see rlimits.py."""
    apply_child_rlimits(limits)


def forbid_new_privileges() -> None:
    """PR_SET_NO_NEW_PRIVS: no execve can ever grant privileges again (setuid binaries, file
    capabilities); also what lets an unprivileged process load a seccomp filter."""
    _prctl(_PR_SET_NO_NEW_PRIVS, 1)


def drop_privileges() -> None:
    """Become `nobody` (no supplementary groups): outside the filters, the kernel's own permission
    checks then refuse reading /etc/shadow, /proc/<fork server>/mem, or signalling root's processes.
    Must come before `die_with_parent` (changing credentials clears the parent-death signal)."""
    os.setgroups([])
    os.setgid(NOBODY_GID)
    os.setuid(NOBODY_UID)
    # Not dumpable: other `nobody` processes cannot ptrace it or read its /proc files.
    _prctl(_PR_SET_DUMPABLE, 0)


def die_with_parent(fork_server_pid: int) -> None:
    """PR_SET_PDEATHSIG(SIGKILL): if the fork server dies, the kernel kills this child. Then check
    the fork server did not die before the setting took effect (we would have been reparented)."""
    _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != fork_server_pid:
        os._exit(EXIT_SETUP_FAILED)


def restrict_filesystem(ruleset_fd: int) -> None:
    """Enact the Landlock ruleset: read-only access to the interpreter's library directories,
    nothing else (not /etc/passwd, /proc, the project's files), no TCP, no signals out. Needs
    no_new_privs; the ruleset descriptor is closed once enacted."""
    landlock.restrict_self(ruleset_fd)
    os.close(ruleset_fd)


def install_seccomp(compiled: CompiledFilter) -> None:
    """Load the per-child seccomp filter (last: it forbids set-up steps such as setsid, setuid)."""
    compiled.load(os.getpid())


def enter_jail(plan: ChildPlan, keep_fds: tuple[int, ...]) -> None:
    """Run the checklist in order. Raises SetupFailed naming the first step that failed."""
    steps: list[tuple[str, Callable[[], None]]] = [
        ("enter_own_process_group", enter_own_process_group),
        ("close_inherited_fds", lambda: close_inherited_fds(keep_fds)),
        ("clear_environment", clear_environment),
        ("reseed_random", reseed_random),
        ("limit_resources", lambda: limit_resources(plan.limits)),
        ("forbid_new_privileges", forbid_new_privileges),
    ]
    if plan.drop_privileges:
        steps.append(("drop_privileges", drop_privileges))
    steps.append(("die_with_parent", lambda: die_with_parent(plan.fork_server_pid)))
    if plan.landlock_ruleset_fd is not None:
        ruleset_fd = plan.landlock_ruleset_fd
        steps.append(("restrict_filesystem", lambda: restrict_filesystem(ruleset_fd)))
    if plan.seccomp is not None:
        seccomp = plan.seccomp
        steps.append(("install_seccomp", lambda: install_seccomp(seccomp)))
    for name, step in steps:
        try:
            step()
        except BaseException as exc:  # noqa: BLE001 - any failure means: run no tenant code
            raise SetupFailed(name, exc) from None


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd` (a pipe: writes may be partial)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


# A spare that waited this long for its request is on an idle worker: it warms up (see below).
WARM_UP_AFTER_IDLE_MS = 5


def _request_arrives_soon(request_fd: int) -> bool:
    """True when the request arrives within WARM_UP_AFTER_IDLE_MS (a busy Jail: no warm-up, which
    would compete for the CPU with the child running right now)."""
    poller = select.poll()
    poller.register(request_fd, select.POLLIN)
    return bool(poller.poll(WARM_UP_AFTER_IDLE_MS))


def run_spare_child(
    plan: ChildPlan, request_fd: int, result_fd: int, runtime: Runtime
) -> NoReturn:
    """The whole life of a child after fork: set up, warm up if the request is slow to come,
    read the one request from `request_fd`, answer it on `result_fd`, _exit. Never returns.

    Exit codes: EXIT_OK after answering, EXIT_SETUP_FAILED (and `!<step>` written) when a set-up
    step failed, EXIT_JOB_FAILED when the request could not be carried out (no answer written).
    """
    sys.dont_write_bytecode = True
    keep_fds = (request_fd, result_fd)
    if plan.landlock_ruleset_fd is not None:
        keep_fds += (plan.landlock_ruleset_fd,)
    try:
        enter_jail(plan, keep_fds)
    except SetupFailed as exc:
        try:
            write_all(result_fd, MARK_SETUP_FAILED + exc.step.encode("ascii"))
        finally:
            os._exit(EXIT_SETUP_FAILED)
    if not _request_arrives_soon(request_fd):
        try:
            # Idle: touch (copy-on-write) now the pages a run writes, off the request's critical path.
            runtime.warm_up(plan.limits)
        except BaseException:  # noqa: BLE001 - only a speed-up; the request shows any real problem
            pass
    try:
        data = read_to_eof(request_fd)
        os.close(request_fd)
        message = json.loads(data[1:])
        answer = do_request(runtime, plan.limits, message, result_fd, mark_compiled=data[:1] == b"1")
        write_all(result_fd, answer)
    except BaseException:  # noqa: BLE001 - the parent reports a non-zero exit without answer
        os._exit(EXIT_JOB_FAILED)
    os._exit(EXIT_OK)
