"""Resource attacks through the real jail: each fails its own run with the outcome a tenant would be
told about, and the next run on the same Jail succeeds. Small limits keep the suite fast."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest

from sandbox.jail import Jail
from sandbox.limits import MIB, Limits
from sandbox.runner import ActionRequest

LIMITS = Limits(action_cpu_seconds=1, action_memory_bytes=64 * MIB)
TIMEOUT_SECONDS = 5.0


def action(body: str) -> str:
    """An action whose on_execute_post_challenge runs `body` (one statement per line)."""
    lines = "\n".join(f"    {line}" for line in body.splitlines())
    return f"def on_execute_post_challenge(event, api):\n{lines}\n"


def request(source: str) -> ActionRequest:
    return ActionRequest(
        action="attack", source=source, handler="on_execute_post_challenge",
        event={"user": {"user_id": "auth0|1", "email": "a@example.com"}}, now_ms=1_767_225_600_000,
        limits=LIMITS,
    )


FINE = action("print('still here')\napi.access.deny('checked')")


@pytest.fixture(scope="module")
def jail() -> Iterator[Jail]:
    with Jail(LIMITS) as jail:
        yield jail


def assert_next_run_succeeds(jail: Jail) -> None:
    run = jail.run(request(FINE), timeout_seconds=TIMEOUT_SECONDS)
    assert run.outcome == "ok", run.detail
    assert run.output is not None and run.output.console == "still here\n"
    assert [command.type for command in run.output.commands] == ["access.deny"]


ATTACKS = {
    "busy_loop": ("while True:\n    pass", {"cpu_limit"}),
    "huge_power": ("x = 10**10**10", {"cpu_limit", "memory_limit"}),
    "huge_string": ("x = 'a' * 10**10", {"memory_limit"}),
    "huge_list": ("x = [0] * 10**9", {"memory_limit"}),
    "catastrophic_regex": ("import re\nre.match('(a+)+$', 'a' * 40 + 'b')", {"cpu_limit", "timeout"}),
    "sort_ten_million": ("x = sorted(range(10**7, 0, -1))", {"cpu_limit", "memory_limit"}),
    "print_100_mb": ("line = 'x' * 1000000\nfor i in range(100):\n    print(line)",
                     {"output_too_large"}),
    "answer_10_mb": ("api.prompt.render('p', vars={'k': 'x' * 10000000})", {"output_too_large"}),
}


@pytest.mark.parametrize("name", list(ATTACKS))
def test_resource_attack_fails_alone(jail: Jail, name: str) -> None:
    body, expected = ATTACKS[name]
    run = jail.run(request(action(body)), timeout_seconds=TIMEOUT_SECONDS)
    assert run.outcome in expected, (run.outcome, run.detail)
    assert run.detail  # the tenant is told what happened
    assert run.output is None or run.output.commands == []
    assert_next_run_succeeds(jail)


def test_cpu_limit_is_reported_in_tenant_words(jail: Jail) -> None:
    run = jail.run(request(action("while True:\n    pass")), timeout_seconds=TIMEOUT_SECONDS)
    assert run.outcome == "cpu_limit"
    assert run.detail == "exceeded 1.0 s of CPU time"
    assert run.cpu_ms >= 900  # what the child used, from wait4's rusage


def test_deep_recursion_is_an_error_with_its_line(jail: Jail) -> None:
    run = jail.run(request(action("def down(n):\n    return down(n + 1)\ndown(0)")),
                   timeout_seconds=TIMEOUT_SECONDS)
    assert run.outcome == "error"
    assert run.output is not None and run.output.error is not None
    assert run.output.error.type == "RecursionError"
    assert_next_run_succeeds(jail)


def test_a_loop_swallowing_every_exception_is_stopped_by_the_deadline(jail: Jail) -> None:
    body = "while True:\n    try:\n        while True:\n            pass\n    except BaseException:\n        pass"
    run = jail.run(request(action(body)), timeout_seconds=0.5)
    assert run.outcome in {"timeout", "cpu_limit"}
    if run.outcome == "timeout":
        assert run.detail == "killed after 0.5 s wall clock"
    assert_next_run_succeeds(jail)


def test_memory_limit_says_so(jail: Jail) -> None:
    run = jail.run(request(action("x = 'a' * 10**10")), timeout_seconds=TIMEOUT_SECONDS)
    assert run.outcome == "memory_limit"
    assert run.detail == "ran out of memory (limit 64 MiB)"


def test_answer_over_the_cap_says_so(jail: Jail) -> None:
    run = jail.run(request(action(ATTACKS["answer_10_mb"][0])), timeout_seconds=TIMEOUT_SECONDS)
    assert run.outcome == "output_too_large"
    assert run.detail.startswith("answer over 256 KiB")


def test_deeply_nested_brackets_fail_the_check_not_the_fork_server(jail: Jail) -> None:
    jail.layers
    fork_server = jail.fork_server_pid
    source = "x = " + "(" * 100_000 + ")" * 100_000 + "\n" + action("pass")
    found = jail.check(source, name="nested")
    assert len(found) >= 1 and found[0].line == 1
    assert jail.fork_server_pid == fork_server
    assert jail.check(FINE, name="fine") == []
    assert_next_run_succeeds(jail)


def test_check_reports_a_child_that_blows_up_as_one_limit_diagnostic() -> None:
    tiny = Limits(action_cpu_seconds=1, action_memory_bytes=64 * MIB)
    with Jail(tiny) as jail:
        found = jail.check(action("pass"), name="slow", timeout_seconds=0.000_001)
    assert [(d.kind, d.line, d.column) for d in found] == [("limit", 1, 0)]
    assert "wall clock" in found[0].message


def test_a_request_is_held_to_its_own_limits_not_the_jails(jail: Jail) -> None:
    tighter = Limits(action_cpu_seconds=1, action_memory_bytes=16 * MIB, action_output_max_bytes=4096)
    def own(body: str) -> ActionRequest:
        return dataclasses.replace(request(action(body)), limits=tighter)

    run = jail.run(own("x = 'a' * (40 * 1024 * 1024)"), timeout_seconds=TIMEOUT_SECONDS)
    assert (run.outcome, run.detail) == ("memory_limit", "ran out of memory (limit 16 MiB)")
    run = jail.run(own("api.prompt.render('p', vars={'k': 'x' * 10000})"), timeout_seconds=TIMEOUT_SECONDS)
    assert run.outcome == "output_too_large" and run.detail.startswith("answer over 4 KiB")
    # The same requests within the Jail's own (larger) limits succeed.
    assert jail.run(request(action("x = 'a' * (40 * 1024 * 1024)")),
                    timeout_seconds=TIMEOUT_SECONDS).outcome == "ok"
    assert jail.run(request(action("api.prompt.render('p', vars={'k': 'x' * 10000})")),
                    timeout_seconds=TIMEOUT_SECONDS).outcome == "ok"
    assert_next_run_succeeds(jail)
