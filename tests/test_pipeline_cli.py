"""The pipeline commands as a user types them: `demo`, `actions`, `submit`; exit codes and one-line
errors (0 ok, 1 compile problems, 2 unusable input, 3 timeout or worker error)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.client import ActionRunnerClient
from tests.support.workers import TEST_SECRET_KEY, WorkerProcess, deployment
from worker.cli import main

REPO = Path(__file__).resolve().parents[1]
EVENT = {"user": {"user_id": "auth0|u1", "email": "someone@mailinator.com"}}


@pytest.fixture(autouse=True)
def isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ACTIONRUNNER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("ACTIONRUNNER_SECRET_KEY", TEST_SECRET_KEY)
    monkeypatch.delenv("ACTIONRUNNER_PREFIX", raising=False)


def test_demo_runs_the_whole_pipeline_in_one_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--examples", str(REPO / "examples")]) == 0
    out = capsys.readouterr().out
    assert "status: denied" in out and "status: suspended" in out
    assert "risk check verdict: allow" in out  # the redirect was resumed
    assert "refused: " in out  # the same resume token a second time
    assert "ran deny_by_email_domain v2" in out and "ran deny_by_email_domain v1" in out


def test_pipeline_commands_without_a_broker_exit_2(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("ACTIONRUNNER_BROKER_URL", raising=False)
    event = tmp_path / "e.json"
    event.write_text(json.dumps(EVENT))
    assert main(["submit", "--tenant", "t", "--event", str(event)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "REDIS_URL" in err


@pytest.fixture(scope="module")
def served(redis_url: str) -> Iterator[tuple[ActionRunnerClient, WorkerProcess]]:
    with deployment(redis_url, workers=1, concurrency=1) as (client, workers):
        yield client, workers[0]


@pytest.mark.redis
def test_upload_bind_submit_through_the_command_line(
    served: tuple[ActionRunnerClient, WorkerProcess], redis_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, _ = served
    remote = ["--broker-url", redis_url, "--prefix", client.settings.prefix]
    action = REPO / "examples" / "deny_by_email_domain.py"
    event = tmp_path / "e.json"
    event.write_text(json.dumps(EVENT))

    assert main(["actions", "upload", *remote, "--tenant", "cli", str(action)]) == 0
    assert json.loads(capsys.readouterr().out)["version"] == 1
    assert main(["actions", "bind", *remote, "--tenant", "cli", "deny_by_email_domain:1"]) == 0
    capsys.readouterr()
    assert main(["submit", *remote, "--tenant", "cli", "--event", str(event)]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "denied"
    assert main(["actions", "list", *remote, "--tenant", "cli"]) == 0
    assert [a["name"] for a in json.loads(capsys.readouterr().out)] == ["deny_by_email_domain"]


@pytest.mark.redis
def test_command_line_exit_codes_name_the_problem(
    served: tuple[ActionRunnerClient, WorkerProcess], redis_url: str, tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    client, _ = served
    remote = ["--broker-url", redis_url, "--prefix", client.settings.prefix]
    broken = tmp_path / "broken.py"
    broken.write_text("def on_execute_post_challenge(event, api):\n    return (\n")
    bad_event = tmp_path / "bad.json"
    bad_event.write_text(json.dumps({"user": {}}))
    good_event = tmp_path / "good.json"
    good_event.write_text(json.dumps(EVENT))

    assert main(["actions", "upload", *remote, "--tenant", "cli2", str(broken)]) == 1
    assert capsys.readouterr().err.startswith(f"{broken}:")
    assert main(["submit", *remote, "--tenant", "cli2", "--event", str(bad_event)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "user.user_id" in err
    nobody = ["--broker-url", redis_url, "--prefix", f"{client.settings.prefix}:nobody"]
    assert main(["submit", *nobody, "--tenant", "cli2", "--event", str(good_event),
                 "--timeout", "1"]) == 3
    assert "ExecutionTimeout" in capsys.readouterr().err
