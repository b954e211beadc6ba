"""The resource limits a jailed child sets on itself before tenant code runs.

Each limit is explained where it is set. Lowering a limit is always allowed, so this works before or
after dropping privileges; raising it back is not (the hard limit is lowered too).
"""

from __future__ import annotations

import math
import os
import resource

from sandbox.limits import Limits

# Descriptors a child may open at once beyond what it already holds: enough for CPython to read a
# lazily imported module, too few to matter.
CHILD_OPEN_FILES_MAX = 16

_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


def current_address_space_bytes() -> int:
    """The calling process's virtual address space size (VmSize), in bytes."""
    fd = os.open("/proc/self/statm", os.O_RDONLY)  # not open(): a child's set-up stays lean
    try:
        return int(os.read(fd, 512).split()[0]) * _PAGE_BYTES
    finally:
        os.close(fd)


def cpu_limits_seconds(limits: Limits) -> tuple[int, int]:
    """(soft, hard) RLIMIT_CPU in whole seconds: soft = action_cpu_seconds rounded up, hard = soft+1.

    The kernel sends SIGXCPU at the soft limit (a distinctive signal the parent reports as
    `cpu_limit`) and SIGKILL at the hard one, should the child ignore or catch SIGXCPU.
    """
    soft = max(1, math.ceil(limits.action_cpu_seconds))
    return soft, soft + 1


def address_space_limit_bytes(limits: Limits, baseline_bytes: int) -> int:
    """RLIMIT_AS for a child whose inherited address space is `baseline_bytes`.

    RLIMIT_AS caps virtual memory, and a forked child starts with the fork server's whole mapping
    (interpreter, libraries, the imported runtime: mostly shared, untouched pages). Capping at
    baseline + `action_memory_bytes` gives tenant code `action_memory_bytes` of new allocations, the
    same budget whatever the runtime weighs. (RLIMIT_RSS is not enforced by Linux; cgroups would
    count resident memory, but need a delegated cgroup per child and cost far more per fork.)
    """
    return baseline_bytes + limits.action_memory_bytes


def apply_child_rlimits(limits: Limits) -> None:
    """Set every rlimit of a jailed child (soft = hard unless noted). Raises OSError if refused."""
    cpu_soft, cpu_hard = cpu_limits_seconds(limits)
    # SECURITY: without it `while True: pass` holds a core until the wall-clock deadline.
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_soft, cpu_hard))
    # SECURITY: without it one action can exhaust the host's memory and wake the OOM killer.
    address_space = address_space_limit_bytes(limits, current_address_space_bytes())
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    # SECURITY: without it a child can pin memory the OOM killer cannot reclaim.
    resource.setrlimit(resource.RLIMIT_MEMLOCK, (0, 0))
    # SECURITY: without it a child may hold thousands of descriptors (files, pipes).
    resource.setrlimit(resource.RLIMIT_NOFILE, (CHILD_OPEN_FILES_MAX, CHILD_OPEN_FILES_MAX))
    # SECURITY: without it a child running as `nobody` could fork (seccomp also forbids it).
    resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
    # SECURITY: without it a child could fill a disk through any file it manages to open for write.
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
    # SECURITY: without it a crash dumps the child's memory (secrets, event) to disk.
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    # POSIX message queues: none needed.
    resource.setrlimit(resource.RLIMIT_MSGQUEUE, (0, 0))
