"""The isolation layers the fork server sets up once, at start, for itself and every child.

Each `enable_*` function tries one layer and returns "on" or the reason the kernel refused it; the
fork server reports the whole dict to the `Jail`, which warns (or, strict, refuses to run) when a
layer is not "on". Order matters: the network namespace needs CAP_SYS_ADMIN and `unshare`, and the
Landlock ruleset `landlock_create_ruleset`; the server seccomp filter then takes both away.
"""

from __future__ import annotations

import ctypes
import os
import pwd
import sys

from sandbox.jail import landlock
from sandbox.jail.child import NOBODY_UID
from sandbox.jail.seccomp_filter import CompiledFilter, build_server_filter, compile_child_filter

ON = "on"
# Every layer, in the order a reader meets them in the README; each maps to "on" or a reason.
LAYER_NAMES = (
    "process_group", "parent_death_signal", "closed_fds", "empty_environment", "rlimits",
    "no_new_privs", "drop_privileges", "network_namespace", "filesystem", "seccomp",
)

_CLONE_NEWNET = 0x40000000
_PR_SET_NO_NEW_PRIVS = 38
_LIBC = ctypes.CDLL(None, use_errno=True)


def _errno_reason(call: str) -> str:
    err = ctypes.get_errno()
    return f"{call} failed: {os.strerror(err)} (errno {err})"


def enable_network_namespace() -> str:
    """Move the fork server (so every child) into a new network namespace with no interface but a
    downed loopback: no route anywhere, not even to 127.0.0.1. Done once here rather than per child:
    creating a namespace costs far more than a fork."""
    if _LIBC.unshare(_CLONE_NEWNET) != 0:
        return _errno_reason("unshare(CLONE_NEWNET)")
    return ON


def enable_no_new_privs() -> str:
    """PR_SET_NO_NEW_PRIVS on the fork server (inherited; each child sets it again)."""
    if _LIBC.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        return _errno_reason("prctl(PR_SET_NO_NEW_PRIVS)")
    return ON


def privileges_layer() -> str:
    """Whether children can drop to `nobody`: only a root fork server can change uid."""
    if os.geteuid() != 0:
        return f"the worker is not root (uid {os.geteuid()}): children keep its uid"
    try:
        pwd.getpwuid(NOBODY_UID)
    except KeyError:
        return f"no user with uid {NOBODY_UID} (nobody) on this host"
    return ON


def readable_dirs(package_root: str) -> list[str]:
    """What a child may read: the interpreter's library directories (stdlib, lib-dynload,
    site-packages) and the `sandbox` package, never the rest of the project or the host."""
    root = os.path.realpath(package_root)
    found = [os.path.join(root, "sandbox")]
    for entry in sys.path:
        if entry and os.path.isdir(entry) and os.path.realpath(entry) != root:
            found.append(entry)
    return found


def enable_landlock(package_root: str) -> tuple[str, int | None]:
    """Build the children's Landlock ruleset (read-only library directories, nothing else).

    Returns ("on", ruleset fd) or (reason, None).
    """
    try:
        return ON, landlock.build_ruleset(readable_dirs(package_root))
    except OSError as exc:
        return f"Landlock is unavailable: {exc.strerror} (errno {exc.errno})", None


def enable_seccomp() -> tuple[str, CompiledFilter | None]:
    """Load the server filter on the fork server and compile the per-child one.

    Returns ("on", child filter) or (reason, None).
    """
    try:
        child_filter = compile_child_filter()
        build_server_filter().load()
    except (OSError, ValueError) as exc:
        return f"libseccomp refused the filter: {exc}", None
    return ON, child_filter
