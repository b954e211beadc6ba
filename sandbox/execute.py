"""Run one handler of one action: the code that executes INSIDE the jailed child.

`run_handler` compiles (through a small cache the jail's fork server warms before forking), executes
the module body in fresh restricted globals, calls the handler with `event` and `api`, and turns
whatever happened into an `ActionOutput`. It never raises: every way tenant code can end is an
outcome (`ok`, `error`, `violation`, `memory_limit`, `output_too_large`).

`InProcessRunner` runs the same function in the calling process, WITHOUT isolation: it is the
benchmark's no-isolation baseline and a runner for unit tests of pure logic. Tenant code never runs
there in production; `sandbox.jail.Jail` is the only runner for tenants.
"""

from __future__ import annotations

import resource
import threading
import time
from collections import OrderedDict
from types import CodeType, TracebackType
from typing import Any

from sandbox.console import Console, OutputTooLarge
from sandbox.errors import CompileFailed
from sandbox.facades import facade_modules
from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import ActionOutput, Diagnostic, ErrorInfo
from sandbox.policy import RunState, Violation, check_source, compile_action, new_globals
from sandbox.runner import ActionRequest, ActionRun, source_hash

COMPILE_CACHE_MAX_ENTRIES = 256
ERROR_MESSAGE_MAX_CHARS = 2000
OPTIONAL_HANDLERS = frozenset({"on_continue_post_challenge"})

_cache: OrderedDict[str, CodeType] = OrderedDict()
_cache_lock = threading.Lock()


def compiled(source: str, *, limits: Limits = DEFAULT_LIMITS) -> CodeType:
    """The restricted code of `source`, cached by its sha256 (at most 256 entries, LRU).

    The code's filename is "<action sha256:<first 12 hex digits>>". Raises CompileFailed.
    """
    key = source_hash(source)
    with _cache_lock:
        code = _cache.get(key)
        if code is not None:
            _cache.move_to_end(key)
            return code
    code = compile_action(source, name=f"sha256:{key[:12]}", limits=limits)
    with _cache_lock:
        _cache[key] = code
        while len(_cache) > COMPILE_CACHE_MAX_ENTRIES:
            _cache.popitem(last=False)
    return code


def run_handler(request: ActionRequest) -> ActionOutput:
    """Run `request.handler` of `request.source` on `request.event`; never raises.

    A missing optional handler (`on_continue_post_challenge`) is outcome "ok" with no commands.
    Commands are returned only with outcome "ok".
    """
    console = Console(request.limits)
    state = RunState()
    try:
        return _run(request, console, state)
    except MemoryError:
        return _output("memory_limit", request, console, _info(request, "MemoryError",
                                                                "the action ran out of memory"))
    except BaseException as exc:  # noqa: BLE001 - the promise is: never raise
        return _ended_by(exc, request, console, state, code=None)


def _run(request: ActionRequest, console: Console, state: RunState) -> ActionOutput:
    try:
        code = compiled(request.source, limits=request.limits)
    except CompileFailed as exc:
        kinds = {d.kind for d in exc.diagnostics}
        outcome = "violation" if kinds & {"policy", "import"} else "error"
        first: Diagnostic | None = exc.diagnostics[0] if exc.diagnostics else None
        return _output(outcome, request, console, _info(
            request, "CompileFailed", str(exc), first.line if first else None))

    from sandbox.api import Api
    from sandbox.event import EventView

    scope = new_globals(console, state=state, facades=facade_modules(request.now_ms))
    try:
        exec(code, scope)  # noqa: S102 - restricted code in restricted globals: this module's job
        handler = scope.get(request.handler)
        if handler is None and request.handler in OPTIONAL_HANDLERS:
            return _finish(request, console, state, [])
        if not callable(handler):
            return _output("error", request, console, _info(
                request, "MissingHandler", f"the action defines no function {request.handler}"))
        # EventView never lets tenant code change the data it wraps (test_execute checks it), so
        # the request's event is shared without a copy.
        event = EventView(request.event)
        api = Api(request)
        handler(event, api)
    except BaseException as exc:  # noqa: BLE001 - every ending of tenant code is an outcome
        return _ended_by(exc, request, console, state, code)
    return _finish(request, console, state, list(api.commands))


