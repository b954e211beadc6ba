"""The flow rules of SPEC section 5, through `run_flow` / `resume_flow` with real action code."""

from __future__ import annotations

import dataclasses

import pytest

from sandbox.errors import InvalidInput, LimitExceeded
from sandbox.flow import BoundAction
from sandbox.flow_result import FAILURE_RESERVE_BYTES
from tests.conftest_flow import (  # noqa: F401 - fixtures
    TEST_LIMITS, Flow, action_runner, an_event, flow, types,
)

SET_A = """
def on_execute_post_challenge(event, api):
    api.cache.set("a", "from-a1")
    api.transaction.set_result_url("https://app.example.com/one")
"""
READ_A = """
def on_execute_post_challenge(event, api):
    record = api.cache.get("a")
    print("a2 sees " + (record.value if record else "nothing"))
    api.transaction.set_result_url("https://app.example.com/two")
"""
RESULT_URL = """
def on_execute_post_challenge(event, api):
    api.transaction.set_result_url("https://app.example.com/after")
"""
CHALLENGE = """
def on_execute_post_challenge(event, api):
    api.authentication.challenge_with({"type": "otp"})

def on_continue_post_challenge(event, api):
    print("on_continue must not run after a challenge")
"""
REDIRECT = """
def on_execute_post_challenge(event, api):
    api.cache.set("before", "1")
    api.redirect.send_user_to("https://risk.example.com/check", {"case": "42"})

def on_continue_post_challenge(event, api):
    print("back with " + event.request.ip + " and " + str(event.request.query.get("from")))
    api.cache.set("after", "2")
"""
PROMPT = """
def on_execute_post_challenge(event, api):
    api.prompt.render("ap_reason", {"reason": ""}, {"attempt": 3})

def on_continue_post_challenge(event, api):
    print(event.prompt.id + " " + event.prompt.fields.reason + " " + str(event.prompt.vars.attempt))
"""
FAILS_AT_LINE_4 = """
def on_execute_post_challenge(event, api):
    api.cache.set("from-failing", "x")
    raise ValueError("no reset for you")
"""


def test_all_actions_run_in_order_and_the_flow_completes(flow: Flow) -> None:
    result = flow.run(flow.actions(SET_A, READ_A))
    assert result.status == "completed"
    assert [(c.action, c.type) for c in result.commands] == [
        ("a1", "cache.set"), ("a1", "transaction.set_result_url"),
        ("a2", "transaction.set_result_url"),
    ]
    assert [(a.name, a.version, a.outcome) for a in result.actions] == [("a1", 1, "ok"),
                                                                         ("a2", 2, "ok")]
    assert result.error is None and result.resume is None


def test_a_later_action_sees_an_earlier_actions_cache_write(flow: Flow) -> None:
    result = flow.run(flow.actions(SET_A, READ_A))
    assert [(log.action, log.message) for log in result.logs] == [("a2", "a2 sees from-a1\n")]


def test_every_set_result_url_is_listed_in_order_so_the_last_can_win(flow: Flow) -> None:
    result = flow.run(flow.actions(SET_A, READ_A))
    urls = [c.url for c in result.commands if c.type == "transaction.set_result_url"]
    assert urls == ["https://app.example.com/one", "https://app.example.com/two"]


def test_each_action_sees_only_its_own_secrets(flow: Flow) -> None:
    show = """
def on_execute_post_challenge(event, api):
    print(",".join(sorted(event.secrets.keys())) + "=" + ",".join(sorted(event.secrets.values())))
"""
    actions = [BoundAction("first", show, secrets={"A_KEY": "alpha"}),
               BoundAction("second", show, secrets={"B_KEY": "beta"})]
    result = flow.run(actions)
    assert [log.message for log in result.logs] == ["A_KEY=alpha\n", "B_KEY=beta\n"]


def test_deny_stops_the_flow_and_keeps_what_the_denying_action_issued_before(flow: Flow) -> None:
    deny = """
def on_execute_post_challenge(event, api):
    api.cache.set("seen", "1")
    api.access.deny("blocked domain")
"""
    result = flow.run(flow.actions(deny, RESULT_URL))
    assert result.status == "denied"
    assert types(result) == ["cache.set", "access.deny"]
    assert [a.name for a in result.actions] == ["a1"]


