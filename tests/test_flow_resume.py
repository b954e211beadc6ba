"""Every check on a resume: forged, expired, other tenant, other user, changed actions, wrong state."""

from __future__ import annotations

import pytest

from sandbox.errors import ResumeRefused
from sandbox.flow import BoundAction
from sandbox.models import Result, ResumeInfo
from sandbox.resume import ResumeSigner
from tests.conftest_flow import (  # noqa: F401 - fixtures
    TEST_LIMITS, Flow, action_runner, an_event, flow,
)

REDIRECT = """
def on_execute_post_challenge(event, api):
    api.redirect.send_user_to("https://risk.example.com/")

def on_continue_post_challenge(event, api):
    api.transaction.set_result_url("https://app.example.com/resumed")
"""
Suspended = tuple[list[BoundAction], Result]
LAST = """
def on_execute_post_challenge(event, api):
    api.transaction.set_result_url("https://app.example.com/last")
"""


@pytest.fixture(scope="module")
def suspended(flow: Flow) -> Suspended:
    actions = flow.actions(REDIRECT, LAST)
    result = flow.run(actions)
    assert result.status == "suspended" and result.resume is not None
    return actions, result


def test_a_valid_resume_runs(flow: Flow, suspended: Suspended) -> None:
    actions, result = suspended
    assert flow.resume(actions, result).status == "completed"


def test_a_token_signed_with_another_key_is_refused(flow: Flow, suspended: Suspended) -> None:
    actions, result = suspended
    other = Flow(flow.runner)
    other.signer = ResumeSigner(b"z" * 32)
    with pytest.raises(ResumeRefused, match="forged"):
        other.resume(actions, result)


def test_an_expired_token_is_refused(flow: Flow, suspended: Suspended) -> None:
    actions, result = suspended
    later = Flow(flow.runner)
    later.now_ms = flow.now_ms + TEST_LIMITS.resume_state_ttl_seconds * 1000
    with pytest.raises(ResumeRefused, match="expired"):
        later.resume(actions, result)


def test_another_tenants_resume_is_refused(flow: Flow, suspended: Suspended) -> None:
    actions, result = suspended
    with pytest.raises(ResumeRefused, match="another tenant"):
        flow.resume(actions, result, tenant="globex")


def test_a_resume_for_another_user_is_refused(flow: Flow, suspended: Suspended) -> None:
    actions, result = suspended
    with pytest.raises(ResumeRefused, match="another user"):
        flow.resume(actions, result, event=an_event(user={"user_id": "auth0|mallory"}))


@pytest.mark.parametrize("change", ["source", "version", "order", "added"])
def test_a_resume_after_the_bound_actions_changed_is_refused(
    flow: Flow, suspended: Suspended, change: str,
) -> None:
    actions, result = suspended
    first, second = actions
    changed = {
        "source": [first, BoundAction(second.name, second.source + "\n# edited", second.version)],
        "version": [first, BoundAction(second.name, second.source, 99)],
        "order": [second, first],
        "added": [first, second, BoundAction("a3", LAST)],
    }[change]
    with pytest.raises(ResumeRefused, match="changed"):
        flow.resume(changed, result)


def test_a_continue_request_with_another_state_is_refused(flow: Flow, suspended: Suspended) -> None:
    actions, result = suspended
    with pytest.raises(ResumeRefused, match="continue request's state"):
        flow.resume(actions, result, state="state-of-another-flow")


def test_a_resume_info_whose_state_was_swapped_is_refused(flow: Flow, suspended: Suspended) -> None:
    actions, result = suspended
    assert result.resume is not None
    swapped = ResumeInfo(state="other", token=result.resume.token)
    with pytest.raises(ResumeRefused, match="state"):
        flow.resume(actions, result, resume=swapped, state="other")


def test_a_fresh_event_of_another_flow_state_is_refused(flow: Flow, suspended: Suspended) -> None:
    actions, result = suspended
    with pytest.raises(ResumeRefused, match="transaction.state"):
        flow.resume(actions, result, event=an_event(transaction={"state": "state-2"}))
