"""Run every example through the local command line (`actionrunner run`, in the jail) and print each
result, including the redirect -> external risk check -> resume round trip.

    .venv/bin/python examples/run_demo.py

Uses a fresh ACTIONRUNNER_HOME in a temporary directory, so the attempt counter starts at zero on
every demo run and nothing is left behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from risk_service import continue_request  # noqa: E402 - the examples' own stand-in service


def actionrunner(*args: str, env: dict[str, str]) -> dict[str, Any]:
    """`actionrunner ARGS` in a subprocess; the result document it printed."""
    command = [sys.executable, "-m", "worker", *args]
    done = subprocess.run(command, capture_output=True, text=True, env=env, cwd=HERE.parent)
    if done.returncode != 0:
        raise SystemExit(f"actionrunner {' '.join(args)} failed ({done.returncode}): {done.stderr}")
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def show(title: str, result: dict[str, Any]) -> None:
    print(f"\n=== {title}: {result['status']}")
    for command in result["commands"]:
        fields = {k: v for k, v in command.items() if k not in ("type", "action")}
        print(f"  command  {command['type']} {json.dumps(fields)[:150]}")
    for log in result["logs"]:
        print(f"  log      [{log['action']}] {log['message'].rstrip()}")
    for action in result["actions"]:
        print(f"  ran      {action['name']}: {action['outcome']}, {action['wall_ms']:.1f} ms wall, "
              f"{action['cpu_ms']:.1f} ms CPU, {action['peak_memory_kb']} KiB peak")
    if result.get("error"):
        print(f"  error    {result['error']}")
    if result.get("resume"):
        print(f"  resume   state={result['resume']['state']} token={result['resume']['token'][:40]}...")


def example(name: str) -> str:
    return str(HERE / name)


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="actionrunner-demo-") as home:
        env = {**os.environ, "ACTIONRUNNER_HOME": home}
        env.pop("ACTIONRUNNER_SECRET_KEY", None)
        flow = ("run", "--action", example("deny_by_email_domain.py"), "--event")

        show("deny_by_email_domain (throw-away address)",
             actionrunner(*flow, example("deny_by_email_domain.event.json"), env=env))
        show("deny_by_email_domain (ordinary address)",
             actionrunner(*flow, example("count_attempts.event.json"), env=env))
        mfa_flow = ("--action", example("require_mfa_for_role.py"),
                    "--action", example("deny_by_email_domain.py"),
                    "--event", example("require_mfa_for_role.event.json"))
        challenged = actionrunner("run", *mfa_flow, env=env)
        show("require_mfa_for_role, then deny_by_email_domain (administrator)", challenged)
        challenged_file = Path(home) / "challenged.json"
        challenged_file.write_text(json.dumps(challenged), encoding="utf-8")
        passed_file = Path(home) / "challenge-passed.json"
        passed_file.write_text(json.dumps({"state": challenged["resume"]["state"]}),
                               encoding="utf-8")
        show("... resumed once the challenge was met (only the next action runs)",
             actionrunner("run", *mfa_flow, "--resume", str(challenged_file),
                          "--continue-request", str(passed_file), env=env))
        for attempt in range(1, 5):
            show(f"count_attempts (run {attempt})",
                 actionrunner("run", "--action", example("count_attempts.py"),
                              "--event", example("count_attempts.event.json"), env=env))

        secrets = example("risk_check_redirect.secrets.json")
        secret = json.loads(Path(secrets).read_text(encoding="utf-8"))["RISK_CHECK_SECRET"]
        risk = ("--action", example("risk_check_redirect.py"), "--secrets", secrets)
        for verdict in ("allow", "deny"):
            # A fresh suspension per verdict: a resume token is meant to be used once.
            suspended = actionrunner("run", *risk, "--event",
                                     example("risk_check_redirect.event.json"), env=env)
            show("risk_check_redirect (sends the user to the risk check)", suspended)
            suspended_file = Path(home) / f"suspended-{verdict}.json"
            request_file = Path(home) / f"continue-{verdict}.json"
            suspended_file.write_text(json.dumps(suspended), encoding="utf-8")
            request_file.write_text(json.dumps(continue_request(suspended, secret, verdict)),
                                    encoding="utf-8")
            show(f"risk_check_redirect resumed (the risk service says {verdict})",
                 actionrunner("run", *risk,
                              "--event", example("risk_check_redirect.continue-event.json"),
                              "--resume", str(suspended_file),
                              "--continue-request", str(request_file), env=env))
    return 0


if __name__ == "__main__":
    sys.exit(main())
