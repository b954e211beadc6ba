"""The `action_runner` fixture the escape corpus runs through.

`sandbox.jail.Jail` when it can be imported (the runner tenant code really meets), else the
in-process runner, which applies the same language policy without process isolation. The lead
removes that fallback once the jail is in place. `ACTIONRUNNER_ESCAPES_RUNNER=inprocess` forces the
in-process runner (the language policy alone, without the jail's other layers).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from sandbox.runner import ActionRunner


@pytest.fixture(scope="session")
def action_runner() -> Iterator[ActionRunner]:
    """One runner for the whole session, closed at the end."""
    try:
        if os.environ.get("ACTIONRUNNER_ESCAPES_RUNNER") == "inprocess":
            raise ImportError("in-process runner forced")
        from sandbox.jail import Jail
    except ImportError:
        from sandbox.execute import InProcessRunner

        runner: ActionRunner = InProcessRunner()
    else:
        runner = Jail()
    try:
        yield runner
    finally:
        runner.close()