def _finish(request: ActionRequest, console: Console, state: RunState,
            commands: list[Any]) -> ActionOutput:
    # SECURITY: a violation or a flood that tenant code caught and swallowed still ends the run.
    if state.violated:
        return _output("violation", request, console, _violation_info(request, state))
    if console.overflowed:
        return _output("output_too_large", request, console, _info(
            request, "OutputTooLarge", f"the action printed more than "
                                       f"{request.limits.console_max_bytes} bytes"))
    return _output("ok", request, console, None, commands)


def _ended_by(exc: BaseException, request: ActionRequest, console: Console, state: RunState,
              code: CodeType | None) -> ActionOutput:
    line = _action_line(exc.__traceback__, code)
    if state.violated or isinstance(exc, Violation):
        return _output("violation", request, console, _violation_info(request, state, exc, line))
    if console.overflowed or isinstance(exc, OutputTooLarge):
        return _output("output_too_large", request, console, _info(
            request, "OutputTooLarge", _message(exc), line))
    if isinstance(exc, MemoryError):
        return _output("memory_limit", request, console, _info(
            request, "MemoryError", "the action ran out of memory", line))
    info = _info(request, type(exc).__name__, _message(exc), line)
    return _output("error", request, console, info)


def _violation_info(request: ActionRequest, state: RunState, exc: BaseException | None = None,
                    line: int | None = None) -> ErrorInfo:
    if state.violations:  # the first one, even if tenant code swallowed it
        return _info(request, "PolicyViolation", state.violations[0], state.first_line)
    return _info(request, "PolicyViolation", _message(exc) if exc else "violation", line)


def _action_line(tb: TracebackType | None, code: CodeType | None) -> int | None:
    """The line of the last traceback entry inside the action's own code."""
    if code is None:
        return None
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == code.co_filename:
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _message(exc: BaseException) -> str:
    try:
        text = str(exc)
    except BaseException:  # noqa: BLE001 - a tenant exception whose str() fails still has a type
        text = f"<{type(exc).__name__} whose message cannot be shown>"
    if len(text) > ERROR_MESSAGE_MAX_CHARS:
        text = text[:ERROR_MESSAGE_MAX_CHARS] + f"... ({len(text)} characters)"
    return text


def _info(request: ActionRequest, kind: str, message: str, line: int | None = None) -> ErrorInfo:
    return ErrorInfo(action=request.action, type=kind, message=message, line=line)


def _output(outcome: str, request: ActionRequest, console: Console, error: ErrorInfo | None,
            commands: list[Any] | None = None) -> ActionOutput:
    return ActionOutput(outcome=outcome, commands=commands or [], console=console.text,
                        console_dropped_bytes=console.dropped_bytes, error=error)


class InProcessRunner:
    """An `ActionRunner` WITHOUT isolation: benchmark baseline and unit tests only.

    Tenant code never runs here in production. `timeout_seconds` is not enforced; CPU and memory
    are not limited; figures come from `time.perf_counter` and `resource.getrusage` of this process.
    """

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.limits = limits

    def check(self, source: str | bytes, *, name: str) -> list[Diagnostic]:
        """`sandbox.policy.check_source` under this runner's limits."""
        return check_source(source, limits=self.limits)

    def run(self, request: ActionRequest, *, timeout_seconds: float) -> ActionRun:
        """Run the handler in this process; never raises. `timeout_seconds` is ignored."""
        started = time.perf_counter()
        before = resource.getrusage(resource.RUSAGE_SELF)
        output = run_handler(request)
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return ActionRun(outcome=output.outcome, output=output,
                         wall_ms=(time.perf_counter() - started) * 1000, cpu_ms=cpu_s * 1000,
                         peak_memory_kb=after.ru_maxrss)

    def close(self) -> None:
        """Nothing to release."""
