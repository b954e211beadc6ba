"""Pure logic of the jail's trusted side: how a child's death and bytes become an outcome, and the
framing's bounds. (The real jail is exercised by the other test_jail_* files.)"""

from __future__ import annotations

import signal
import socket

import pytest

from sandbox.jail import wire
from sandbox.jail.status import classify_check, classify_run
from sandbox.jail.supervise import ChildFacts
from sandbox.limits import MIB, Limits

LIMITS = Limits(action_cpu_seconds=2, action_memory_bytes=128 * MIB)
VALID = b'{"outcome":"ok","commands":[{"type":"access.deny","action":"a","reason":"r"}]}'


def facts(**changes) -> ChildFacts:
    base = dict(exit_code=0, term_signal=None, killed_for=None, wall_ms=5.0, cpu_ms=4.0,
                peak_memory_kb=30_000, baseline_rss_kb=28_000)
    base.update(changes)
    return ChildFacts(**base)


def test_a_valid_answer_from_a_clean_exit_is_used() -> None:
    run = classify_run(facts(), VALID, LIMITS, 20)
    assert run.outcome == "ok" and run.output is not None
    assert run.output.commands[0].type == "access.deny"
    assert (run.wall_ms, run.cpu_ms, run.peak_memory_kb) == (5.0, 4.0, 30_000)


@pytest.mark.parametrize("answer", [
    b"not json", VALID + b"trailing", b'{"outcome":"ok","extra":1}', b'{"outcome":"root"}', b"[]",
])
def test_an_invalid_answer_is_crashed_and_discarded(answer: bytes) -> None:
    run = classify_run(facts(), answer, LIMITS, 20)
    assert run.outcome == "crashed" and run.output is None
    assert run.detail.startswith("answered something invalid")


def test_a_valid_answer_followed_by_a_non_zero_exit_is_crashed() -> None:
    run = classify_run(facts(exit_code=3), VALID, LIMITS, 20)
    assert run.outcome == "crashed" and run.output is None
    assert run.detail == "exited with code 3 without answering (after writing an answer, which is discarded)"


@pytest.mark.parametrize(("changes", "outcome", "detail"), [
    ({"killed_for": "deadline", "exit_code": None, "term_signal": 9}, "timeout",
     "killed after 20.0 s wall clock"),
    ({"killed_for": "output", "exit_code": None, "term_signal": 9}, "output_too_large",
     "answer over 256 KiB (console, commands and error together)"),
    ({"exit_code": None, "term_signal": signal.SIGXCPU, "cpu_ms": 2001}, "cpu_limit",
     "exceeded 2.0 s of CPU time"),
    ({"exit_code": None, "term_signal": signal.SIGKILL, "cpu_ms": 2999}, "cpu_limit",
     "exceeded 2.0 s of CPU time"),
    ({"exit_code": None, "term_signal": signal.SIGKILL}, "crashed", "killed by SIGKILL"),
    ({"exit_code": None, "term_signal": signal.SIGSYS}, "violation",
     "stopped for a forbidden system call (isolation layer: seccomp)"),
    ({"exit_code": None, "term_signal": signal.SIGSEGV, "peak_memory_kb": 28_000 + 100 * 1024},
     "memory_limit", "ran out of memory (limit 128 MiB)"),
    ({"exit_code": None, "term_signal": signal.SIGSEGV}, "crashed", "killed by SIGSEGV"),
    ({"exit_code": 121, "setup_failed": "install_seccomp"}, "crashed",
     "the jail could not set up the child (step 'install_seccomp')"),
    ({"exit_code": 0}, "crashed", "ended without answering"),
])
def test_cause_of_death_becomes_a_precise_outcome(changes, outcome: str, detail: str) -> None:
    run = classify_run(facts(**changes), b"", LIMITS, 20)
    assert (run.outcome, run.detail, run.output) == (outcome, detail, None)


def test_child_reported_memory_and_console_limits_get_tenant_words() -> None:
    memory = classify_run(facts(), b'{"outcome":"memory_limit"}', LIMITS, 20)
    console = classify_run(facts(), b'{"outcome":"output_too_large"}', LIMITS, 20)
    assert memory.detail == "ran out of memory (limit 128 MiB)"
    assert console.detail == "console output over 1 MiB"


def test_check_turns_a_dead_child_into_one_limit_diagnostic() -> None:
    (found,) = classify_check(facts(exit_code=None, term_signal=signal.SIGSEGV), b"", LIMITS, 20)
    assert (found.kind, found.line, found.column) == ("limit", 1, 0)
    assert found.message == "checking the source failed: killed by SIGSEGV"
    (garbage,) = classify_check(facts(), b'[{"line": "x"}]', LIMITS, 20)
    assert garbage.kind == "limit"


def test_facts_with_both_or_neither_exit_code_and_signal_are_refused() -> None:
    with pytest.raises(ValueError):
        ChildFacts.from_json(facts(term_signal=9).to_json())
    with pytest.raises(TypeError):
        ChildFacts.from_json({**facts().to_json(), "unexpected": 1})


def test_frames_over_the_limit_and_non_objects_are_refused() -> None:
    left, right = socket.socketpair()
    with left, right:
        wire.send_frame(left, b"x" * 100)
        with pytest.raises(wire.WireError, match="exceeds the 99-byte maximum"):
            wire.recv_frame(right, 99)
    left, right = socket.socketpair()
    with left, right:
        wire.send_frame(left, b"[1, 2]")
        with pytest.raises(wire.WireError, match="not an object"):
            wire.recv_json(right)
        left.close()
        with pytest.raises(wire.WireError, match="closed"):
            wire.recv_json(right)
