"""The fork server: a small long-lived process that forks one jailed child per request.

Started by `Jail` as a fresh interpreter (`python -I -c ...`, see jail.py for why not os.fork of the
caller) with one end of a socketpair. It imports the sandbox runtime (policy, execute, api, event,
RestrictedPython, pydantic models), warms it up, sets up the process-wide layers (network namespace,
the children's Landlock ruleset, no_new_privs, its own seccomp filter), says hello with the layers' state, then serves one request at
a time: fork, let the child jail itself (child.py) and work, watch it (supervise.py), report the facts
and the child's raw answer. It never runs tenant code itself and keeps nothing tenant-specific between
requests except compiled code objects of sources that already compiled cleanly in a jailed child.

Each child is forked *before* its request arrives (the "spare"): as soon as one request has been
handed to its child (and wiped here), the next spare is forked and jails itself (and, on an idle
worker, warms up) while the current child runs. Fork and set-up are then off the request's critical
path, which is a pipe write, the run, the child's exit and a wait4. A request whose limits differ
from the spare's gets a child of its own. The fork server exits when the Jail's socket closes, even
mid-run (the child is killed first), and, when started from the Jail's main thread, by a
parent-death signal too (forking.py).
"""

from __future__ import annotations

import collections
import dataclasses
import gc
import importlib
import math
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass
from typing import Any

from sandbox.jail import layers, wire
from sandbox.jail.child import ChildPlan, run_spare_child, write_all
from sandbox.jail.forking import die_with_owner, fork_without_hooks, single_threaded
from sandbox.jail.jobs import REQUEST_LIMIT_FIELDS, Runtime
from sandbox.jail.supervise import (
    Answer, AnswerBuffer, ChildFacts, OwnerGone, cpu_ms_of, kill_child, read_proc, watch_child,
)
from sandbox.limits import Limits
from sandbox.runner import source_hash

# As many as sandbox.execute keeps compiled: a hash here means "children inherit its code object".
_KNOWN_COMPILED_MAX = 256
_PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024


@dataclass
class Spare:
    """A child forked and jailed ahead of its request, waiting on `request_fd`."""

    pid: int
    request_fd: int
    result_fd: int


def _resident_kb(pid: int) -> int:
    """The process's resident size in KiB (0 if it is gone)."""
    try:
        return int(read_proc(f"/proc/{pid}/statm").split()[1]) * _PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def request_limits(base: Limits, header: dict[str, Any]) -> Limits:
    """`base` with the request's own CPU, memory and answer bounds from `header["limits"]` (absent:
    `base`). Raises TypeError/ValueError when a bound is missing, not a number or not positive."""
    given = header.get("limits")
    if given is None:
        return base
    changes: dict[str, Any] = {}
    for name in REQUEST_LIMIT_FIELDS:
        value = given[name]
        kind = float if name == "action_cpu_seconds" else int
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"limits.{name} must be a number")
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"limits.{name} must be positive")
        changes[name] = kind(value)
    if all(getattr(base, name) == value for name, value in changes.items()):
        return base  # the usual case: no new Limits per request
    return dataclasses.replace(base, **changes)


def _freeze_heap() -> None:
    """Move every live object to the collector's permanent generation: a child's garbage collection
    then never walks (and so never copies-on-write) the fork server's heap."""
    gc.collect()
    gc.freeze()


