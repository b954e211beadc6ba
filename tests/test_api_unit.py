"""`api` as tenant code uses it: every call and camelCase alias, the commands it issues, and a clear
ApiError for each misuse. Pure logic: the full conformance through the flow is tested elsewhere."""

from __future__ import annotations

import warnings
from typing import Any

import jwt
import pytest

from sandbox.api import Api, ApiError
from sandbox.event import EventView
from sandbox.factors import validate_factor, validate_factors
from sandbox.limits import Limits
from sandbox.runner import ActionRequest
from sandbox.tokens import encode_token
from sandbox.visible import TenantObject

NOW_MS = 1_767_225_600_000
NOW_S = NOW_MS // 1000
USER = "auth0|42"
EVENT = {
    "user": {
        "user_id": USER, "enrolled_factors": [{"type": "otp", "options": None}, {"type": "email"}],
    },
    "request": {"ip": "203.0.113.9", "hostname": "login.example.com"},
    "transaction": {"state": "st-1"},
    "secrets": {"KEY": "s3cret"},
}


def make_api(
    *, cache: dict | None = None, continue_request: dict | None = None, **limits: Any
) -> Api:
    request = ActionRequest(
        action="a", source="", handler="on_execute_post_challenge", event=EVENT, now_ms=NOW_MS,
        cache=cache or {}, continue_request=continue_request, limits=Limits(**limits),
    )
    return Api(request)


