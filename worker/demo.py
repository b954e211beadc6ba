"""`actionrunner demo`: the whole pipeline in one process over the actions in examples/.

Embedded mode (no Redis): upload (compiled in the jail), bind, execute, a redirect and its resume
(the risk service's answer made by examples/risk_service.py), a counter that denies after three
attempts, and a rollback to an older version. Each result is printed as a short summary.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import Any

from broker.client import ActionRunnerClient
from sandbox.errors import ResumeRefused
from sandbox.models import Result

TENANT = "demo-tenant"


def run_demo(examples: Path, *, client: ActionRunnerClient | None = None) -> int:
    """Run the demo over `examples`; prints as it goes; returns 0. Raises InvalidInput when an
    example file is missing."""
    from sandbox.errors import InvalidInput

    if not (examples / "deny_by_email_domain.py").is_file():
        raise InvalidInput("no examples here (deny_by_email_domain.py missing)", source=str(examples))
    own = client is None
    client = client or ActionRunnerClient(None)
    try:
        _demo(client, examples)
    finally:
        if own:
            client.close()
    return 0


def _demo(client: ActionRunnerClient, examples: Path) -> None:
    def read(name: str) -> Any:
        return json.loads((examples / name).read_text(encoding="utf-8"))

    _step("upload: each action is compiled in the jail, then stored as version 1")
    versions = {}
    # An example action is a .py file with an event next to it (helpers like risk_service.py are not).
    for path in sorted(p for p in examples.glob("*.py") if (examples / f"{p.stem}.event.json").exists()):
        secrets_path = examples / f"{path.stem}.secrets.json"
        secrets = read(secrets_path.name) if secrets_path.exists() else {}
        version = client.upload_action(TENANT, path.stem, path.read_text(encoding="utf-8"), secrets)
        versions[path.stem] = version.version
        print(f"  {version.name} v{version.version}  sha256 {version.source_hash[:12]}")

    for name in ("deny_by_email_domain", "require_mfa_for_role"):
        _step(f"bind [{name}] and execute examples/{name}.event.json")
        client.bind(TENANT, [(name, versions[name])])
        _show(client.execute(TENANT, read(f"{name}.event.json")))

    _step("bind [count_attempts]: the same user resets four times; the fourth is denied")
    client.bind(TENANT, [("count_attempts", versions["count_attempts"])])
    for attempt in range(1, 5):
        print(f"  attempt {attempt}:")
        _show(client.execute(TENANT, read("count_attempts.event.json")), indent="    ")

    _step("bind [risk_check_redirect]: redirect to the risk service, then resume")
    client.bind(TENANT, [("risk_check_redirect", versions["risk_check_redirect"])])
    suspended = client.execute(TENANT, read("risk_check_redirect.event.json"))
    _show(suspended)
    assert suspended.resume is not None, "the redirect example did not suspend"
    secret = read("risk_check_redirect.secrets.json")["RISK_CHECK_SECRET"]
    risk_service = _load_module(examples / "risk_service.py")
    answer = risk_service.continue_request(suspended.model_dump(mode="json"), secret, "allow")
    print("  the risk service answers /continue with a signed verdict 'allow'; resuming:")
    fresh_event = read("risk_check_redirect.continue-event.json")
    _show(client.resume(TENANT, suspended.resume, answer, fresh_event))
    print("  the same resume token again:")
    try:
        client.resume(TENANT, suspended.resume, answer, fresh_event)
    except ResumeRefused as exc:
        print(f"    refused: {exc}")

    _step("rollback: upload deny_by_email_domain v2 (logs a line), bind it, then bind v1 again")
    source = (examples / "deny_by_email_domain.py").read_text(encoding="utf-8")
    v2_source = source.replace("def on_execute_post_challenge(event, api):",
                               "def on_execute_post_challenge(event, api):\n"
                               "    print('v2 checking ' + str(event.user.email))", 1)
    v2 = client.upload_action(TENANT, "deny_by_email_domain", v2_source)
    for version in (v2.version, versions["deny_by_email_domain"]):
        client.bind(TENANT, [("deny_by_email_domain", version)])
        print(f"  bound deny_by_email_domain v{version}:")
        _show(client.execute(TENANT, read("deny_by_email_domain.event.json")), indent="    ")


def _step(title: str) -> None:
    print(f"\n== {title}")


def _show(result: Result, *, indent: str = "  ") -> None:
    """Print a result document as a few readable lines."""
    print(f"{indent}status: {result.status}")
    for report in result.actions:
        print(f"{indent}  ran {report.name} v{report.version}: {report.outcome} "
              f"({report.wall_ms:.1f} ms wall, {report.cpu_ms:.1f} ms cpu)")
    for command in result.commands:
        fields = command.model_dump(mode="json", exclude={"type", "action"})
        detail = ", ".join(f"{k}={_short(v)}" for k, v in fields.items() if v not in ({}, [], None))
        print(f"{indent}  command {command.type}: {detail}")
    for entry in result.logs:
        for line in entry.message.rstrip().splitlines():
            print(f"{indent}  log [{entry.action}] {line}")
    if result.error is not None:
        print(f"{indent}  error in {result.error.action}: {result.error.type}: {result.error.message}")
    if result.resume is not None:
        print(f"{indent}  resume: state={result.resume.state} token={result.resume.token[:24]}...")


def _short(value: Any, limit: int = 70) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_module(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(f"actionrunner_example_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