class ForkServer:
    """One fork server's state: the plan every child follows, the spare, what is compiled."""

    def __init__(self, sock: socket.socket, plan: ChildPlan, runtime: Runtime, test_hooks: bool):
        self.sock = sock
        self.plan = plan
        self.runtime = runtime
        self.test_hooks = test_hooks
        self.known_compiled: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.spare: Spare | None = None
        self.answers = AnswerBuffer(plan.limits.action_output_max_bytes + 2)
        # The fork server starts no thread; should a library ever start one, use the safe os.fork.
        self.fork = fork_without_hooks if single_threaded() else os.fork

    def serve(self) -> None:
        """Answer requests until the Jail closes its end (then return).

        A request is a JSON header (op, timeout, the source when there is one) and a payload the
        fork server passes to the child without parsing it: the event and secrets never become
        Python objects here, and their bytes are wiped once the child has them.
        """
        self.spare = self._fork_spare()
        while True:
            try:
                header = wire.recv_json(self.sock)
                payload = wire.recv_frame_buffer(self.sock, wire.JSON_FRAME_MAX_BYTES)
            except (wire.WireError, OSError):
                return
            try:
                facts, answer = self.handle(header, payload)
            except (KeyError, TypeError, ValueError) as exc:
                wire.wipe(payload)
                wire.send_report(self.sock, {"error": f"malformed request: {exc!r}"}, b"")
                continue
            except OwnerGone:
                return  # the Jail's process died mid-run: its child is dead, now so are we
            try:
                with answer.view() as view:
                    wire.send_report(self.sock, {"facts": facts.to_json()}, view)
            finally:
                answer.wipe()
            del header, payload, facts, answer  # nothing tenant-specific stays between requests

    def handle(self, header: dict[str, Any], payload: bytearray) -> tuple[ChildFacts, Answer]:
        """Have the spare carry out one request. Raises KeyError/TypeError/ValueError if malformed."""
        op = header["op"]
        timeout_seconds = float(header["timeout_seconds"])
        source = header.get("source")
        if source is not None and not isinstance(source, str):
            raise TypeError("source must be a string")
        if op == "run":
            limits = request_limits(self.plan.limits, header)
            digest = source_hash(source)
            known = digest in self.known_compiled
            facts, answer = self._dispatch(
                payload, timeout_seconds, mark_compiled=not known, limits=limits)
            if facts.compiled:
                self._remember_compiled(digest, source)
            elif known:
                self.known_compiled.move_to_end(digest)
            return facts, answer
        if op == "check":
            facts, answer = self._dispatch(payload, timeout_seconds)
            if source is not None and facts.exit_code == 0 and answer.view() == b"[]":
                self._remember_compiled(source_hash(source), source)
            return facts, answer
        if op == "call" and self.test_hooks:
            # Children cannot read the tests' files: import here, and give the module to a new spare.
            if header["module"] not in sys.modules:
                importlib.import_module(header["module"])
                self._discard_spare()
            return self._dispatch(payload, timeout_seconds)
        raise ValueError(f"unknown op {op!r}")

    def _remember_compiled(self, digest: str, source: str) -> None:
        """Compile in the fork server (only ever a source that compiled cleanly in a child)."""
        if digest in self.known_compiled:
            self.known_compiled.move_to_end(digest)
            return
        try:
            self.runtime.compiled(source)
        except Exception:  # noqa: BLE001 - then children simply compile it themselves
            return
        self.known_compiled[digest] = None
        while len(self.known_compiled) > _KNOWN_COMPILED_MAX:
            self.known_compiled.popitem(last=False)
        _freeze_heap()

    def _fork_spare(self, plan: ChildPlan | None = None) -> Spare:
        request_read, request_write = os.pipe()
        result_read, result_write = os.pipe()
        pid = self.fork()
        if pid == 0:  # the child: never returns (no try/finally of ours spans this fork)
            os.close(request_write)
            os.close(result_read)
            run_spare_child(plan or self.plan, request_read, result_write, self.runtime)
        os.close(request_read)
        os.close(result_write)
        return Spare(pid=pid, request_fd=request_write, result_fd=result_read)

    def _discard_spare(self) -> None:
        """Kill and reap the waiting spare (it was forked before something it needs existed)."""
        if self.spare is not None:
            kill_child(self.spare.pid)
            os.waitpid(self.spare.pid, 0)
            os.close(self.spare.request_fd)
            os.close(self.spare.result_fd)
            self.spare = None

    def _take_spare(self) -> Spare:
        """The waiting spare, or a fresh one if it died while idle (killed from outside)."""
        spare = self.spare if self.spare is not None else self._fork_spare()
        self.spare = None
        reaped, _ = os.waitpid(spare.pid, os.WNOHANG)
        if reaped == 0:
            return spare
        os.close(spare.request_fd)
        os.close(spare.result_fd)
        return self._fork_spare()

    def _dispatch(
        self, payload: bytearray, timeout_seconds: float, *, mark_compiled: bool = False,
        limits: Limits | None = None,
    ) -> tuple[ChildFacts, Answer]:
        """Hand `payload` to a child set up for `limits` (the spare when they are the Jail's; else a
        child forked for this request alone) and watch it. Raises OwnerGone (see watch_child)."""
        limits = limits or self.plan.limits
        own_limits = limits is not self.plan.limits and limits != self.plan.limits
        if own_limits:
            # The spare's rlimits are the Jail's: a request with other limits gets its own child
            # (forked with this request's payload in memory: its own, which it is about to receive).
            spare = self._fork_spare(dataclasses.replace(self.plan, limits=limits))
        else:
            spare = self._take_spare()
        baseline_rss_kb = _resident_kb(spare.pid)
        cpu_before_ms = cpu_ms_of(spare.pid)
        started = time.monotonic()
        try:
            write_all(spare.request_fd, b"1" if mark_compiled else b"0")
            write_all(spare.request_fd, memoryview(payload))
        except BrokenPipeError:
            pass  # the spare died (set-up failed?): watch_child reports how
        os.close(spare.request_fd)
        wire.wipe(payload)
        if self.spare is None:
            # SECURITY: only now, with the payload wiped, may the next child be forked (it inherits
            # this process's memory). Forking it while this child runs overlaps the two on two cores.
            self.spare = self._fork_spare()
        try:
            return watch_child(
                spare.pid, spare.result_fd, started=started, timeout_seconds=timeout_seconds,
                max_output_bytes=limits.action_output_max_bytes,
                expect_marker=mark_compiled, baseline_rss_kb=baseline_rss_kb,
                cpu_before_ms=cpu_before_ms, answer_buffer=self.answers, owner=self.sock,
            )
        except OwnerGone:
            self._discard_spare()
            raise