def decoded(token: str, secret: str) -> dict:
    """The claims of `token`, checked by PyJWT itself (not by the code under test)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jwt.InsecureKeyLengthWarning)  # short test secret
        options = {"verify_exp": False, "verify_iat": False}
        return jwt.decode(token, secret, algorithms=["HS256"], options=options)


def dumped(api: Api) -> list[dict]:
    return [command.model_dump(mode="json") for command in api.commands]


# -- access, authentication, factors ---------------------------------------------------------------


def test_deny_issues_an_access_deny_command_tagged_with_the_action() -> None:
    api = make_api()
    api.access.deny("too risky")
    assert dumped(api) == [{"type": "access.deny", "action": "a", "reason": "too risky"}]


def test_commands_come_back_in_issue_order() -> None:
    api = make_api()
    api.cache.set("k", "v")
    api.access.deny("no")
    api.transaction.set_result_url("https://example.com/done")
    assert [c["type"] for c in dumped(api)] == [
        "cache.set", "access.deny", "transaction.set_result_url",
    ]


def test_challenge_with_and_its_alias_issue_the_same_command() -> None:
    snake, camel = make_api(), make_api()
    snake.authentication.challenge_with({"type": "otp"}, additional_factors=[{"type": "push"}])
    camel.authentication.challengeWith({"type": "otp"}, {"additionalFactors": [{"type": "push"}]})
    assert dumped(snake) == dumped(camel) == [{
        "type": "authentication.challenge_with", "action": "a",
        "factor": {"type": "otp", "options": None},
        "additional_factors": [{"type": "push-notification", "options": None}],
    }]


def test_challenge_with_any_accepts_the_users_enrolled_factors_from_the_event() -> None:
    api = make_api()
    api.authentication.challengeWithAny(EventView(EVENT).user.enrolled_factors)
    assert dumped(api)[0]["factors"] == [
        {"type": "otp", "options": None}, {"type": "email", "options": None},
    ]


def test_challenge_with_any_needs_at_least_one_factor() -> None:
    with pytest.raises(ApiError, match="at least one factor"):
        make_api().authentication.challenge_with_any([])


@pytest.mark.parametrize(("factor", "message"), [
    ({"type": "sms"}, r"'sms', not a known factor; accepted: otp, email, push-notification"),
    ({"type": "phone", "options": {"preferred_method": "fax"}},
     r"preferred_method'\] is 'fax'; accepted: sms, voice, both"),
    ({"type": "otp", "extra": 1}, "unknown key"),
    ({"type": "otp", "options": "x"}, r"\['options'\] must be a dict"),
    ("otp", "must be a dict like"),
])
def test_invalid_factor_names_the_bad_value_and_the_accepted_ones(factor, message) -> None:
    with pytest.raises(ApiError, match=message):
        make_api().authentication.challenge_with(factor)


def test_factor_errors_name_the_index_in_a_list() -> None:
    with pytest.raises(ApiError, match=r"factors\[1\]\['type'\]"):
        validate_factors([{"type": "otp"}, {"type": "nope"}])


def test_push_alias_and_phone_method_are_normalised() -> None:
    assert validate_factor({"type": "push"}).type == "push-notification"
    phone = validate_factor({"type": "phone", "options": {"preferred_method": "voice"}})
    assert phone.options == {"preferred_method": "voice"}


# -- redirect -------------------------------------------------------------------------------------


def test_encode_token_signs_the_event_claims_and_payload_without_a_command() -> None:
    api = make_api()
    token = api.redirect.encode_token("s3cret", {"email": "a@example.com"}, expires_in_seconds=60)
    claims = decoded(token, "s3cret")
    assert claims == {
        "iss": "login.example.com", "sub": USER, "iat": NOW_S, "exp": NOW_S + 60,
        "ip": "203.0.113.9", "email": "a@example.com",
    }
    assert api.commands == []


def test_encode_token_alias_takes_one_options_dict_and_defaults_to_900_seconds() -> None:
    token = make_api().redirect.encodeToken({"secret": "s3cret", "payload": {"x": 1}})
    claims = decoded(token, "s3cret")
    assert claims["exp"] - claims["iat"] == 900 and claims["x"] == 1


@pytest.mark.parametrize(("args", "message"), [
    (("", {}), "secret must be a non-empty string"),
    (("s", {"sub": "other"}), "payload may not set sub"),
    (("s", {"x": object()}), r"payload\['x'\] must be JSON data"),
    (("s", {}, 0), "expires_in_seconds must be a positive int"),
    (("s", "text"), "payload must be a dict"),
])
def test_encode_token_misuse(args, message) -> None:
    with pytest.raises(ApiError, match=message):
        make_api().redirect.encode_token(*args)


def test_send_user_to_and_its_alias_issue_the_same_command() -> None:
    snake, camel = make_api(), make_api()
    snake.redirect.send_user_to("https://verify.example.com/", query={"a": "1"})
    camel.redirect.sendUserTo("https://verify.example.com/", {"query": {"a": "1"}})
    assert dumped(snake) == dumped(camel) == [{
        "type": "redirect.send_user_to", "action": "a", "url": "https://verify.example.com/",
        "query": {"a": "1"},
    }]


@pytest.mark.parametrize(("url", "query", "message"), [
    ("javascript:alert(1)", None, "absolute http:// or https:// URL"),
    ("/relative", None, "absolute http:// or https:// URL"),
    ("https://example.com", {"n": 1}, r"query\['n'\] must be a string"),
    ("https://example.com", ["a"], "query must be a dict"),
])
def test_send_user_to_misuse(url, query, message) -> None:
    with pytest.raises(ApiError, match=message):
        make_api().redirect.send_user_to(url, query)


def test_alias_options_with_unknown_keys_are_refused() -> None:
    with pytest.raises(ApiError, match="unknown option.*querry.*accepted: query"):
        make_api().redirect.sendUserTo("https://example.com", {"querry": {}})


def resumed_api(token: Any, *, where: str = "query", state: str = "st-1") -> Api:
    request_part = {"session_token": token} if token is not None else {}
    other = "body" if where == "query" else "query"
    return make_api(continue_request={"state": state, where: request_part, other: {}})


def test_validate_token_returns_the_payload_of_a_good_token_from_query_or_body() -> None:
    token = encode_token("s3cret", {"sub": USER, "state": "st-1", "exp": NOW_S + 60, "ok": True})
    assert resumed_api(token).redirect.validate_token("s3cret")["ok"] is True
    from_body = resumed_api(token, where="body")
    assert from_body.redirect.validateToken({"secret": "s3cret"})["ok"] is True


def test_validate_token_alias_reads_another_parameter_name() -> None:
    token = encode_token("s3cret", {"sub": USER, "state": "st-1", "exp": NOW_S + 60})
    api = make_api(continue_request={"state": "st-1", "query": {"t": token}, "body": {}})
    claims = api.redirect.validateToken({"secret": "s3cret", "tokenParameterName": "t"})
    assert claims["sub"] == USER


@pytest.mark.parametrize(("claims", "secret", "check"), [
    ({"sub": USER, "state": "st-1", "exp": NOW_S + 60}, "wrong", "bad signature"),
    ({"sub": USER, "state": "st-1", "exp": NOW_S}, "s3cret", "expired"),
    ({"sub": USER, "state": "st-2", "exp": NOW_S + 60}, "s3cret", "state mismatch"),
    ({"sub": "auth0|other", "state": "st-1", "exp": NOW_S + 60}, "s3cret", "subject mismatch"),
])
def test_validate_token_says_which_check_failed(claims, secret, check) -> None:
    api = resumed_api(encode_token("s3cret", claims))
    with pytest.raises(ApiError, match=f"^The session token is invalid: {check}"):
        api.redirect.validate_token(secret)


@pytest.mark.parametrize(("token", "check"), [(None, "missing token"), ("garbage", "malformed")])
def test_validate_token_missing_or_malformed(token, check) -> None:
    with pytest.raises(ApiError, match=f"^The session token is invalid: {check}"):
        resumed_api(token).redirect.validate_token("s3cret")


def test_validate_token_outside_a_resume_is_misuse() -> None:
    with pytest.raises(ApiError, match="only be called while resuming"):
        make_api().redirect.validate_token("s3cret")


# -- prompt and transaction ------------------------------------------------------------------------


def test_prompt_render_issues_a_command_with_fields_and_vars() -> None:
    api = make_api()
    api.prompt.render("ap_123", fields={"code": ""}, vars={"name": EventView(EVENT).user.user_id})
    assert dumped(api) == [{
        "type": "prompt.render", "action": "a", "prompt_id": "ap_123", "fields": {"code": ""},
        "vars": {"name": USER},
    }]


def test_a_second_prompt_in_one_action_is_misuse() -> None:
    api = make_api()
    api.prompt.render("ap_1")
    with pytest.raises(ApiError, match="at most one per action"):
        api.prompt.render("ap_2")
    assert len(api.commands) == 1


@pytest.mark.parametrize("prompt_first", [True, False])
def test_prompt_and_redirect_in_one_action_is_misuse_in_either_order(prompt_first: bool) -> None:
    api = make_api()
    calls = [
        lambda: api.prompt.render("ap_1"), lambda: api.redirect.send_user_to("https://example.com"),
    ]
    first, second = calls if prompt_first else calls[::-1]
    first()
    with pytest.raises(ApiError, match="either redirect or render a prompt, not both"):
        second()
    assert len(api.commands) == 1


def test_prompt_vars_must_be_json_data() -> None:
    looped: list = []
    looped.append(looped)
    with pytest.raises(ApiError, match="nested more than"):
        make_api().prompt.render("ap_1", vars={"loop": looped})


def test_set_result_url_and_its_alias_issue_the_same_command() -> None:
    snake, camel = make_api(), make_api()
    snake.transaction.set_result_url("https://example.com/done", {"r": "1"})
    camel.transaction.setResultUrl("https://example.com/done", {"query": {"r": "1"}})
    assert dumped(snake) == dumped(camel) == [{
        "type": "transaction.set_result_url", "action": "a", "url": "https://example.com/done",
        "query": {"r": "1"},
    }]


# -- cache ----------------------------------------------------------------------------------------


def test_cache_get_sees_the_given_cache_and_own_writes() -> None:
    api = make_api(cache={"seen": {"value": "1", "expires_at": NOW_MS + 5}})
    assert api.cache.get("seen").value == "1"
    assert api.cache.get("missing") is None
    result = api.cache.set("mine", "2", ttl=1000)
    record = result.record
    assert (result.type, record.value, record.expires_at) == ("success", "2", NOW_MS + 1000)
    assert api.cache.get("mine").expires_at == NOW_MS + 1000
    assert dumped(api) == [
        {"type": "cache.set", "action": "a", "key": "mine", "value": "2", "expires_at": NOW_MS + 1000},
    ]


def test_cache_records_already_expired_read_as_none() -> None:
    assert make_api(cache={"old": {"value": "1", "expires_at": NOW_MS}}).cache.get("old") is None


def test_cache_delete_removes_the_record_and_reports_a_missing_key() -> None:
    api = make_api(cache={"k": {"value": "1", "expires_at": NOW_MS + 5}})
    assert api.cache.delete("k").type == "success"
    assert api.cache.get("k") is None
    missing = api.cache.delete("k")
    assert (missing.type, missing.code) == ("error", "CacheKeyDoesNotExist")
    assert dumped(api) == [{"type": "cache.delete", "action": "a", "key": "k"}]


@pytest.mark.parametrize(("args", "code"), [
    (("k" * 65, "v"), "CacheKeySizeExceeded"),
    (("k", "v" * 4097), "CacheValueSizeExceeded"),
    (("k", "v", -5), "InvalidExpiry"),
    (("k", "v", None, NOW_MS - 1), "ItemAlreadyExpired"),
])
def test_cache_set_errors_are_results_not_exceptions_and_issue_nothing(args, code) -> None:
    api = make_api()
    result = api.cache.set(*args)
    assert (result.type, result.code) == ("error", code)
    assert api.commands == []


def test_cache_full_is_cache_size_exceeded() -> None:
    api = make_api(cache={f"k{i}": {"value": "v", "expires_at": NOW_MS + 5} for i in range(20)})
    assert api.cache.set("one-more", "v").code == "CacheSizeExceeded"


def test_side_effects_past_the_limit_are_refused() -> None:
    api = make_api(side_effects_max_count=2)
    assert [api.cache.set("k", str(i)).type for i in range(2)] == ["success", "success"]
    assert api.cache.set("k", "x").code == "MaxSideEffectsExceeded"
    assert api.cache.delete("k").code == "MaxSideEffectsExceeded"
    assert len(api.commands) == 2


@pytest.mark.parametrize(("call", "message"), [
    (lambda api: api.cache.set("k", 5), "value must be a string, got int"),
    (lambda api: api.cache.set(5, "v"), "key must be a string"),
    (lambda api: api.cache.get(None), "key must be a string"),
    (lambda api: api.cache.set("k", "\ud800"), "lone surrogate"),
])
def test_cache_misuse_is_an_api_error(call, message) -> None:
    with pytest.raises(ApiError, match=message):
        call(make_api())


# -- what tenant code can hold ------------------------------------------------------------------


def test_everything_api_hands_out_is_a_tenant_object_or_plain_data() -> None:
    api = make_api()
    result = api.cache.set("k", "v")
    namespaces = (api.access, api.authentication, api.redirect, api.prompt, api.transaction, api.cache)
    for obj in (api, *namespaces, result, result.record, api.cache.get("k")):
        assert isinstance(obj, TenantObject)
        assert not hasattr(obj, "__dict__")  # __slots__ only: no place to smuggle state


def test_reading_commands_cannot_change_what_was_issued() -> None:
    api = make_api()
    api.access.deny("no")
    api.commands.clear()
    api.commands[0].reason = "changed"
    assert dumped(api) == [{"type": "access.deny", "action": "a", "reason": "no"}]


def test_tenant_subclasses_of_str_are_refused() -> None:
    class Lying(str):
        def encode(self, *args: Any, **kwargs: Any) -> bytes:  # type: ignore[override]
            return b""

    with pytest.raises(ApiError, match="must be a string, got Lying"):
        make_api().cache.set(Lying("k" * 100), "v")


# -- under the real policy: tenant code compiled by sandbox.policy, guarded by sandbox.guards ------

TENANT_SOURCE = '''
def on_execute_post_challenge(event, api):
    mine = event.user.copy()
    mine["email"] = "edited@example.com"
    if api.cache.get("seen") is None:
        result = api.cache.set("seen", event.user.user_id, ttl=60000)
        print(result.type, result.record.value)
    api.authentication.challengeWithAny(event.user.enrolled_factors)
'''


def run_tenant(source: str, api: Api) -> tuple[dict, Any]:
    """Run `source`'s on_execute_post_challenge(event, api) as the executor does."""
    from sandbox.console import Console
    from sandbox.policy import Violation, compile_action, new_globals

    console = Console()
    scope = new_globals(console)
    exec(compile_action(source, name="t"), scope)
    event = EventView(EVENT)
    try:
        scope["on_execute_post_challenge"](event, api)
    except (Exception, Violation) as exc:  # noqa: BLE001 - the test inspects what tenant code raises
        return {"console": console.text}, exc
    return {"console": console.text}, None


def test_tenant_code_under_the_policy_uses_event_and_api() -> None:
    api = make_api()
    out, error = run_tenant(TENANT_SOURCE, api)
    assert error is None
    assert out["console"] == f"success {USER}\n"
    assert [c["type"] for c in dumped(api)] == ["cache.set", "authentication.challenge_with_any"]
    assert EVENT["user"].get("email") is None  # the tenant's edit of its copy stayed in the copy


@pytest.mark.parametrize(("body", "refused_by"), [
    ("api.commands", "Violation"),                  # executor-only: not in Api's exports
    ('event.user.email = "x"', "Violation"),        # event is read-only
    ('event.user["email"] = "x"', "Violation"),
    ("api.cache._state", "CompileFailed"),          # private state: refused before it runs
])
def test_tenant_code_cannot_reach_internals_or_write_the_event(body: str, refused_by: str) -> None:
    from sandbox.errors import CompileFailed

    source = f"def on_execute_post_challenge(event, api):\n    {body}\n"
    try:
        _, error = run_tenant(source, make_api())
    except CompileFailed as exc:
        error = exc
    assert type(error).__name__ == refused_by
