"""Every attack of the escape corpus is stopped, and nothing it aimed at happened.

(a) The attack fails as a violation at the stage the corpus says: a "policy"/"import" diagnostic
from `check` (and a run of the same source ends with outcome `violation` too), or a clean compile
and a run that ends with outcome `violation`. (b) Its observable aim did not happen: no marker
file, no sentinel in the console, no command.
"""

from __future__ import annotations

import collections
from pathlib import Path

import pytest

from sandbox.runner import ActionRequest, ActionRunner
from tests.escapes.corpus import ATTACKS, SENTINEL, Attack

NOW_MS = 1_767_225_600_000


def test_corpus_is_large_and_covers_every_technique() -> None:
    ids = [attack.id for attack in ATTACKS]
    assert len(ids) == len(set(ids)), "attack ids must be unique"
    assert len(ATTACKS) >= 80
    groups = collections.Counter(attack.group for attack in ATTACKS)
    for group in ("dunder", "frames", "format", "shadowing", "metaclass", "introspection",
                  "facades", "exceptions", "unicode", "usual"):
        assert groups[group] >= 3, group


@pytest.mark.parametrize("attack", ATTACKS, ids=[attack.id for attack in ATTACKS])
def test_attack_is_stopped(attack: Attack, action_runner: ActionRunner, tmp_path: Path) -> None:
    # Given an attack whose success would leave a marker file, a sentinel or a command
    marker = tmp_path / "escaped-marker"
    source = attack.source

    # When it is checked, then run
    diagnostics = action_runner.check(source, name=attack.id)
    request = ActionRequest(
        action=attack.id, source=source, handler="on_execute_post_challenge",
        event={"user": {"user_id": "auth0|attacker"},
               "request": {"hostname": "example.com", "query": {"marker": str(marker)}}},
        now_ms=NOW_MS,
    )
    run = action_runner.run(request, timeout_seconds=5)

    # Then it is refused at the expected stage ...
    kinds = {diagnostic.kind for diagnostic in diagnostics}
    if attack.stage == "compile":
        assert "syntax" not in kinds, f"the attack is not valid Python: {diagnostics}"
        assert kinds & {"policy", "import"}, f"not refused at compile time: {diagnostics}"
    else:
        assert diagnostics == [], f"expected to compile, refused with {diagnostics}"
    assert run.outcome == "violation", (run.outcome, run.output, run.detail)
    # ... and nothing it aimed at happened.
    assert not marker.exists()
    assert run.output is not None
    assert SENTINEL not in run.output.console
    assert run.output.commands == []


def test_the_observations_would_see_an_escape(action_runner: ActionRunner, tmp_path: Path) -> None:
    # Given a harmless action that does what every attack's success would do (print the sentinel
    # and issue a command), the checks above must see it: they are not vacuous.
    source = ("def on_execute_post_challenge(event, api):\n"
              f"    print({SENTINEL!r})\n    api.access.deny({SENTINEL!r})\n")
    request = ActionRequest(action="control", source=source, handler="on_execute_post_challenge",
                            event={"user": {"user_id": "auth0|control"}}, now_ms=NOW_MS)
    run = action_runner.run(request, timeout_seconds=5)
    assert run.outcome == "ok"
    assert run.output is not None
    assert SENTINEL in run.output.console
    assert run.output.commands != []
