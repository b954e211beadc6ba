"""The local command line (`actionrunner check | run | schema`) over the examples, as a user runs it.

Each test gets its own ACTIONRUNNER_HOME (cache files and the resume key live there).
"""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from worker.cli import main

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
Cli = Callable[..., tuple[int, str, str]]


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `actionrunner ARGS...` in this process; returns (exit status, stdout, stderr)."""
    monkeypatch.setenv("ACTIONRUNNER_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("ACTIONRUNNER_SECRET_KEY", raising=False)

    def run(*argv: str, stdin: bytes | None = None) -> tuple[int, str, str]:
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        status = main([str(arg) for arg in argv])
        out, err = capsys.readouterr()
        return status, out, err

    return run


def example(name: str) -> str:
    return str(EXAMPLES / name)


def run_example(cli: Cli, name: str, *extra: str) -> dict[str, Any]:
    status, out, err = cli("run", "--action", example(f"{name}.py"),
                           "--event", example(f"{name}.event.json"), *extra)
    assert status == 0, err
    result: dict[str, Any] = json.loads(out)  # stdout is the result document and nothing else
    return result


def write(tmp_path: Path, name: str, content: str | bytes) -> str:
    path = tmp_path / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    return str(path)


# -- check and schema -----------------------------------------------------------------------------


def test_check_passes_a_good_action_silently(cli: Cli) -> None:
    assert cli("check", example("deny_by_email_domain.py")) == (0, "", "")


def test_check_prints_each_problem_with_file_line_and_column(cli: Cli, tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.py", "def on_execute_post_challenge(event, api):\n    x = (\n")
    status, out, _ = cli("check", bad)
    assert status == 1
    assert out.startswith(f"{bad}:2:") and ": syntax: " in out


def test_schema_prints_the_job_and_result_schemas(cli: Cli) -> None:
    status, out, _ = cli("schema")
    schemas = json.loads(out)
    assert status == 0 and set(schemas) == {"job", "result"}
    assert "status" in schemas["result"]["properties"] and "event" in schemas["job"]["properties"]
    status, out, _ = cli("schema", "--which", "result")
    assert json.loads(out) == schemas["result"]


# -- run over the examples ------------------------------------------------------------------------


def test_deny_by_email_domain_denies_a_throwaway_address(cli: Cli) -> None:
    result = run_example(cli, "deny_by_email_domain")
    assert result["status"] == "denied"
    assert result["commands"][0]["type"] == "access.deny"
    assert "mailinator.com" in result["logs"][0]["message"]


def test_require_mfa_for_role_challenges_with_the_enrolled_factors(cli: Cli) -> None:
    result = run_example(cli, "require_mfa_for_role")
    assert result["status"] == "suspended" and result["resume"]["token"]
    (challenge,) = result["commands"]
    assert challenge["type"] == "authentication.challenge_with_any"
    assert [f["type"] for f in challenge["factors"]] == ["otp", "push-notification", "email"]


def test_count_attempts_denies_after_three_runs_and_counts_per_tenant(cli: Cli) -> None:
    statuses = [run_example(cli, "count_attempts")["status"] for _ in range(4)]
    assert statuses == ["completed", "completed", "completed", "denied"]
    assert run_example(cli, "count_attempts", "--tenant", "other")["status"] == "completed"


def load_risk_service() -> Any:
    spec = importlib.util.spec_from_file_location("risk_service", EXAMPLES / "risk_service.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("verdict, status", [("allow", "completed"), ("deny", "denied")])
def test_risk_check_redirect_round_trip(cli: Cli, tmp_path: Path, verdict: str, status: str) -> None:
    secrets = example("risk_check_redirect.secrets.json")
    suspended = run_example(cli, "risk_check_redirect", "--secrets", secrets)
    assert suspended["status"] == "suspended"
    assert suspended["commands"][0]["query"]["state"] == suspended["resume"]["state"]

    secret = json.loads(Path(secrets).read_text())["RISK_CHECK_SECRET"]
    request = load_risk_service().continue_request(suspended, secret, verdict)
    status_code, out, err = cli(
        "run", "--action", example("risk_check_redirect.py"),
        "--event", example("risk_check_redirect.continue-event.json"), "--secrets", secrets,
        "--resume", write(tmp_path, "suspended.json", json.dumps(suspended)),
        "--continue-request", write(tmp_path, "continue.json", json.dumps(request)),
    )
    assert status_code == 0, err
    resumed = json.loads(out)
    assert resumed["status"] == status
    assert resumed["logs"][0]["message"] == f"risk check verdict: {verdict}\n"


def test_a_tampered_resume_is_refused_with_exit_2(cli: Cli, tmp_path: Path) -> None:
    suspended = run_example(cli, "require_mfa_for_role")
    suspended["resume"]["token"] = suspended["resume"]["token"][:-4] + "AAAA"
    status, out, err = cli(
        "run", "--action", example("require_mfa_for_role.py"),
        "--event", example("require_mfa_for_role.event.json"),
        "--resume", write(tmp_path, "r.json", json.dumps(suspended)),
        "--continue-request", write(tmp_path, "c.json", json.dumps(
            {"state": suspended["resume"]["state"]})),
    )
    assert (status, out) == (2, "") and "forged" in err


def test_a_failed_flow_keeps_earlier_writes_and_drops_the_failing_actions(
    cli: Cli, tmp_path: Path
) -> None:
    boom = write(tmp_path, "boom.py", "def on_execute_post_challenge(event, api):\n"
                                      "    api.cache.set('boom', 'written')\n"
                                      "    raise RuntimeError('down')\n")
    peek = write(tmp_path, "peek.py", "def on_execute_post_challenge(event, api):\n"
                                      "    print('boom record:', api.cache.get('boom'))\n")
    args = ("run", "--action", example("count_attempts.py"), "--action", boom,
            "--event", example("count_attempts.event.json"))
    status, out, _ = cli(*args)
    assert status == 0 and json.loads(out)["status"] == "failed"
    # The attempt counted before the failure stands; the failing action's write does not.
    assert run_example(cli, "count_attempts")["logs"][-1]["message"].startswith(
        "password reset attempt 2 of 3")
    status, out, _ = cli("run", "--action", peek, "--event", example("count_attempts.event.json"))
    assert json.loads(out)["logs"][0]["message"] == "boom record: None\n"


# -- unusable input: exit 2 and one line on stderr naming the file and the field -----------------


def one_line_error(cli: Cli, *argv: str, stdin: bytes | None = None) -> str:
    status, out, err = cli(*argv, stdin=stdin)
    assert (status, out) == (2, ""), err
    assert err.count("\n") == 1, err
    return err


def test_an_event_without_user_id_names_the_field(cli: Cli, tmp_path: Path) -> None:
    event = write(tmp_path, "event.json", json.dumps({"user": {"email": "a@example.com"}}))
    err = one_line_error(cli, "run", "--action", example("count_attempts.py"), "--event", event)
    assert event in err and "user.user_id" in err


def test_secrets_that_are_not_strings_name_the_secret(cli: Cli, tmp_path: Path) -> None:
    secrets = write(tmp_path, "secrets.json", json.dumps({"API_KEY": 12345}))
    err = one_line_error(cli, "run", "--action", example("count_attempts.py"),
                         "--event", example("count_attempts.event.json"), "--secrets", secrets)
    assert secrets in err and "API_KEY" in err


@pytest.mark.parametrize("content", [b"{not json", b"\xff\xfe{}"], ids=["not-json", "not-utf8"])
def test_an_unreadable_event_file_is_named(cli: Cli, tmp_path: Path, content: bytes) -> None:
    event = write(tmp_path, "event.json", content)
    err = one_line_error(cli, "run", "--action", example("count_attempts.py"), "--event", event)
    assert event in err


def test_non_json_on_stdin_is_named_stdin(cli: Cli) -> None:
    err = one_line_error(cli, "run", "--action", example("count_attempts.py"), "--event", "-",
                         stdin=b"user: nope")
    assert "stdin" in err and "JSON" in err


def test_a_missing_file_is_named(cli: Cli, tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.py")
    err = one_line_error(cli, "run", "--action", missing,
                         "--event", example("count_attempts.event.json"))
    assert missing in err and "no such file" in err


def test_an_action_that_does_not_compile_names_file_line_and_column(
    cli: Cli, tmp_path: Path,
) -> None:
    bad = write(tmp_path, "bad.py", "def on_execute_post_challenge(event, api):\n    return )\n")
    err = one_line_error(cli, "run", "--action", bad, "--event", example("count_attempts.event.json"))
    assert f"{bad}:2:" in err and "syntax" in err


def test_a_non_utf8_action_is_refused(cli: Cli, tmp_path: Path) -> None:
    bad = write(tmp_path, "latin1.py", ("# caf\xe9\ndef on_execute_post_challenge(event, api):\n"
                                        "    pass\n").encode("latin-1"))
    err = one_line_error(cli, "run", "--action", bad, "--event", example("count_attempts.event.json"))
    assert bad in err


def test_a_one_megabyte_action_is_refused(cli: Cli, tmp_path: Path) -> None:
    big = write(tmp_path, "big.py", "def on_execute_post_challenge(event, api):\n    pass\n"
                + "#" * (1024 * 1024) + "\n")
    err = one_line_error(cli, "run", "--action", big, "--event", example("count_attempts.event.json"))
    assert big in err and "limit" in err


def test_a_tenant_name_that_is_a_path_is_refused(cli: Cli) -> None:
    err = one_line_error(cli, "run", "--action", example("count_attempts.py"),
                         "--event", example("count_attempts.event.json"), "--tenant", "../etc")
    assert "--tenant" in err
