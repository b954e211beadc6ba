"""Hostile plain-Python functions run INSIDE a jailed child by tests/test_jail_security.py.

They bypass the language policy on purpose (they are not tenant source but code the jail runs as if
the policy had failed), so the OS layers alone must stop them. Each returns a JSON-able report of what
it saw; the tests also check from outside that nothing happened. Imported by the jailed child itself:
keep imports to the standard library.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import socket
import stat
import subprocess
import time
from typing import Any


def _attempt(action: Any) -> str:
    """Run `action()`; "done" if it worked, else the exception's class name."""
    try:
        action()
    except BaseException as exc:  # noqa: BLE001 - the report is the point
        return type(exc).__name__
    return "done"


def write_file(path: str) -> dict[str, str]:
    """Try to create `path` and write to it in three ways."""

    def with_open() -> None:
        with open(path, "w") as handle:
            handle.write("escaped")

    def with_os_open() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o666)
        os.write(fd, b"escaped")

    return {
        "open": _attempt(with_open),
        "os_open": _attempt(with_os_open),
        "mkdir": _attempt(lambda: os.mkdir(path + ".d")),
    }


def append_to_file(path: str) -> str:
    """Try to append to an existing world-writable file."""

    def append() -> None:
        with open(path, "a") as handle:
            handle.write("escaped")

    return _attempt(append)


def read_file(path: str) -> str:
    """Try to read `path`: the content, or the exception's name."""
    try:
        with open(path, "rb") as handle:
            return handle.read(64).decode("latin-1")
    except BaseException as exc:  # noqa: BLE001
        return type(exc).__name__


def connect_tcp(port: int) -> str:
    """Try to open a TCP connection to 127.0.0.1:`port` (the socket call itself is fatal)."""
    conn = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    conn.settimeout(2)
    conn.connect(("127.0.0.1", port))
    conn.sendall(b"escaped")
    return "connected"


def fork_process() -> str:
    """Try os.fork()."""
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    return "forked"


def run_program() -> str:
    """Try to run /bin/true."""
    subprocess.run(["/bin/true"], check=False)
    return "ran"


def exec_program() -> str:
    """Try to replace the child with /bin/sh."""
    os.execv("/bin/sh", ["/bin/sh", "-c", "true"])
    return "exec returned"


def signal_parent() -> dict[str, str]:
    """Try to kill the fork server, pid 1 and every pid (kill -1)."""
    parent = os.getppid()
    return {
        "parent": _attempt(lambda: os.kill(parent, signal.SIGKILL)),
        "init": _attempt(lambda: os.kill(1, 0)),
        "everyone": _attempt(lambda: os.kill(-1, signal.SIGKILL)),
    }


def environment() -> dict[str, Any]:
    """What of the environment the child can see: os.environ and the fork server's /proc environ."""
    return {"environ": dict(os.environ), "parent_environ": read_file(f"/proc/{os.getppid()}/environ")}


def read_parent_memory_proc() -> str:
    """Try to read the fork server's memory through /proc/<ppid>/mem."""
    return read_file(f"/proc/{os.getppid()}/mem")


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


def read_parent_memory_vm() -> str:
    """Try process_vm_readv on the fork server (the syscall itself is fatal)."""
    libc = ctypes.CDLL(None, use_errno=True)
    buffer = ctypes.create_string_buffer(64)
    local = _IoVec(ctypes.addressof(buffer), 64)
    remote = _IoVec(0x400000, 64)
    result = libc.process_vm_readv(os.getppid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
    return f"returned {result}"


def ptrace_parent() -> str:
    """Try PTRACE_ATTACH to the fork server (the syscall itself is fatal)."""
    libc = ctypes.CDLL(None, use_errno=True)
    return f"returned {libc.ptrace(16, os.getppid(), 0, 0)}"


def open_descriptors() -> list[dict[str, Any]]:
    """Every open descriptor above stderr: its number and whether it is a pipe."""
    found = []
    for fd in range(3, 1024):
        try:
            mode = os.fstat(fd).st_mode
        except OSError:
            continue
        found.append({"fd": fd, "pipe": stat.S_ISFIFO(mode)})
    return found


def use_descriptor(fd: int) -> str:
    """Try to read from a descriptor number the test process holds."""
    return _attempt(lambda: os.read(fd, 1))


def identity() -> dict[str, Any]:
    """Who the child is, what it may still do to itself, and its limits."""
    return {
        "uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(),
        "setuid_root": _attempt(lambda: os.setuid(0)),
        "setsid": _attempt(os.setsid),
        "pdeathsig_reset": _attempt(_reset_pdeathsig),
        "nproc": list(resource.getrlimit(resource.RLIMIT_NPROC)),
        "fsize": list(resource.getrlimit(resource.RLIMIT_FSIZE)),
        "core": list(resource.getrlimit(resource.RLIMIT_CORE)),
    }


def _reset_pdeathsig() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(1, 0, 0, 0, 0) != 0:
        raise PermissionError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG, 0) refused")


def random_values() -> list[float]:
    """Three values of the child's `random` generator."""
    import random

    return [random.random() for _ in range(3)]


def sleep(seconds: float) -> str:
    """Sleep (a child that is neither computing nor answering)."""
    time.sleep(seconds)
    return "slept"