def test_a_failing_action_fails_the_flow_without_its_commands(flow: Flow) -> None:
    result = flow.run(flow.actions(SET_A, FAILS_AT_LINE_4, RESULT_URL))
    assert result.status == "failed"
    assert [(c.action, c.type) for c in result.commands] == [
        ("a1", "cache.set"), ("a1", "transaction.set_result_url")]
    assert result.error is not None
    assert (result.error.action, result.error.type, result.error.line) == ("a2", "ValueError", 4)
    assert "no reset for you" in result.error.message
    assert [(a.name, a.outcome) for a in result.actions] == [("a1", "ok"), ("a2", "error")]


def test_a_challenge_suspends_and_resuming_runs_the_next_action_only(flow: Flow) -> None:
    actions = flow.actions(SET_A, CHALLENGE, RESULT_URL)
    suspended = flow.run(actions)
    assert suspended.status == "suspended"
    assert types(suspended) == ["cache.set", "transaction.set_result_url",
                                "authentication.challenge_with"]
    assert suspended.resume is not None and suspended.resume.state == "state-1"

    resumed = flow.resume(actions, suspended)
    assert resumed.status == "completed"
    assert [a.name for a in resumed.actions] == ["a3"]  # a1 and a2 never run again
    assert [(c.action, c.type) for c in resumed.commands] == [("a3", "transaction.set_result_url")]
    assert resumed.logs == []


def test_a_redirect_carries_the_state_and_resuming_runs_on_continue_then_the_rest(
    flow: Flow,
) -> None:
    actions = flow.actions(REDIRECT, RESULT_URL)
    suspended = flow.run(actions)
    assert suspended.status == "suspended"
    redirect = suspended.commands[-1]
    assert redirect.type == "redirect.send_user_to"
    assert redirect.query == {"case": "42", "state": "state-1"}

    fresh = an_event(request={"ip": "198.51.100.1", "query": {"from": "risk"}})
    resumed = flow.resume(actions, suspended, event=fresh)
    assert resumed.status == "completed"
    assert [(a.name, a.outcome) for a in resumed.actions] == [("a1", "ok"), ("a2", "ok")]
    assert [log.message for log in resumed.logs] == ["back with 198.51.100.1 and risk\n"]
    assert types(resumed) == ["cache.set", "transaction.set_result_url"]  # only new commands
    assert resumed.commands[0].key == "after"


def test_a_prompt_suspends_and_its_answers_arrive_as_event_prompt(flow: Flow) -> None:
    actions = flow.actions(PROMPT, RESULT_URL)
    suspended = flow.run(actions)
    assert suspended.status == "suspended"
    assert types(suspended) == ["prompt.render"]
    resumed = flow.resume(actions, suspended, body={"reason": "forgot it"})
    assert resumed.status == "completed"
    assert [log.message for log in resumed.logs] == ["ap_reason forgot it 3\n"]


def test_a_resumed_flow_can_suspend_again_at_a_later_action(flow: Flow) -> None:
    actions = flow.actions(REDIRECT, CHALLENGE, RESULT_URL)
    first = flow.run(actions)
    second = flow.resume(actions, first)
    assert second.status == "suspended" and types(second)[-1] == "authentication.challenge_with"
    third = flow.resume(actions, second)
    assert third.status == "completed" and [a.name for a in third.actions] == ["a3"]


def test_the_console_is_kept_per_action_with_a_note_when_output_was_dropped(flow: Flow) -> None:
    loud = """
def on_execute_post_challenge(event, api):
    print("x" * 300)
"""
    limits = dataclasses.replace(TEST_LIMITS, console_kept_bytes=100)
    result = flow.run(flow.actions(loud), limits=limits)
    assert result.status == "completed"
    kept, note = result.logs
    assert kept.message == "x" * 100
    assert "dropped" in note.message and note.action == "a1"


