"""`Jail`: the ActionRunner that runs tenant code, one forked and jailed child per request.

Why a separate fork server started as a fresh interpreter (`python -I -c ...` with a socketpair)
rather than os.fork of the caller: the caller is a Celery pool process, with threads (whose locks a
fork would copy in a held state), open Redis connections, the resume-signing key, other tenants'
events and the worker's environment (REDIS_URL, ACTIONRUNNER_SECRET_KEY). A fresh interpreter started
in isolated mode with an empty environment holds none of that: only the sandbox runtime it imports.
It costs one interpreter start (~0.2 s) per Jail, then every request is a fork of a small, warm
process. (multiprocessing's "forkserver" would pickle requests and callables; ours speaks JSON only.)
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import socket
import subprocess
import sys
import threading
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from sandbox.errors import InvalidInput, JailBroken, JailUnavailable
from sandbox.jail import wire
from sandbox.jail.jobs import REQUEST_LIMIT_FIELDS, request_to_json
from sandbox.jail.status import classify_check, classify_run, death_outcome, limit_diagnostic
from sandbox.jail.supervise import ChildFacts
from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import Diagnostic
from sandbox.runner import ActionRequest, ActionRun

log = logging.getLogger(__name__)

_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from sandbox.jail.forkserver import main; main(sys.argv[2:])"
)
_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])
_START_TIMEOUT_SECONDS = 60.0
# How long past a request's own deadline the Jail waits for the fork server's report before it
# declares the fork server stuck and replaces it.
_REPORT_GRACE_SECONDS = 10.0
_CLOSE_WAIT_SECONDS = 5.0
# The operator's switch for strict mode (see `Jail.from_env`).
STRICT_VARIABLE = "ACTIONRUNNER_JAIL_STRICT"


@dataclass(frozen=True)
class CallResult:
    """What a test callable run in a jailed child came to (see `Jail.run_callable_for_tests`)."""

    outcome: str
    value: Any
    detail: str
    facts: ChildFacts


def _stop(process: subprocess.Popen[bytes], sock: socket.socket) -> None:
    """Close the socket (the fork server exits on EOF; its children die with it), then make sure."""
    sock.close()
    try:
        process.wait(_CLOSE_WAIT_SECONDS)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class _Server:
    """One running fork server: its process, socket and the layers it reported."""

    def __init__(self, limits: Limits, config: dict[str, Any]) -> None:
        parent_sock, child_sock = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-I", "-c", _BOOT, _PACKAGE_ROOT, str(child_sock.fileno()),
                 _PACKAGE_ROOT],
                pass_fds=[child_sock.fileno()],
                # SECURITY: without it the fork server (and every child) inherits the worker's
                # environment: Redis URL, signing key, cloud credentials.
                env={"LC_ALL": "C.UTF-8"},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True, cwd="/",
            )
        finally:
            child_sock.close()
        self.sock = parent_sock
        self._finalizer = weakref.finalize(self, _stop, self.process, parent_sock)
        try:
            parent_sock.settimeout(_START_TIMEOUT_SECONDS)
            # PR_SET_PDEATHSIG follows the thread that started the fork server, not the process:
            # ask for it only from the main thread (a pool thread may exit while the Jail lives on).
            # The fork server also exits when this socket closes, which covers every case.
            owner = os.getpid() if threading.current_thread() is threading.main_thread() else 0
            wire.send_json(parent_sock, {"limits": dataclasses.asdict(limits), "owner_pid": owner,
                                         **config})
            hello = wire.recv_json(parent_sock)
        except (OSError, wire.WireError) as exc:
            self.stop()
            raise JailBroken(f"the fork server did not start: {exc}") from None
        if "hello" not in hello:
            self.stop()
            raise JailBroken(f"the fork server did not start: {hello.get('error', hello)}")
        self.pid: int = hello["hello"]["pid"]
        self.layers: dict[str, str] = dict(hello["hello"]["layers"])

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        self._finalizer()

    def exchange(
        self, header: dict[str, Any], payload: dict[str, Any], *, wait_seconds: float,
        max_answer_bytes: int,
    ) -> tuple[ChildFacts, bytes]:
        """Send one request (`header` for the fork server, `payload` for the child), return (facts,
        answer). Raises OSError/WireError if the server failed, JailBroken if it says the request
        was malformed."""
        try:
            encoded = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise InvalidInput(f"the request is not plain JSON data: {exc}", source="job") from None
        self.sock.settimeout(wait_seconds)
        wire.send_frames(self.sock, json.dumps(header, separators=(",", ":")).encode(), encoded)
        report, answer = wire.recv_report(self.sock, max_answer_bytes)
        if "facts" not in report:
            raise JailBroken(f"the fork server refused a request: {report.get('error', report)}")
        try:
            facts = ChildFacts.from_json(report["facts"])
        except (TypeError, ValueError) as exc:
            raise wire.WireError(f"malformed report: {exc}") from None
        return facts, answer


class Jail:
    """Runs tenant code in jailed children of one lazily started fork server (see module doc).

    `limits` bounds every child (CPU, memory, answer size) of `check` and the test hook; a `run` is
    held to (and reported in terms of) its own `request.limits`: a request whose CPU, memory or
    answer bounds differ from the Jail's gets a child forked for it alone (no spare: slower).
    `strict=True` refuses to run (raising JailUnavailable naming the layer) when the kernel refuses
    any isolation layer; `strict=False` warns once and runs with the layers it has. One caller at a
    time (a lock serialises calls).
    `_test_hooks` enables `run_callable_for_tests`; `_pretend_refused` makes the fork server report
    those layers as refused (both for tests only).
    """

    def __init__(
        self, limits: Limits = DEFAULT_LIMITS, *, strict: bool = True, _test_hooks: bool = False,
        _pretend_refused: tuple[str, ...] = (),
    ) -> None:
        self.limits = limits
        self.strict = strict
        self._config: dict[str, Any] = {"test_hooks": _test_hooks}
        if _pretend_refused:
            self._config["pretend_refused"] = list(_pretend_refused)
        self._lock = threading.Lock()
        self._server: _Server | None = None
        self._warned = False
        self._closed = False

    @classmethod
    def from_env(cls, limits: Limits = DEFAULT_LIMITS,
                 environ: dict[str, str] | None = None) -> Jail:
        """A Jail whose strictness an operator sets: strict unless `ACTIONRUNNER_JAIL_STRICT` is
        `0`/`false`/`no` (then every refused layer is logged once and the jail runs without it).
        Raises InvalidInput naming the variable for any other value."""
        env = os.environ if environ is None else environ
        value = env.get(STRICT_VARIABLE, "true").strip().lower()
        if value not in ("1", "true", "yes", "0", "false", "no"):
            raise InvalidInput(f"must be true or false, not {value!r}", source=STRICT_VARIABLE)
        return cls(limits, strict=value in ("1", "true", "yes"))

    # -- lifecycle -------------------------------------------------------------------------------

    def _ensure_server(self) -> _Server:
        if self._closed:
            raise JailBroken("this Jail was closed")
        if self._server is not None and self._server.alive():
            return self._server
        if self._server is not None:
            log.warning("jail: the fork server (pid %s) died; restarting it", self._server.pid)
            self._server.stop()
            self._server = None
        server = _Server(self.limits, self._config)
        refused = {layer: state for layer, state in server.layers.items() if state != "on"}
        if refused and self.strict:
            server.stop()
            layer, reason = next(iter(refused.items()))
            raise JailUnavailable(layer, reason)
        if refused and not self._warned:
            for layer, reason in refused.items():
                log.warning("jail: isolation layer %r is OFF: %s", layer, reason)
        self._warned = True
        self._server = server
        return server

    def _discard_server(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def layers(self) -> dict[str, str]:
        """Each isolation layer -> "on" or why the kernel refused it. Starts the fork server.

        Raises JailUnavailable (strict) or JailBroken (the fork server cannot start).
        """
        with self._lock:
            return dict(self._ensure_server().layers)

    @property
    def fork_server_pid(self) -> int | None:
        """The fork server's pid, or None before the first use / after close."""
        return self._server.pid if self._server is not None else None

    def close(self) -> None:
        """Stop the fork server (its children die with it); the Jail is unusable afterwards."""
        with self._lock:
            self._closed = True
            self._discard_server()

    def __enter__(self) -> Jail:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- requests --------------------------------------------------------------------------------

    def _exchange(
        self, header: dict[str, Any], payload: dict[str, Any], max_answer_bytes: int
    ) -> tuple[ChildFacts, bytes] | None:
        """(facts, answer), or None when the fork server died or hung (it is then replaced)."""
        with self._lock:
            server = self._ensure_server()
            try:
                return server.exchange(
                    header, payload, wait_seconds=header["timeout_seconds"] + _REPORT_GRACE_SECONDS,
                    max_answer_bytes=max_answer_bytes,
                )
            except (OSError, wire.WireError) as exc:
                log.warning("jail: the fork server failed during a request (%s); replacing it", exc)
                self._discard_server()
                return None

    def run(self, request: ActionRequest, *, timeout_seconds: float) -> ActionRun:
        """Run `request.handler` in a jailed child, killed after `timeout_seconds` of wall clock.

        Never raises for anything the tenant's code does. Raises InvalidInput (the request holds
        something that is not JSON data), JailUnavailable (strict, a layer is refused) or
        JailBroken (the fork server cannot start).
        """
        limits = request.limits
        header = {
            "op": "run", "timeout_seconds": timeout_seconds, "source": request.source,
            # The request's own bounds are the ones its child is held to (and reported in).
            "limits": {name: getattr(limits, name) for name in REQUEST_LIMIT_FIELDS},
        }
        payload = {"op": "run", "request": request_to_json(request)}
        result = self._exchange(header, payload, limits.action_output_max_bytes)
        if result is None:
            return ActionRun(
                outcome="crashed", output=None, wall_ms=0.0, cpu_ms=0.0, peak_memory_kb=0,
                detail="the jail's fork server died while running this action",
            )
        facts, answer = result
        return classify_run(facts, answer, limits, timeout_seconds)

    def check(
        self, source: str | bytes, *, name: str, timeout_seconds: float | None = None
    ) -> list[Diagnostic]:
        """Compile `source` under the policy in a jailed child; its diagnostics ([] = compiles).

        A child that blows up gives one `limit` diagnostic saying what happened. `name` is the
        action's name (for messages). Raises JailUnavailable / JailBroken like `run`.
        """
        timeout = timeout_seconds if timeout_seconds is not None else self.limits.execution_wall_seconds
        header: dict[str, Any] = {"op": "check", "timeout_seconds": timeout}
        payload: dict[str, Any] = {"op": "check"}
        if isinstance(source, bytes):  # possibly not UTF-8: the policy reports where, so send as is
            payload["source_b64"] = base64.b64encode(source).decode("ascii")
        else:
            header["source"] = payload["source"] = source
        result = self._exchange(header, payload, self.limits.action_output_max_bytes)
        if result is None:
            return [limit_diagnostic(f"checking {name!r} failed: the jail's fork server died")]
        facts, answer = result
        return classify_check(facts, answer, self.limits, timeout)

    def run_callable_for_tests(
        self, module: str, function: str, *args: Any, timeout_seconds: float = 10.0
    ) -> CallResult:
        """TEST HOOK: run `module.function(*args)` (plain Python, no policy) in a fully jailed child.

        Only with `Jail(_test_hooks=True)`. The function's JSON-able return value comes back as
        `value`. Used by tests/test_jail_security.py to attack the OS layers directly.
        """
        header = {"op": "call", "timeout_seconds": timeout_seconds, "module": module}
        payload = {"op": "call", "module": module, "function": function, "args": list(args)}
        result = self._exchange(header, payload, self.limits.action_output_max_bytes)
        if result is None:
            raise JailBroken("the fork server died during a test call")
        facts, answer = result
        if facts.exit_code == 0 and facts.killed_for is None and answer:
            return CallResult("ok", json.loads(answer), "", facts)
        outcome, detail = death_outcome(facts, self.limits, timeout_seconds)
        return CallResult(outcome, None, detail, facts)
