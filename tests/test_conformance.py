"""Conformance with SPEC sections 2-4: every `api` call and alias, every cache error code, every
`validate_token` check, and the `event` as tenant code reads it; all through `run_flow` /
`resume_flow` with real action code in the runner of tests/conftest_flow.py."""

from __future__ import annotations

from typing import Any

import jwt
import pytest

from sandbox.models import Result
from sandbox.tokens import encode_token
from tests.conftest_flow import (  # noqa: F401 - fixtures
    NOW_MS, Flow, action_runner, an_event, flow, types,
)

NOW_S = NOW_MS // 1000
SECRET = "shared-with-the-risk-service-0123456789"


def handler(body: str, on_continue: str | None = None) -> str:
    """An action source whose on_execute_post_challenge body is `body` (one statement per line);
    the module defines SECRET, the secret the tests' tokens are signed with."""
    source = f"SECRET = {SECRET!r}\n\ndef on_execute_post_challenge(event, api):\n" + "".join(
        f"    {line}\n" for line in body.strip().splitlines())
    if on_continue:
        source += "\ndef on_continue_post_challenge(event, api):\n" + "".join(
            f"    {line}\n" for line in on_continue.strip().splitlines())
    return source


def printed(result: Result) -> str:
    return "".join(log.message for log in result.logs)


def command(flow: Flow, body: str) -> dict[str, Any]:
    """The one command an action with `body` issues, as JSON data (without its `action` tag)."""
    result = flow.run(flow.actions(handler(body)))
    assert len(result.commands) == 1, (result.status, result.error, result.commands)
    data = result.commands[0].model_dump(mode="json")
    assert data.pop("action") == "a1"
    return data


def failure(flow: Flow, body: str) -> tuple[str, str]:
    result = flow.run(flow.actions(handler(body)))
    assert result.status == "failed" and result.error is not None and result.commands == []
    return result.error.type, result.error.message


# -- api.access, api.authentication, api.prompt, api.transaction --------------------------------


def test_deny_issues_access_deny_with_the_reason(flow: Flow) -> None:
    assert command(flow, 'api.access.deny("no")') == {"type": "access.deny", "reason": "no"}


@pytest.mark.parametrize("call", [
    'api.authentication.challenge_with({"type": "otp"}, [{"type": "push"}])',
    'api.authentication.challengeWith({"type": "otp"}, {"additionalFactors": [{"type": "push"}]})',
])
def test_challenge_with_and_its_alias_issue_the_same_command(flow: Flow, call: str) -> None:
    assert command(flow, call) == {
        "type": "authentication.challenge_with", "factor": {"type": "otp", "options": None},
        "additional_factors": [{"type": "push-notification", "options": None}],
    }


@pytest.mark.parametrize("call", ["challenge_with_any", "challengeWithAny"])
def test_challenge_with_any_and_its_alias_issue_the_same_command(flow: Flow, call: str) -> None:
    factors = '[{"type": "email"}, {"type": "phone", "options": {"preferred_method": "sms"}}]'
    assert command(flow, f"api.authentication.{call}({factors})") == {
        "type": "authentication.challenge_with_any", "factors": [
            {"type": "email", "options": None},
            {"type": "phone", "options": {"preferred_method": "sms"}}],
    }


def test_an_unknown_factor_fails_the_action_with_a_clear_error(flow: Flow) -> None:
    kind, message = failure(flow, 'api.authentication.challenge_with({"type": "carrier-pigeon"})')
    assert kind == "ApiError" and "carrier-pigeon" in message and "otp" in message


def test_prompt_render_issues_the_prompt_with_fields_and_vars(flow: Flow) -> None:
    assert command(flow, 'api.prompt.render("ap_1", {"code": ""}, {"n": 2})') == {
        "type": "prompt.render", "prompt_id": "ap_1", "fields": {"code": ""}, "vars": {"n": 2}}


@pytest.mark.parametrize("body", [
    'api.prompt.render("a")\napi.prompt.render("b")',
    'api.prompt.render("a")\napi.redirect.send_user_to("https://x.example.com/")',
    'api.redirect.send_user_to("https://x.example.com/")\napi.prompt.render("a")',
])
def test_a_second_prompt_or_a_prompt_with_a_redirect_is_an_error(flow: Flow, body: str) -> None:
    kind, message = failure(flow, body)
    assert kind == "ApiError" and "prompt" in message