def main(argv: list[str]) -> None:
    """Entry point: `argv` = [socket fd, package root]. Exits when the Jail closes the socket."""
    sock = socket.socket(fileno=int(argv[0]))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the Jail decides when we stop, not a terminal
    config = wire.recv_json(sock)
    if config.get("owner_pid"):
        die_with_owner(int(config["owner_pid"]))
    limits = Limits(**config["limits"])
    test_hooks = bool(config.get("test_hooks", False))
    try:
        runtime = Runtime("sandbox.execute", "sandbox.policy")
        runtime.warm_up(limits)
        _freeze_heap()
    except Exception as exc:  # noqa: BLE001 - reported to the Jail, which raises JailBroken
        wire.send_json(sock, {"error": f"the sandbox runtime failed to load: {exc!r}"})
        return
    state = {name: layers.ON for name in layers.LAYER_NAMES}
    state["network_namespace"] = layers.enable_network_namespace()
    state["no_new_privs"] = layers.enable_no_new_privs()
    state["drop_privileges"] = layers.privileges_layer()
    state["filesystem"], ruleset_fd = layers.enable_landlock(argv[1] if len(argv) > 1 else "/")
    state["seccomp"], child_filter = layers.enable_seccomp()
    if test_hooks:  # lets a test see how the Jail treats a refused layer, which this host grants
        for layer in config.get("pretend_refused", []):
            state[layer] = "refused (pretended by a test)"
    plan = ChildPlan(
        limits=limits, fork_server_pid=os.getpid(), seccomp=child_filter,
        drop_privileges=state["drop_privileges"] == layers.ON, landlock_ruleset_fd=ruleset_fd,
    )
    # The interpreter has started: the little environment it was given is no longer needed, and
    # children inherit an empty one (each still clears its own: child.clear_environment).
    os.environ.clear()
    wire.send_json(sock, {"hello": {"pid": os.getpid(), "layers": state}})
    ForkServer(sock, plan, runtime, test_hooks).serve()
    sys.exit(0)


if __name__ == "__main__":
    main(sys.argv[1:])
