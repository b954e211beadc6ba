"""The result document of one execution, built action by action and kept under its size limit.

The flow (`sandbox.flow`) feeds it each action's report, console and applied commands; it keeps the
console within `limits.console_kept_bytes` per action and refuses to let the serialised document grow
past `limits.result_max_bytes`: the action whose output would cross it fails the execution with
`output_too_large`, and none of its commands or logs are kept.
"""

from __future__ import annotations

from typing import Any

from sandbox.limits import Limits
from sandbox.models import ActionReport, ErrorInfo, LogEntry, Result, ResumeInfo, Status

# Room kept free while actions run, so that a failure report (its error, at most ERROR_MAX_CHARS of
# message, and the failing action's entry) always fits in the document afterwards.
ERROR_MAX_CHARS = 1000
FAILURE_RESERVE_BYTES = 10 * 1024


def _size(result: Result) -> int:
    return len(result.model_dump_json().encode("utf-8"))


def _clip_utf8(text: str, max_bytes: int) -> tuple[str, int]:
    """`text` cut to at most `max_bytes` of UTF-8 (never mid-character), and the bytes cut off."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= max_bytes:
        return text, 0
    kept = data[:max_bytes].decode("utf-8", errors="ignore")
    return kept, len(data) - len(kept.encode("utf-8"))


class ResultBuilder:
    """Collects commands, logs and action reports; every finishing method returns a `Result`."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.commands: list[Any] = []
        self.logs: list[LogEntry] = []
        self.actions: list[ActionReport] = []
        self._action_logs_start = 0

    def report(self, report: ActionReport) -> None:
        """Record that an action ran; the logs that follow belong to it."""
        self.actions.append(report)
        self._action_logs_start = len(self.logs)

    def log(self, action: str, message: str) -> None:
        """Add one log entry for `action`."""
        self.logs.append(LogEntry(action=action, message=message))

    def console(self, action: str, text: str, dropped_bytes: int) -> None:
        """Add what `action` printed (cut to `limits.console_kept_bytes`) and a note on what was
        dropped."""
        # SECURITY: the child's console is bounded again here; a child that ignores its own bound
        # cannot fill the result document with it.
        text, cut = _clip_utf8(text, self.limits.console_kept_bytes)
        dropped = max(dropped_bytes, 0) + cut
        if text:
            self.log(action, text)
        if dropped:
            self.log(action, f"[actionrunner] {dropped} bytes of console output dropped: over the "
                             f"{self.limits.console_kept_bytes}-byte limit per action")

    def commit(
        self, action: str, commands: list[Any], *, status: Status | None,
        resume: ResumeInfo | None = None,
    ) -> Result | None:
        """Add `action`'s applied commands. With a `status`, return the final result; with None, the
        flow goes on (None is returned). Either way the document must fit: if it would not, the
        action's commands and logs are taken back and the execution fails with output_too_large."""
        self.commands.extend(commands)
        candidate = self._result(status or "completed", resume=resume)
        size = _size(candidate)
        room = self.limits.result_max_bytes - FAILURE_RESERVE_BYTES
        if size > room:
            del self.commands[len(self.commands) - len(commands):]
            del self.logs[self._action_logs_start:]
            last = self.actions[-1]
            self.actions[-1] = last.model_copy(update={"outcome": "output_too_large"})
            return self.failed(ErrorInfo(
                action=action, type="output_too_large",
                message=f"the result document would be {size} bytes, over the {room} bytes actions "
                        f"may fill (the limit is {self.limits.result_max_bytes} bytes, "
                        f"{FAILURE_RESERVE_BYTES} kept for an error report)",
            ))
        return candidate if status is not None else None

    def failed(self, error: ErrorInfo) -> Result:
        """The result of a failed execution: commands of the actions before the failing one stand."""
        if len(error.message) > ERROR_MAX_CHARS:
            error = error.model_copy(
                update={"message": error.message[:ERROR_MAX_CHARS] + "... (truncated)"})
        result = self._result("failed", error=error)
        if _size(result) > self.limits.result_max_bytes:
            # Earlier actions left the reserve free; only the failing action's logs can fill it.
            del self.logs[self._action_logs_start:]
            self.log(error.action, "[actionrunner] console output dropped: the result document "
                                   "was over its size limit")
            result = self._result("failed", error=error)
        return result

    def finish(self, status: Status) -> Result:
        """The result when every action ran."""
        return self._result(status)

    def _result(
        self, status: Status, *, error: ErrorInfo | None = None, resume: ResumeInfo | None = None,
    ) -> Result:
        return Result(
            status=status, commands=list(self.commands), logs=list(self.logs),
            actions=list(self.actions), error=error, resume=resume,
        )
