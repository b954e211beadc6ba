"""The operator's strictness switch: strict by default, off only when said plainly."""

from __future__ import annotations

import pytest

from sandbox.errors import InvalidInput
from sandbox.jail import Jail


def test_the_jail_is_strict_unless_the_operator_says_otherwise() -> None:
    assert Jail.from_env(environ={}).strict is True
    assert Jail.from_env(environ={"ACTIONRUNNER_JAIL_STRICT": "true"}).strict is True


@pytest.mark.parametrize("value", ["0", "false", "No"])
def test_an_operator_can_run_without_strict_mode(value: str) -> None:
    assert Jail.from_env(environ={"ACTIONRUNNER_JAIL_STRICT": value}).strict is False


def test_an_unclear_value_is_refused_naming_the_variable() -> None:
    with pytest.raises(InvalidInput, match="ACTIONRUNNER_JAIL_STRICT"):
        Jail.from_env(environ={"ACTIONRUNNER_JAIL_STRICT": "maybe"})
