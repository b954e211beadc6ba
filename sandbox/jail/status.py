"""From a child's death and answer to an `ActionRun`: the precise outcome, in a tenant's words.

Runs on the trusted side (the `Jail`), on facts the fork server observed (`ChildFacts`) and the raw
bytes the child wrote. The bytes are hostile: parsed strictly against `ActionOutput` (or the
diagnostics list) before anything acts on them; invalid JSON, trailing bytes or an answer from a child
that then died abnormally are all `crashed`.
"""

from __future__ import annotations

import signal

from pydantic import TypeAdapter, ValidationError

from sandbox.jail.rlimits import cpu_limits_seconds
from sandbox.jail.supervise import ChildFacts
from sandbox.limits import MIB, Limits
from sandbox.models import ActionOutput, Diagnostic, Outcome
from sandbox.runner import ActionRun

_DIAGNOSTICS = TypeAdapter(list[Diagnostic])

# A child that dies by one of these (or exits non-zero) without answering, having grown at least
# this share of its memory budget, most likely failed an allocation outside Python's MemoryError
# path (the C library, a C extension, an abort in the allocator).
_ALLOCATION_FAILURE_SIGNALS = frozenset({signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS})
_ALLOCATION_FAILURE_SHARE = 0.5


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _size_words(size_bytes: int) -> str:
    if size_bytes >= MIB and size_bytes % MIB == 0:
        return f"{size_bytes // MIB} MiB"
    if size_bytes >= 1024 and size_bytes % 1024 == 0:
        return f"{size_bytes // 1024} KiB"
    return f"{size_bytes} bytes"


def death_outcome(facts: ChildFacts, limits: Limits, timeout_seconds: float) -> tuple[Outcome, str]:
    """The outcome and detail of a child that gave no usable answer (or was killed)."""
    if facts.setup_failed is not None:
        return "crashed", f"the jail could not set up the child (step {facts.setup_failed!r})"
    if facts.killed_for == "deadline":
        return "timeout", f"killed after {timeout_seconds:.1f} s wall clock"
    if facts.killed_for == "output":
        return "output_too_large", (
            f"answer over {_size_words(limits.action_output_max_bytes)} (console, commands and "
            "error together)"
        )
    cpu_soft, _ = cpu_limits_seconds(limits)
    over_cpu = facts.cpu_ms >= cpu_soft * 1000 * 0.98
    if facts.term_signal == signal.SIGXCPU or (facts.term_signal == signal.SIGKILL and over_cpu):
        return "cpu_limit", f"exceeded {limits.action_cpu_seconds:.1f} s of CPU time"
    if facts.term_signal == signal.SIGSYS:
        return "violation", "stopped for a forbidden system call (isolation layer: seccomp)"
    grown_kb = facts.peak_memory_kb - facts.baseline_rss_kb
    near_memory_limit = grown_kb * 1024 >= limits.action_memory_bytes * _ALLOCATION_FAILURE_SHARE
    if near_memory_limit and (
        facts.term_signal in _ALLOCATION_FAILURE_SIGNALS or (facts.exit_code or 0) != 0
    ):
        return "memory_limit", (
            f"ran out of memory (limit {_size_words(limits.action_memory_bytes)})"
        )
    if facts.term_signal is not None:
        return "crashed", f"killed by {_signal_name(facts.term_signal)}"
    if facts.exit_code != 0:
        return "crashed", f"exited with code {facts.exit_code} without answering"
    return "crashed", "ended without answering"


def classify_run(
    facts: ChildFacts, answer: bytes, limits: Limits, timeout_seconds: float
) -> ActionRun:
    """The `ActionRun` of one handler run. Never raises."""
    figures = {
        "wall_ms": round(facts.wall_ms, 3),
        "cpu_ms": round(facts.cpu_ms, 3),
        "peak_memory_kb": facts.peak_memory_kb,
    }
    clean_exit = facts.exit_code == 0 and facts.killed_for is None and facts.setup_failed is None
    if clean_exit and answer:
        try:
            output = ActionOutput.model_validate_json(answer)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "(root)"
            return ActionRun(
                outcome="crashed", output=None,
                detail=f"answered something invalid ({where}: {first['msg']})", **figures,
            )
        detail = ""
        if output.outcome == "memory_limit":
            detail = f"ran out of memory (limit {_size_words(limits.action_memory_bytes)})"
        elif output.outcome == "output_too_large":
            detail = f"console output over {_size_words(limits.console_max_bytes)}"
        return ActionRun(outcome=output.outcome, output=output, detail=detail, **figures)
    outcome, detail = death_outcome(facts, limits, timeout_seconds)
    if answer and outcome == "crashed":
        detail += " (after writing an answer, which is discarded)"
    return ActionRun(outcome=outcome, output=None, detail=detail, **figures)


def classify_check(
    facts: ChildFacts, answer: bytes, limits: Limits, timeout_seconds: float
) -> list[Diagnostic]:
    """The diagnostics of one `check`: the child's list, or one `limit` diagnostic saying what
    happened to it. Never raises."""
    clean_exit = facts.exit_code == 0 and facts.killed_for is None and facts.setup_failed is None
    if clean_exit and answer:
        try:
            return _DIAGNOSTICS.validate_json(answer)
        except ValidationError:
            return [limit_diagnostic("checking the source answered something invalid")]
    _, detail = death_outcome(facts, limits, timeout_seconds)
    return [limit_diagnostic(f"checking the source failed: {detail}")]


def limit_diagnostic(message: str) -> Diagnostic:
    """A diagnostic for a check that could not finish (kind `limit`, line 1, column 0)."""
    return Diagnostic(kind="limit", line=1, column=0, message=message)
