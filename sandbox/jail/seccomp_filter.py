"""The seccomp filters of the jail: one the fork server loads on itself, one each child adds.

Default ALLOW (CPython needs a long tail of ordinary syscalls), with explicit denials of everything a
one-handler computation never needs and an attacker who got past the language policy would reach for:

- KILL_PROCESS (the child dies by SIGSYS; the parent reports `violation`): networking, running
  programs, creating processes, debugging or reading other processes, namespaces, mounts, kernel
  attack surface (bpf, perf, userfaultfd, io_uring, keyrings, modules, ...).
- ERRNO(EPERM) (Python raises PermissionError): filesystem writes of every kind, opening a file with
  any write flag, signals to any process but the child itself, leaving the process group, changing
  uid, and disarming the parent-death signal. EPERM rather than a kill because CPython itself probes
  some of them (e.g. writing a .pyc) and handles the refusal.
- ERRNO(ENOSYS): syscall numbers newer than this list knows (`_FUTURE_FIRST`..), so a kernel upgrade
  does not silently widen a default-allow filter.

Syscalls of other ABIs (i386 `int 0x80`, x32) are not in the filters' architecture list: libseccomp
kills them (its default bad-arch action), which closes the classic "same syscall, other ABI" bypass.
"""

from __future__ import annotations

import ctypes
import errno
import os
import signal
import struct
from dataclasses import dataclass

import pyseccomp as seccomp

# Two filters, stacked (the kernel applies both; the strictest action wins):
# - the SERVER filter, loaded once by the fork server on itself and inherited by every child: what
#   neither the fork server nor a child ever needs. Loading it once keeps the per-child cost low (the
#   kernel pre-evaluates a filter for every syscall number when it is attached: ~0.6 ms for this one).
# - the CHILD filter, loaded by each child after its set-up: what the fork server needs but a child
#   must not do (fork, signal others, write files, undo its set-up).

# SECURITY: without these a child could reach the network (even with no interfaces, an abstract unix
# socket reaches host services), run /bin/sh, read or steer other processes, or poke the kernel.
SERVER_KILLED: tuple[str, ...] = (
    # network
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    # running programs
    "execve", "execveat",
    # other processes' memory and state
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd", "pidfd_send_signal",
    "process_madvise", "process_mrelease",
    # namespaces, mounts, root
    "unshare", "setns", "mount", "umount2", "pivot_root", "chroot", "open_tree", "move_mount",
    "fsopen", "fsconfig", "fsmount", "fspick", "mount_setattr",
    # kernel attack surface
    "keyctl", "add_key", "request_key", "bpf", "perf_event_open", "userfaultfd", "io_uring_setup",
    "io_uring_enter", "io_uring_register", "personality", "init_module", "finit_module",
    "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff", "acct",
    "quotactl", "quotactl_fd", "syslog", "lookup_dcookie", "iopl", "ioperm", "modify_ldt",
    "name_to_handle_at", "open_by_handle_at", "fanotify_init", "vhangup", "nfsservctl",
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "sethostname", "setdomainname",
    "landlock_create_ruleset", "memfd_secret",
)

# SECURITY: without these a child running as `nobody` could still create, fill, rename or delete
# files where `nobody` may write (/tmp, /dev/shm), or change owners and modes.
SERVER_REFUSED: tuple[str, ...] = (
    "creat", "openat2", "mkdir", "mkdirat", "mknod", "mknodat", "unlink", "unlinkat", "rmdir",
    "rename", "renameat", "renameat2", "link", "linkat", "symlink", "symlinkat", "chmod", "fchmod",
    "fchmodat", "fchmodat2", "chown", "fchown", "lchown", "fchownat", "truncate", "ftruncate",
    "fallocate", "utime", "utimes", "utimensat", "futimesat", "setxattr", "lsetxattr", "fsetxattr",
    "removexattr", "lremovexattr", "fremovexattr", "memfd_create",
)

# SECURITY: without these a child could start processes that escape its limits' accounting.
CHILD_KILLED: tuple[str, ...] = ("fork", "vfork", "clone", "clone3", "pidfd_open")

# SECURITY: without these a child could undo its own set-up (leave its process group, which the
# parent kills as a whole; change uid) or raise capabilities.
CHILD_REFUSED: tuple[str, ...] = (
    "setsid", "setpgid", "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid",
    "setgroups", "setfsuid", "setfsgid", "capset",
)

# Any one of these flags on open/openat means "write"; each is its own masked-equality rule (rules
# on one syscall are OR-ed), because seccomp cannot express "any bit of a mask is set" in one rule.
WRITE_OPEN_FLAGS: tuple[int, ...] = (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC, os.O_APPEND)

PR_SET_PDEATHSIG = 1

# First syscall number (x86_64) past the newest one libseccomp 2.5 knows by name; up to `_FUTURE_LAST`.
_FUTURE_FIRST = 454
_FUTURE_LAST = 600


def _syscall_number(name: str) -> int | None:
    """The native number of `name`, or None when this libseccomp does not know it."""
    try:
        number = seccomp.resolve_syscall(seccomp.Arch.NATIVE, name)
    except (ValueError, OSError):
        return None
    return number if number >= 0 else None


def _add_all(flt: seccomp.SyscallFilter, action: int, names: tuple[str, ...]) -> None:
    for name in names:
        number = _syscall_number(name)
        if number is not None:
            flt.add_rule(action, number)