@pytest.mark.parametrize("call", [
    'api.transaction.set_result_url("https://app.example.com/done", {"lang": "en"})',
    'api.transaction.setResultUrl("https://app.example.com/done", {"query": {"lang": "en"}})',
])
def test_set_result_url_and_its_alias_issue_the_same_command(flow: Flow, call: str) -> None:
    assert command(flow, call) == {"type": "transaction.set_result_url",
                                   "url": "https://app.example.com/done", "query": {"lang": "en"}}


# -- api.redirect -------------------------------------------------------------------------------


@pytest.mark.parametrize("call", [
    'api.redirect.send_user_to("https://risk.example.com/c", {"k": "v"})',
    'api.redirect.sendUserTo("https://risk.example.com/c", {"query": {"k": "v"}})',
])
def test_send_user_to_and_its_alias_redirect_with_the_flows_state(flow: Flow, call: str) -> None:
    assert command(flow, call) == {"type": "redirect.send_user_to",
                                   "url": "https://risk.example.com/c",
                                   "query": {"k": "v", "state": "state-1"}}


@pytest.mark.parametrize("call, lifetime", [
    ('api.redirect.encode_token(SECRET, {"color": "blue"}, 60)', 60),
    ('api.redirect.encode_token(SECRET, {"color": "blue"})', 900),
    ('api.redirect.encodeToken({"secret": SECRET, "payload": {"color": "blue"}, '
     '"expiresInSeconds": 60})', 60),
])
def test_encode_token_signs_the_documented_claims_and_issues_nothing(
    flow: Flow, call: str, lifetime: int,
) -> None:
    result = flow.run(flow.actions(handler(f"print({call})")))
    assert result.status == "completed" and result.commands == []
    claims = jwt.decode(printed(result).strip(), SECRET, algorithms=["HS256"],
                        options={"verify_exp": False, "verify_iat": False})
    assert claims == {"iss": "login.example.com", "sub": "auth0|u1", "ip": "203.0.113.9",
                      "iat": NOW_S, "exp": NOW_S + lifetime, "color": "blue"}


VALIDATE = {
    "validate_token": 'print(api.redirect.validate_token(SECRET, "risk_token")["verdict"])',
    "validateToken": 'print(api.redirect.validateToken({"secret": SECRET, '
                     '"tokenParameterName": "risk_token"})["verdict"])',
}


def resume_with(flow: Flow, on_continue: str, token: str | None, **kw: Any) -> Result:
    actions = flow.actions(handler('api.redirect.send_user_to("https://risk.example.com/")',
                                   on_continue))
    suspended = flow.run(actions)
    query = {} if token is None else {"risk_token": token}
    return flow.resume(actions, suspended, query=query, **kw)


def risk_token(secret: str = SECRET, **changes: Any) -> str:
    claims = {"sub": "auth0|u1", "state": "state-1", "verdict": "allow", "exp": NOW_S + 60}
    claims.update(changes)
    return encode_token(secret, claims)


@pytest.mark.parametrize("call", sorted(VALIDATE))
def test_validate_token_and_its_alias_return_the_payload_on_resume(flow: Flow, call: str) -> None:
    result = resume_with(flow, VALIDATE[call], risk_token())
    assert result.status == "completed" and printed(result) == "allow\n"


def test_validate_token_reads_the_token_from_the_body_too(flow: Flow) -> None:
    actions = flow.actions(handler('api.redirect.send_user_to("https://risk.example.com/")',
                                   VALIDATE["validate_token"]))
    resumed = flow.resume(actions, flow.run(actions), body={"risk_token": risk_token()})
    assert printed(resumed) == "allow\n"


@pytest.mark.parametrize("token, check", [
    (None, "missing"),
    (risk_token(secret="other"), "signature"),
    (risk_token(exp=NOW_S - 1), "expired"),
    (risk_token(state="state-2"), "state"),
    (risk_token(sub="auth0|mallory"), "subject"),
    ("not.a.jwt", "malformed"),
])
def test_each_failed_token_check_fails_with_the_documented_message(
    flow: Flow, token: str | None, check: str,
) -> None:
    result = resume_with(flow, VALIDATE["validate_token"], token)
    assert result.status == "failed" and result.error is not None
    assert result.error.message.startswith("The session token is invalid:")
    assert check in result.error.message


