"""How the fork server makes children and ties its own life to the Jail's process.

Two small pieces of process plumbing, kept apart from the serving logic in forkserver.py:
`fork_without_hooks` (fork(2) without CPython's at-fork work, for a single-threaded process) and
`die_with_owner` (the fork server's parent-death signal).
"""

from __future__ import annotations

import ctypes
import os
import signal

_PR_SET_PDEATHSIG = 1


def die_with_owner(owner_pid: int) -> None:
    """PR_SET_PDEATHSIG(SIGKILL) on the fork server: the kernel kills it when the *thread* that
    started it exits (so the Jail sets this only when started from the main thread; EOF on the socket
    covers the rest). Exits at once if the owner is already gone (we were reparented)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        return  # then only the socket's EOF tells us (watch_child and the request loop both see it)
    if os.getppid() != owner_pid:
        os._exit(0)


# fork(2) through the C library with the GIL held (PyDLL), bypassing os.fork's interpreter hooks.
_PY_LIBC = ctypes.PyDLL(None, use_errno=True)
_PY_LIBC.fork.restype = ctypes.c_int
_PY_LIBC.fork.argtypes = ()


def single_threaded() -> bool:
    """True when this process has exactly one thread (kernel's view, native threads included)."""
    return len(os.listdir("/proc/self/task")) == 1


def fork_without_hooks() -> int:
    """fork(2), without CPython's at-fork work: 0 in the child, the child's pid in the parent.

    Only for a single-threaded process (`single_threaded()`). os.fork re-initialises the runtime's
    locks and thread bookkeeping and runs the registered at-fork callables (threading, logging, a
    `random` reseed): with no other thread nothing is held or stale, yet in a child of this ~20 MiB
    runtime that work touches ~200 inherited pages, each copied on write (~0.6 ms of CPU per child;
    children reseed `random` themselves, see child.reseed_random). Raises OSError if fork fails.
    """
    pid = _PY_LIBC.fork()
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fork: {os.strerror(err)}")
    return pid
