"""The flow never trusts a child: answers are scripted here (a fake runner: pure flow logic), as a
compromised child could send them, and the trusted side must bound, re-check and refuse."""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Sequence
from typing import Any

from sandbox.flow import BoundAction, resume_flow, run_flow
from sandbox.flow_result import FAILURE_RESERVE_BYTES
from sandbox.models import (
    AccessDeny, ActionOutput, CacheSet, ChallengeWith, ContinueRequest, Diagnostic, ErrorInfo,
    FactorSelector, PromptRender, SendUserTo, SetResultUrl, parse_event,
)
from sandbox.resume import ResumeSigner
from sandbox.runner import ActionRequest, ActionRun
from tests.conftest_flow import TEST_LIMITS

NOW_MS = 1_800_000_000_000
SIGNER = ResumeSigner(b"s" * 32)
EVENT = parse_event({"user": {"user_id": "u1"}, "transaction": {"state": "st"}})


class ScriptedRunner:
    """Answers each run with the next scripted ActionRun; records requests and time budgets."""

    def __init__(self, runs: Sequence[ActionRun]) -> None:
        self.runs = list(runs)
        self.requests: list[ActionRequest] = []
        self.timeouts: list[float] = []

    def check(self, source: str | bytes, *, name: str) -> list[Diagnostic]:
        return []

    def run(self, request: ActionRequest, *, timeout_seconds: float) -> ActionRun:
        self.requests.append(copy.deepcopy(request))  # as the flow handed it over
        self.timeouts.append(timeout_seconds)
        request.event["user"]["user_id"] = "tampered"  # a runner scribbling on what it was given
        request.cache["tampered"] = {"value": "x", "expires_at": NOW_MS + 1}
        return self.runs.pop(0)

    def close(self) -> None:
        pass


def ok(*commands: Any, console: str = "", dropped: int = 0) -> ActionRun:
    output = ActionOutput(outcome="ok", commands=list(commands), console=console,
                          console_dropped_bytes=dropped)
    return ActionRun(outcome="ok", output=output, wall_ms=1.0, cpu_ms=1.0, peak_memory_kb=1000)


def actions(count: int, secrets: dict[str, str] | None = None) -> list[BoundAction]:
    return [BoundAction(f"a{i}", "def on_execute_post_challenge(event, api): pass",
                        secrets={f"S{i}": f"v{i}"} if secrets is None else secrets)
            for i in range(1, count + 1)]


def run(runner: ScriptedRunner, count: int, cache: Any = None, **kw: Any):  # type: ignore[no-untyped-def]
    return run_flow(actions(count), EVENT, runner=runner, cache=cache or {}, signer=SIGNER,
                    tenant="t", limits=kw.pop("limits", TEST_LIMITS), now_ms=lambda: NOW_MS, **kw)


def cache_set(action: str, key: str, value: str = "v") -> CacheSet:
    return CacheSet(action=action, key=key, value=value, expires_at=NOW_MS + 60_000)


def test_commands_claiming_another_action_fail_the_flow_as_a_violation() -> None:
    result = run(ScriptedRunner([ok(AccessDeny(action="someone-else", reason="x"))]), 1)
    assert result.status == "failed" and result.commands == []
    assert result.error is not None and result.error.type == "violation"
    assert result.actions[0].outcome == "violation"


def test_a_prompt_together_with_a_redirect_is_a_violation() -> None:
    both = ok(PromptRender(action="a1", prompt_id="p"),
              SendUserTo(action="a1", url="https://x.example.com/"))
    result = run(ScriptedRunner([both]), 1)
    assert result.status == "failed" and result.error is not None
    assert result.error.type == "violation"


def test_a_cache_write_over_the_limits_is_dropped_and_reported_in_the_logs() -> None:
    answer = ok(cache_set("a1", "fine"), cache_set("a1", "huge", "v" * 5000))
    result = run(ScriptedRunner([answer]), 1)
    assert result.status == "completed"
    assert [c.key for c in result.commands] == ["fine"]
    assert "CacheValueSizeExceeded" in result.logs[0].message


def test_cache_writes_past_the_side_effect_limit_are_dropped() -> None:
    many = [CacheSet(action="a1", key=f"k{i}", value="v", expires_at=NOW_MS + 1000)
            for i in range(TEST_LIMITS.side_effects_max_count + 2)]
    # Overwrite the same few keys so the record-count limit is never the reason.
    many = [c.model_copy(update={"key": f"k{i % 5}"}) for i, c in enumerate(many)]
    result = run(ScriptedRunner([ok(*many)]), 1)
    assert len(result.commands) == TEST_LIMITS.side_effects_max_count
    assert all("MaxSideEffectsExceeded" in log.message for log in result.logs)
    assert len(result.logs) == 2


