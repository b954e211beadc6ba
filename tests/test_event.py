"""`event` as tenant code sees it: both access styles, None for absent fields, and no way to change
what the request (and so the next action) sees."""

from __future__ import annotations

import copy

import pytest

from sandbox.event import EventView
from sandbox.models import event_to_dict, parse_event
from sandbox.visible import TenantObject


def event_data() -> dict:
    data = event_to_dict(parse_event({
        "user": {
            "userId": "auth0|1", "email": "ada@example.com",
            "appMetadata": {"plan": "pro", "tags": ["a"]},
            "enrolledFactors": [
                {"type": "otp"}, {"type": "phone", "options": {"preferred_method": "sms"}},
            ],
        },
        "request": {"ip": "203.0.113.9", "geoip": {"cityName": "Lyon"}},
        "custom_field": {"kept": True},
    }))
    data["secrets"] = {"API_KEY": "s3cret"}
    return data


def test_attribute_and_mapping_access_read_the_same_fields() -> None:
    event = EventView(event_data())
    assert event.user.email == event["user"]["email"] == "ada@example.com"
    assert event.request.geoip.city_name == event["request"]["geoip"]["city_name"] == "Lyon"
    assert event.user.app_metadata["plan"] == "pro"
    assert event.secrets.API_KEY == event["secrets"]["API_KEY"] == "s3cret"


def test_unknown_extra_fields_are_readable() -> None:
    assert EventView(event_data()).custom_field.kept is True


def test_absent_fields_read_as_none_both_ways() -> None:
    event = EventView(event_data())
    assert event.prompt is None and event["prompt"] is None
    assert event.user.no_such_field is None and event["user"]["no_such_field"] is None
    assert event.organization is None


def test_get_contains_keys_items_values_behave_like_a_dict() -> None:
    event = EventView(event_data())
    assert event.get("prompt", "default") == "default"
    assert event.user.get("email") == "ada@example.com"
    assert "user" in event and "prompt" not in event
    assert "email" in event.user.keys()
    assert dict(event.user.app_metadata.items())["plan"] == "pro"
    assert "pro" in event.user.app_metadata.values()
    assert sorted(event.secrets) == ["API_KEY"] and len(event.secrets) == 1


def test_nested_dicts_are_views_and_lists_are_tuples() -> None:
    event = EventView(event_data())
    factors = event.user.enrolled_factors
    assert isinstance(factors, tuple)
    assert all(isinstance(factor, EventView) for factor in factors)
    assert all(isinstance(factor, TenantObject) for factor in factors)
    assert factors[1].options.preferred_method == "sms"
    assert event.user.app_metadata == {"plan": "pro", "tags": ["a"]}


@pytest.mark.parametrize("write", [
    lambda e: setattr(e, "user", None),
    lambda e: setattr(e.user, "email", "evil@example.com"),
    lambda e: e.user.__setitem__("email", "evil@example.com"),
    lambda e: e.__delitem__("user"),
    lambda e: delattr(e.user, "email"),
])
def test_writes_raise_type_error_naming_the_field(write) -> None:
    event = EventView(event_data())
    with pytest.raises(TypeError, match="read-only"):
        write(event)


def test_write_error_names_the_path() -> None:
    with pytest.raises(TypeError, match=r"event\.user is read-only: cannot set 'email'"):
        EventView(event_data()).user.email = "x"


def test_nothing_reachable_can_change_the_request_event() -> None:
    data = event_data()
    before = copy.deepcopy(data)
    event = EventView(data)
    editable = event.user.copy()
    editable["email"] = "evil@example.com"
    editable["app_metadata"]["plan"] = "free"
    assert isinstance(event.user.app_metadata.values()[1], tuple)  # the list "tags", frozen
    with pytest.raises(AttributeError):
        event.user.enrolled_factors.append({"type": "email"})  # type: ignore[attr-defined]
    items = event.user.items()
    items.clear()
    assert data == before


def test_dunder_lookups_are_attribute_errors_not_none() -> None:
    event = EventView(event_data())
    with pytest.raises(AttributeError):
        event.__deepcopy__  # noqa: B018
    assert copy.deepcopy(event.user.copy())["email"] == "ada@example.com"


def test_prompt_answers_are_readable_on_resume() -> None:
    data = event_data()
    data["prompt"] = {"id": "ap_1", "fields": {"code": "1234"}, "vars": {}}
    assert EventView(data).prompt.fields.code == "1234"