def test_validate_token_outside_a_resume_is_an_error(flow: Flow) -> None:
    kind, message = failure(flow, 'api.redirect.validate_token(SECRET)')
    assert kind == "ApiError" and "resum" in message


# -- api.cache ----------------------------------------------------------------------------------


def test_cache_set_get_delete_round_trip_within_one_action(flow: Flow) -> None:
    body = """
r = api.cache.set("k", "v")
print(r.type, r.record.value, r.record.expires_at - %d)
print(api.cache.get("k").value)
print(api.cache.delete("k").type, api.cache.get("k"))
""" % NOW_MS
    result = flow.run(flow.actions(handler(body)))
    assert printed(result) == "success v 900000\nv\nsuccess None\n"  # default lifetime: 15 min
    assert types(result) == ["cache.set", "cache.delete"]


def test_with_ttl_and_expires_at_the_earlier_expiry_wins(flow: Flow) -> None:
    body = (f'print(api.cache.set("a", "1", ttl=1000, expires_at={NOW_MS + 5000}).record.expires_at)\n'
            f'print(api.cache.set("b", "1", ttl=9000, expires_at={NOW_MS + 5000}).record.expires_at)')
    assert printed(flow.run(flow.actions(handler(body)))) == f"{NOW_MS + 1000}\n{NOW_MS + 5000}\n"


def test_an_expired_record_reads_as_none(flow: Flow) -> None:
    cache = {"old": {"value": "v", "expires_at": NOW_MS}}
    result = flow.run(flow.actions(handler('print(api.cache.get("old"))')), cache=cache)
    assert printed(result) == "None\n"


FULL_CACHE = {f"k{i}": {"value": "v", "expires_at": NOW_MS + 60_000} for i in range(20)}


@pytest.mark.parametrize("body, cache, code", [
    ('r = api.cache.set("k" * 65, "v")', {}, "CacheKeySizeExceeded"),
    ('r = api.cache.set("k", "v" * 4097)', {}, "CacheValueSizeExceeded"),
    ('r = api.cache.set("one-more", "v")', FULL_CACHE, "CacheSizeExceeded"),
    ('r = api.cache.set("big", "v" * 4090)\nr = api.cache.set("big2", "v" * 4090)\n'
     'r = api.cache.set("big3", "v" * 100)', {}, "CacheSizeExceeded"),
    ('r = api.cache.set("k", "v", ttl=0)', {}, "InvalidExpiry"),
    ('r = api.cache.set("k", "v", ttl=24 * 3600 * 1000 + 1)', {}, "InvalidExpiry"),
    (f'r = api.cache.set("k", "v", expires_at={NOW_MS - 1})', {}, "ItemAlreadyExpired"),
    ('for i in range(101):\n    r = api.cache.set("k", str(i))', {}, "MaxSideEffectsExceeded"),
    ('r = api.cache.delete("absent")', {}, "CacheKeyDoesNotExist"),
], ids=["key-size", "value-size", "records", "bytes", "ttl-zero", "ttl-over-24h", "past-expiry",
        "side-effects", "delete-absent"])
def test_each_cache_limit_answers_its_error_code(
    flow: Flow, body: str, cache: dict[str, Any], code: str,
) -> None:
    result = flow.run(flow.actions(handler(body + "\nprint(r.type, r.code)")), cache=cache)
    assert result.status == "completed"
    assert printed(result) == f"error {code}\n"


# -- event -----------------------------------------------------------------------------------------


def test_event_reads_by_attribute_and_by_key_with_absent_fields_as_none(flow: Flow) -> None:
    body = """
print(event.user.email, event["user"]["email"], event.user.get("email"))
print(event.user.nickname, event["user"]["nickname"], event.organization)
print(event.user.enrolled_factors[0].type, event.request.geoip.city_name)
print(event.custom_part.flag)
"""
    event = an_event(user={"enrolledFactors": [{"type": "otp"}]},
                     request={"geoip": {"cityName": "Porto"}}, custom_part={"flag": True})
    result = flow.run(flow.actions(handler(body)), event)
    assert printed(result) == ("ana@example.com ana@example.com ana@example.com\n"
                               "None None None\notp Porto\nTrue\n")


def test_writing_to_the_event_fails_the_action(flow: Flow) -> None:
    kind, message = failure(flow, 'event.user.email = "mallory@example.com"')
    assert kind == "violation" and "EventView" in message