def test_a_result_document_over_its_limit_fails_the_flow_at_the_action_that_grew_it(
    flow: Flow,
) -> None:
    big = """
def on_execute_post_challenge(event, api):
    api.transaction.set_result_url("https://app.example.com/", {"pad": "p" * 3000})
"""
    limits = dataclasses.replace(TEST_LIMITS, result_max_bytes=FAILURE_RESERVE_BYTES + 2500)
    result = flow.run(flow.actions(RESULT_URL, big, RESULT_URL), limits=limits)
    assert result.status == "failed"
    assert result.error is not None
    assert (result.error.action, result.error.type) == ("a2", "output_too_large")
    assert [c.action for c in result.commands] == ["a1"]
    assert [(a.name, a.outcome) for a in result.actions] == [("a1", "ok"),
                                                             ("a2", "output_too_large")]
    assert len(result.model_dump_json()) <= limits.result_max_bytes


def test_more_actions_than_the_limit_are_refused_before_anything_runs(flow: Flow) -> None:
    actions = [BoundAction(f"n{i}", RESULT_URL) for i in range(TEST_LIMITS.actions_max_count + 1)]
    with pytest.raises(LimitExceeded, match="21 actions"):
        flow.run(actions)


def test_two_actions_of_the_same_name_are_refused(flow: Flow) -> None:
    with pytest.raises(InvalidInput, match="bound twice"):
        flow.run([BoundAction("same", RESULT_URL), BoundAction("same", RESULT_URL)])


@pytest.mark.parametrize("secrets, field", [
    ({"N": 1}, "secrets.N"),
    ({"L": "v" * 4097}, "secrets.L"),
    ({"x" * 129: "v"}, "secrets.xxxx"),
    ({f"S{i}": "v" for i in range(31)}, "31 secrets"),
])
def test_secrets_outside_the_limits_are_refused_naming_the_secret(secrets: dict, field: str) -> None:
    with pytest.raises(InvalidInput, match=field):
        BoundAction("a", RESULT_URL, secrets=secrets)


def test_an_execution_without_time_left_fails_with_timeout_before_running(flow: Flow) -> None:
    limits = dataclasses.replace(TEST_LIMITS, execution_wall_seconds=0.0)
    result = flow.run(flow.actions(RESULT_URL), limits=limits)
    assert result.status == "failed" and result.actions == []
    assert result.error is not None and result.error.type == "timeout"


SPIN = """
def on_execute_post_challenge(event, api):
    api.cache.set("spinning", "1")
    while True:
        pass
"""


def test_a_timeout_fails_the_flow_with_type_timeout(flow: Flow) -> None:
    limits = dataclasses.replace(TEST_LIMITS, execution_wall_seconds=0.9)  # below the CPU limit
    result = flow.run(flow.actions(RESULT_URL, SPIN, RESULT_URL), limits=limits)
    assert result.status == "failed"
    assert result.error is not None and (result.error.action, result.error.type) == ("a2", "timeout")
    assert result.error.message  # the jail's words
    assert [(a.name, a.outcome) for a in result.actions] == [("a1", "ok"), ("a2", "timeout")]
    assert [c.action for c in result.commands] == ["a1"]


def test_cpu_exhaustion_fails_the_flow_with_type_cpu_limit(flow: Flow) -> None:
    result = flow.run(flow.actions(SPIN))
    assert result.error is not None and result.error.type == "cpu_limit"
    assert result.actions[0].outcome == "cpu_limit" and result.commands == []


def test_memory_exhaustion_fails_the_flow_with_type_memory_limit(flow: Flow) -> None:
    hog = """
def on_execute_post_challenge(event, api):
    api.cache.set("hog", "1")
    x = "a" * (10 ** 10)
"""
    result = flow.run(flow.actions(hog))
    assert result.error is not None and result.error.type == "memory_limit"
    assert result.commands == []


def test_a_console_flood_fails_the_flow_with_type_output_too_large(flow: Flow) -> None:
    flood = """
def on_execute_post_challenge(event, api):
    for i in range(64):
        print("x" * 32768)
"""
    result = flow.run(flow.actions(RESULT_URL, flood))
    assert result.error is not None and (result.error.action, result.error.type) == (
        "a2", "output_too_large")
    assert [c.action for c in result.commands] == ["a1"]
