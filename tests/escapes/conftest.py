"""The `action_runner` fixture the escape corpus runs through, once per layer.

Every attack runs twice: through `sandbox.jail.Jail` (what tenant code really meets: the policy inside
a jailed child), and through the in-process runner, which applies the language policy alone. The
second run keeps the policy honest on its own: an attack the jail catches but the policy lets through
is a policy regression even though no tenant could exploit it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from sandbox.execute import InProcessRunner
from sandbox.jail import Jail
from sandbox.runner import ActionRunner


@pytest.fixture(scope="session", params=["jail", "policy-only"])
def action_runner(request: pytest.FixtureRequest) -> Iterator[ActionRunner]:
    """One runner per layer for the whole session, closed at the end."""
    runner: ActionRunner = Jail() if request.param == "jail" else InProcessRunner()
    try:
        yield runner
    finally:
        runner.close()