def build_server_filter() -> seccomp.SyscallFilter:
    """The fork server's own filter (not yet loaded); every child inherits it.

    Raises OSError when libseccomp refuses a rule (the caller treats the layer as unavailable).
    """
    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    flt.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)  # binary tree: cheaper to attach and to run
    _add_all(flt, seccomp.KILL_PROCESS, SERVER_KILLED)
    _add_all(flt, seccomp.ERRNO(errno.EPERM), SERVER_REFUSED)
    # SECURITY: a default-allow filter must not allow syscalls invented after it was written.
    if seccomp.system_arch() == seccomp.Arch.X86_64:
        enosys = seccomp.ERRNO(errno.ENOSYS)
        for number in range(_FUTURE_FIRST, _FUTURE_LAST + 1):
            flt.add_rule(enosys, number)
    return flt


def build_child_filter(own_pid: int) -> seccomp.SyscallFilter:
    """One child's filter (not yet loaded). `own_pid` is the only pid it may send signals to.

    Raises OSError when libseccomp refuses a rule (the caller treats the layer as unavailable).
    """
    flt = seccomp.SyscallFilter(seccomp.ALLOW)
    # Binary tree: fewer instructions per syscall, so attaching it (the kernel evaluates the program
    # for every syscall number to build its cache) and every syscall the child makes cost less.
    flt.set_attr(seccomp.Attr.CTL_OPTIMIZE, 2)
    eperm = seccomp.ERRNO(errno.EPERM)
    _add_all(flt, seccomp.KILL_PROCESS, CHILD_KILLED)
    _add_all(flt, eperm, CHILD_REFUSED)
    # SECURITY: opening for write would create or clobber files where `nobody` may write.
    for flag in WRITE_OPEN_FLAGS:
        flt.add_rule(eperm, "open", seccomp.Arg(1, seccomp.MASKED_EQ, flag, flag))
        flt.add_rule(eperm, "openat", seccomp.Arg(2, seccomp.MASKED_EQ, flag, flag))
    # SECURITY: signals to anything but itself could kill the fork server's other children (they
    # share the `nobody` uid) or probe the host's processes.
    flt.add_rule(eperm, "kill", seccomp.Arg(0, seccomp.NE, own_pid))
    flt.add_rule(eperm, "tkill", seccomp.Arg(0, seccomp.NE, own_pid))
    flt.add_rule(eperm, "tgkill", seccomp.Arg(0, seccomp.NE, own_pid))
    # SECURITY: clearing PR_SET_PDEATHSIG would let a child outlive a killed fork server.
    flt.add_rule(eperm, "prctl", seccomp.Arg(0, seccomp.EQ, PR_SET_PDEATHSIG))
    return flt


# A pid no process has (above pid_max's ceiling of 2**22): compiled into the child filter, then
# replaced by the child's own pid in the child, so libseccomp runs once per fork server, not per child.
_PID_PLACEHOLDER = 0x3ADC0DE5
_BPF_JMP_JEQ_K = 0x15
_INSN = struct.Struct("=HBBI")  # struct sock_filter: code, jt, jf, k
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2


_LIBC = ctypes.CDLL(None, use_errno=True)


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


@dataclass(frozen=True)
class CompiledFilter:
    """The child filter as a BPF program with its pid compares located; see `load(own_pid)`."""

    program: bytes
    pid_slots: tuple[int, ...]  # indexes of the instructions comparing against the placeholder pid

    def load(self, own_pid: int) -> None:
        """Install the filter on the calling process (irrevocably). Needs PR_SET_NO_NEW_PRIVS first.

        Raises OSError when the kernel refuses it.
        """
        program = bytearray(self.program)
        for index in self.pid_slots:
            code, jt, jf, _ = _INSN.unpack_from(program, index * _INSN.size)
            _INSN.pack_into(program, index * _INSN.size, code, jt, jf, own_pid)
        buffer = ctypes.create_string_buffer(bytes(program), len(program))
        fprog = _SockFprog(len(program) // _INSN.size, ctypes.addressof(buffer))
        if _LIBC.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"prctl(PR_SET_SECCOMP): {os.strerror(err)}")


def compile_child_filter() -> CompiledFilter:
    """Build the child filter once (libseccomp) and export it as BPF for cheap per-child loading.

    Raises OSError when libseccomp refuses, or ValueError when the placeholder pid is not found
    exactly where expected (then the filter cannot be specialised safely and the layer is off).
    """
    flt = build_child_filter(_PID_PLACEHOLDER)
    read_fd, write_fd = os.pipe()
    try:

        class _Sink:
            def fileno(self) -> int:
                return write_fd

        # The program is a few KiB: it fits in the pipe buffer, so exporting before reading is safe.
        flt.export_bpf(_Sink())
        os.close(write_fd)
        write_fd = -1
        chunks = []
        while chunk := os.read(read_fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        if write_fd >= 0:
            os.close(write_fd)
    program = b"".join(chunks)
    if not program or len(program) % _INSN.size:
        raise ValueError(f"libseccomp exported {len(program)} bytes, not a BPF program")
    slots = []
    for index in range(len(program) // _INSN.size):
        code, _, _, k = _INSN.unpack_from(program, index * _INSN.size)
        if k == _PID_PLACEHOLDER:
            if code != _BPF_JMP_JEQ_K:
                raise ValueError(f"placeholder pid in an unexpected BPF instruction {code:#x}")
            slots.append(index)
    if not slots:
        raise ValueError("placeholder pid not found in the exported filter")
    return CompiledFilter(program=program, pid_slots=tuple(slots))


def killed_by_filter(term_signal: int) -> bool:
    """True when a child's terminating signal is the one a KILL_PROCESS rule delivers (SIGSYS)."""
    return term_signal == signal.SIGSYS