def test_a_console_larger_than_the_limit_is_clipped_with_a_note() -> None:
    result = run(ScriptedRunner([ok(console="é" * TEST_LIMITS.console_kept_bytes)]), 1)
    kept, note = result.logs
    assert len(kept.message.encode()) <= TEST_LIMITS.console_kept_bytes
    assert f"{TEST_LIMITS.console_kept_bytes}-byte limit" in note.message


def test_a_huge_error_message_is_truncated() -> None:
    failed = ActionRun(outcome="error", wall_ms=1, cpu_ms=1, peak_memory_kb=1, output=ActionOutput(
        outcome="error", error=ErrorInfo(action="a1", type="ValueError", message="m" * 100_000,
                                         line=3)))
    result = run(ScriptedRunner([failed]), 1)
    assert result.error is not None and len(result.error.message) < 3000
    assert (result.error.type, result.error.line) == ("ValueError", 3)


def test_a_failure_after_a_nearly_full_document_still_fits_in_the_limit() -> None:
    limits = dataclasses.replace(TEST_LIMITS, result_max_bytes=FAILURE_RESERVE_BYTES + 3000)
    filler = ok(SetResultUrl(action="a1", url="https://x.example.com/", query={"p": "p" * 2700}))
    nasty = ActionRun(outcome="error", wall_ms=1, cpu_ms=1, peak_memory_kb=1, output=ActionOutput(
        outcome="error", console="\x01" * TEST_LIMITS.console_kept_bytes,
        error=ErrorInfo(action="a1", type="E", message="\x01" * 100_000)))
    result = run(ScriptedRunner([filler, nasty]), 2, limits=limits)
    assert result.status == "failed" and [c.action for c in result.commands] == ["a1"]
    assert len(result.model_dump_json().encode()) <= limits.result_max_bytes


def test_a_jail_outcome_becomes_the_error_type_with_the_jails_detail() -> None:
    killed = ActionRun(outcome="cpu_limit", output=None, wall_ms=1, cpu_ms=2000,
                       peak_memory_kb=1, detail="exceeded 1 s of CPU time")
    result = run(ScriptedRunner([ok(), killed]), 2)
    assert result.error == ErrorInfo(action="a2", type="cpu_limit",
                                     message="exceeded 1 s of CPU time", line=None)


def test_an_ok_run_without_output_counts_as_crashed() -> None:
    result = run(ScriptedRunner([ActionRun("ok", None, 1, 1, 1)]), 1)
    assert result.status == "failed" and result.actions[0].outcome == "crashed"


def test_deny_wins_over_a_challenge_in_the_same_action() -> None:
    both = ok(ChallengeWith(action="a1", factor=FactorSelector(type="otp")),
              AccessDeny(action="a1", reason="no"))
    result = run(ScriptedRunner([both]), 1)
    assert result.status == "denied" and result.resume is None


def test_each_run_gets_the_time_left_of_the_execution() -> None:
    runner = ScriptedRunner([ok(), ok(), ok()])
    run(runner, 3)
    assert all(0 < t <= TEST_LIMITS.execution_wall_seconds for t in runner.timeouts)
    assert runner.timeouts == sorted(runner.timeouts, reverse=True)


def test_no_runner_can_change_what_the_flow_or_later_actions_see() -> None:
    given = {"k": {"value": "v", "expires_at": NOW_MS + 1000}}
    runner = ScriptedRunner([ok(), ok()])
    run(runner, 2, cache=given)
    first, second = runner.requests
    assert second.event["user"]["user_id"] == "u1"
    assert "tampered" not in second.cache
    assert given == {"k": {"value": "v", "expires_at": NOW_MS + 1000}}
    assert (first.event["secrets"], second.event["secrets"]) == ({"S1": "v1"}, {"S2": "v2"})
    assert first.continue_request is None and "prompt" not in first.event


def test_on_resume_only_the_suspended_action_sees_the_prompt_and_continue_request() -> None:
    bound = actions(2)
    prompt = ok(PromptRender(action="a1", prompt_id="ap", vars={"v": 1}))
    suspended = run(ScriptedRunner([prompt]), 2)
    assert suspended.resume is not None
    runner = ScriptedRunner([ok(), ok()])
    resume_flow(bound, EVENT, resume=suspended.resume, runner=runner, cache={}, signer=SIGNER,
                continue_request=ContinueRequest(state="st", body={"answer": "yes"}), tenant="t",
                limits=TEST_LIMITS, now_ms=lambda: NOW_MS)
    first, second = runner.requests
    assert first.handler == "on_continue_post_challenge"
    assert first.event["prompt"] == {"id": "ap", "fields": {"answer": "yes"}, "vars": {"v": 1}}
    assert first.continue_request == {"state": "st", "query": {}, "body": {"answer": "yes"}}
    assert second.handler == "on_execute_post_challenge"
    assert "prompt" not in second.event and second.continue_request is None
