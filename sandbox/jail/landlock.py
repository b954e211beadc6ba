"""Landlock: what a jailed child may touch on the filesystem (and, on newer kernels, TCP and signals).

Running as `nobody` leaves every world-readable file readable (/etc/passwd, the project's own
source, /proc). Landlock (Linux >= 5.13, an unprivileged LSM) narrows that to the interpreter's own
library directories, read-only: the fork server builds one ruleset at start (`build_ruleset`) and
each child enacts it on itself (`restrict_self`) during set-up. Everything the ruleset handles and no
rule allows is refused with EACCES: all writes anywhere, reads outside those directories, TCP bind
and connect (ABI >= 4), abstract unix sockets and signals to processes outside the child (ABI >= 6).
"""

from __future__ import annotations

import ctypes
import os
import struct
from collections.abc import Iterable

_SYS_CREATE_RULESET = 444
_SYS_ADD_RULE = 445
_SYS_RESTRICT_SELF = 446
_CREATE_RULESET_VERSION = 1
_RULE_PATH_BENEATH = 1

_FS_READ_FILE = 1 << 2
_FS_READ_DIR = 1 << 3
# Every filesystem right of each ABI version (v1: bits 0-12, v2: + REFER, v3: + TRUNCATE,
# v5: + IOCTL_DEV).
_FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 5: (1 << 16) - 1}
_NET_BIND_AND_CONNECT_TCP = 0b11  # ABI >= 4
_SCOPE_ABSTRACT_UNIX_AND_SIGNAL = 0b11  # ABI >= 6

_LIBC = ctypes.CDLL(None, use_errno=True)
_LIBC.syscall.restype = ctypes.c_long


def _syscall(number: int, *args: object) -> int:
    result = _LIBC.syscall(ctypes.c_long(number), *args)
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(result)


def abi_version() -> int:
    """The kernel's Landlock ABI version. Raises OSError (EOPNOTSUPP, ENOSYS) when unavailable."""
    return _syscall(_SYS_CREATE_RULESET, None, ctypes.c_size_t(0),
                    ctypes.c_uint32(_CREATE_RULESET_VERSION))


def _fs_rights(abi: int) -> int:
    return _FS_RIGHTS_BY_ABI[max(version for version in _FS_RIGHTS_BY_ABI if version <= abi)]


def build_ruleset(readable_dirs: Iterable[str]) -> int:
    """A ruleset fd allowing only reads beneath `readable_dirs` (those that exist).

    Raises OSError when the kernel has no Landlock or refuses the ruleset.
    """
    abi = abi_version()
    net = _NET_BIND_AND_CONNECT_TCP if abi >= 4 else 0
    scoped = _SCOPE_ABSTRACT_UNIX_AND_SIGNAL if abi >= 6 else 0
    attr = ctypes.create_string_buffer(struct.pack("=QQQ", _fs_rights(abi), net, scoped))
    ruleset_fd = _syscall(_SYS_CREATE_RULESET, attr, ctypes.c_size_t(len(attr.raw)),
                          ctypes.c_uint32(0))
    try:
        for directory in readable_dirs:
            if not os.path.isdir(directory):
                continue
            path_fd = os.open(directory, os.O_PATH | os.O_CLOEXEC)
            try:
                # struct landlock_path_beneath_attr is packed: u64 allowed_access, s32 parent_fd.
                rule = ctypes.create_string_buffer(
                    struct.pack("=Qi", _FS_READ_FILE | _FS_READ_DIR, path_fd))
                _syscall(_SYS_ADD_RULE, ctypes.c_int(ruleset_fd), ctypes.c_int(_RULE_PATH_BENEATH),
                         rule, ctypes.c_uint32(0))
            finally:
                os.close(path_fd)
    except OSError:
        os.close(ruleset_fd)
        raise
    return ruleset_fd


def restrict_self(ruleset_fd: int) -> None:
    """Enact the ruleset on the calling process, irrevocably. Needs PR_SET_NO_NEW_PRIVS first.

    Raises OSError when the kernel refuses.
    """
    _syscall(_SYS_RESTRICT_SELF, ctypes.c_int(ruleset_fd), ctypes.c_uint32(0))
