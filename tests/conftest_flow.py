"""The runner the flow and conformance tests use, chosen in ONE place.

`make_runner(limits)` returns the jail (`sandbox.jail.Jail`), the runner tenant code meets in
production, with small limits so hostile tests end fast.
Test modules import the fixtures: `from tests.conftest_flow import action_runner, flow  # noqa: F401`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.flow import BoundAction, resume_flow, run_flow
from sandbox.jail import Jail
from sandbox.limits import DEFAULT_LIMITS, Limits
from sandbox.models import ContinueRequest, Result, ResumeInfo, parse_event
from sandbox.resume import ResumeSigner
from sandbox.runner import ActionRunner

# Small limits keep the hostile tests fast; the jail enforces them.
TEST_LIMITS = dataclasses.replace(DEFAULT_LIMITS, action_cpu_seconds=1.0,
                                  action_memory_bytes=96 * 1024 * 1024)
KEY = b"test-key-" + b"0" * 32
NOW_MS = 1_800_000_000_000


def make_runner(limits: Limits = TEST_LIMITS) -> ActionRunner:
    """The runner every flow test uses: the jail, as in production."""
    return Jail(limits)


@pytest.fixture(scope="module")
def action_runner() -> Iterator[ActionRunner]:
    """One runner shared by a whole test module (forking a jail per test would be slow)."""
    runner = make_runner()
    yield runner
    runner.close()


def an_event(**parts: Any) -> Any:
    """A valid event; `parts` replace top-level parts (user fields merge into the default user)."""
    data: dict[str, Any] = {
        "user": {"user_id": "auth0|u1", "email": "ana@example.com"},
        "request": {"ip": "203.0.113.9", "hostname": "login.example.com"},
        "transaction": {"state": "state-1"},
    }
    user = parts.pop("user", {})
    data["user"].update(user)
    data.update(parts)
    return parse_event(data)


class Flow:
    """Runs flows of inline sources against one runner, with a fixed clock and key."""

    def __init__(self, runner: ActionRunner) -> None:
        self.runner = runner
        self.signer = ResumeSigner(KEY)
        self.now_ms = NOW_MS

    def actions(self, *sources: str, secrets: dict[str, str] | None = None) -> list[BoundAction]:
        return [BoundAction(name=f"a{i}", source=src, version=i, secrets=secrets or {})
                for i, src in enumerate(sources, start=1)]

    def run(self, actions: list[BoundAction], event: Any = None, *, cache: Any = None,
            limits: Limits = TEST_LIMITS, tenant: str = "acme") -> Result:
        return run_flow(actions, event or an_event(), runner=self.runner, cache=cache or {},
                        signer=self.signer, tenant=tenant, limits=limits,
                        now_ms=lambda: self.now_ms)

    def resume(self, actions: list[BoundAction], suspended: Result, *, event: Any = None,
               query: dict[str, Any] | None = None, body: dict[str, Any] | None = None,
               state: str | None = "state-1", tenant: str = "acme", cache: Any = None,
               resume: ResumeInfo | None = None, limits: Limits = TEST_LIMITS) -> Result:
        info = resume or suspended.resume
        assert info is not None, f"not suspended: {suspended.status} {suspended.error}"
        request = ContinueRequest(state=state, query=query or {}, body=body or {})
        return resume_flow(actions, event or an_event(), resume=info, continue_request=request,
                           runner=self.runner, cache=cache or {}, signer=self.signer,
                           tenant=tenant, limits=limits, now_ms=lambda: self.now_ms)


@pytest.fixture(scope="module")
def flow(action_runner: ActionRunner) -> Flow:
    """Run flows of inline action sources (names a1, a2, ... versions 1, 2, ...)."""
    return Flow(action_runner)


def types(result: Result) -> list[str]:
    """The command types of a result, in order."""
    return [command.type for command in result.commands]
