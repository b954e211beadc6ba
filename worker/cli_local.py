"""The local commands: `check`, `run` and `schema`. No broker, no Redis: tenant code runs in the jail.

`run` keeps the tenant's cache between runs in `$ACTIONRUNNER_HOME/cache/<tenant>.<trigger>.json`
(default home ~/.local/state/actionrunner) and signs resume tokens with `sandbox.resume.load_key()`.
Exit statuses: 0 the command did its job (any flow outcome), 1 `check` found problems, 2 unusable
input (one line on stderr naming the file and field), 3 the jail could not run.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, TypeAdapter, ValidationError

from sandbox import cache_rules
from sandbox.errors import ActionRunnerError, InvalidInput, JailBroken, JailUnavailable
from sandbox.flow import BoundAction, check_secrets, resume_flow, run_flow
from sandbox.jail import Jail
from sandbox.limits import Limits
from sandbox.models import (
    CacheRecord, ContinueRequest, Diagnostic, JobInput, Result, parse_event,
)
from sandbox.resume import ResumeSigner, load_key, state_home
from sandbox.runner import ActionRunner

TRIGGER = "password-reset-post-challenge"
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_CACHE_FILE = TypeAdapter(dict[str, CacheRecord])
Model = TypeVar("Model", bound=BaseModel)


def register(subparsers: Any) -> None:
    """Add `check`, `run` and `schema` to the `actionrunner` command line."""
    check = subparsers.add_parser(
        "check", help="compile an action (in the jail) and print its diagnostics",
        description="Prints file:line:col: kind: message per problem; exit 1 if any.",
    )
    check.add_argument("action", metavar="ACTION.py")
    check.set_defaults(handler=cmd_check)

    run = subparsers.add_parser(
        "run", help="run actions on an event in the jail; print the result document",
        description="Runs the actions in order (name = file stem) and prints the result JSON. "
                    "With --resume and --continue-request, resumes a suspended result instead.",
    )
    run.add_argument("--action", dest="actions", action="append", required=True,
                     metavar="ACTION.py", help="an action file; repeat for a flow, in order")
    run.add_argument("--event", required=True, metavar="EVENT.json", help="the event ('-': stdin)")
    run.add_argument("--secrets", metavar="SECRETS.json",
                     help="a JSON object of secret name -> string, given to every action")
    run.add_argument("--tenant", default="local", help="whose cache to use (default: local)")
    run.add_argument("--resume", metavar="RESULT.json", help="a suspended result document")
    run.add_argument("--continue-request", metavar="REQUEST.json",
                     help="the /continue request: {state, query, body}")
    run.set_defaults(handler=cmd_run)

    schema = subparsers.add_parser("schema", help="print the JSON Schema of the job and the result")
    schema.add_argument("--which", choices=("job", "result"),
                        help="only one of them (default: both, as {\"job\": ..., \"result\": ...})")
    schema.set_defaults(handler=cmd_schema)


def _fail(message: str, status: int = 2) -> int:
    print(f"actionrunner: {' '.join(message.split())}", file=sys.stderr)
    return status


# --------------------------------------------------------------------------------------------------
# Reading input: every failure is one InvalidInput naming the file (and the field).


def _shown(path: str) -> str:
    """How error messages name an input path."""
    return "stdin" if path == "-" else path


def _read_bytes(path: str, max_bytes: int) -> bytes:
    """The bytes of `path` ('-': stdin), at most `max_bytes` + 1 of them (so oversize shows)."""
    try:
        if path == "-":
            return sys.stdin.buffer.read(max_bytes + 1)
        with open(path, "rb") as handle:
            return handle.read(max_bytes + 1)
    except FileNotFoundError:
        raise InvalidInput("no such file", source=path) from None
    except OSError as exc:
        raise InvalidInput(exc.strerror or str(exc), source=path) from None


def _read_json(path: str, max_bytes: int) -> Any:
    data = _read_bytes(path, max_bytes)
    if len(data) > max_bytes:
        raise InvalidInput(f"over the {max_bytes}-byte limit", source=_shown(path))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"not UTF-8 (bad byte at offset {exc.start})",
                           source=_shown(path)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}",
                           source=_shown(path)) from None


def _invalid(exc: ValidationError, path: str, hint: str = "") -> InvalidInput:
    first = exc.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "(root)"
    return InvalidInput(first["msg"] + hint, source=_shown(path), field=field)


def _validate(model: type[Model], data: Any, path: str) -> Model:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _invalid(exc, path) from None


def _action_name(path: str) -> str:
    return "stdin" if path == "-" else Path(path).stem


def _source_diagnostics(path: str, runner: ActionRunner, limits: Limits) -> tuple[bytes, list[Diagnostic]]:
    """The source of `path` and its compile diagnostics, compiled in the jail."""
    data = _read_bytes(path, limits.source_max_bytes)
    if len(data) > limits.source_max_bytes:
        return data, [Diagnostic(line=1, column=0, kind="size",
                                 message=f"the source is over the {limits.source_max_bytes}-byte limit")]
    return data, runner.check(data, name=_action_name(path))


def _load_action(path: str, secrets: dict[str, str], runner: ActionRunner, limits: Limits) -> BoundAction:
    data, diagnostics = _source_diagnostics(path, runner, limits)
    if diagnostics:
        first = diagnostics[0]
        more = f" (and {len(diagnostics) - 1} more)" if len(diagnostics) > 1 else ""
        raise InvalidInput(f"{first.kind}: {first.message}{more}",
                           source=f"{_shown(path)}:{first.line}:{first.column}")
    try:
        source = data.decode("utf-8")
    except UnicodeDecodeError as exc:  # the policy reports this first; kept as a backstop
        raise InvalidInput(f"not UTF-8 (bad byte at offset {exc.start})",
                           source=_shown(path)) from None
    return BoundAction(name=_action_name(path), source=source, secrets=secrets)


# --------------------------------------------------------------------------------------------------
# The tenant's cache file.


def _cache_path(tenant: str) -> Path:
    # SECURITY: the tenant name becomes a file name; only a plain name may, so no tenant can name
    # another tenant's file or a path outside the cache directory.
    if not _TENANT.fullmatch(tenant):
        raise InvalidInput("must be 1-64 letters, digits, '-', '_' or '.', starting with a letter "
                           "or digit", source="--tenant")
    return state_home() / "cache" / f"{tenant}.{TRIGGER}.json"


def _load_cache(path: Path) -> dict[str, dict[str, Any]]:
    if not path.exists():
        return {}
    try:
        records = _CACHE_FILE.validate_python(_read_json(str(path), 1024 * 1024))
    except ValidationError as exc:
        raise _invalid(exc, str(path), " (delete the file to start afresh)") from None
    return {key: record.model_dump() for key, record in records.items()}


def _save_cache(path: Path, cache: dict[str, dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(cache, out, indent=1, sort_keys=True)
    os.replace(tmp, path)  # atomic: a crash never leaves half a cache


# --------------------------------------------------------------------------------------------------
# The commands.


def cmd_check(args: argparse.Namespace) -> int:
    """`actionrunner check ACTION.py`: 0 when it compiles, 1 with diagnostics, 2 unreadable."""
    try:
        limits = Limits.from_env()
    except ValueError as exc:
        return _fail(str(exc))
    try:
        with Jail.from_env(limits) as runner:
            _, diagnostics = _source_diagnostics(args.action, runner, limits)
    except InvalidInput as exc:
        return _fail(str(exc))
    except (JailUnavailable, JailBroken) as exc:
        return _fail(str(exc), 3)
    for d in diagnostics:
        print(f"{args.action}:{d.line}:{d.column}: {d.kind}: {d.message}")
    return 1 if diagnostics else 0


def cmd_run(args: argparse.Namespace) -> int:
    """`actionrunner run ...`: prints the result document; 0 for any flow outcome, 2 bad input."""
    try:
        limits = Limits.from_env()
    except ValueError as exc:
        return _fail(str(exc))
    try:
        with Jail.from_env(limits) as runner:
            result, cache_path, cache = _run(args, runner, limits)
    except (JailUnavailable, JailBroken) as exc:
        return _fail(str(exc), 3)
    except ActionRunnerError as exc:  # InvalidInput, InvalidEvent, ResumeRefused, LimitExceeded
        return _fail(str(exc))
    # Whatever the status, the result lists exactly the commands that stand (a failing action's own
    # are never in it; earlier actions' are, as with a deny), so the cache gets exactly those.
    now_ms = int(time.time() * 1000)
    cache_rules.apply_commands(cache, result.commands, now_ms=now_ms, limits=limits)
    _save_cache(cache_path, cache)
    print(result.model_dump_json(indent=2))
    return 0


def _run(
    args: argparse.Namespace, runner: ActionRunner, limits: Limits,
) -> tuple[Result, Path, dict[str, dict[str, Any]]]:
    if (args.resume is None) != (args.continue_request is None):
        raise InvalidInput("give both --resume and --continue-request, or neither",
                           source="--resume")
    cache_path = _cache_path(args.tenant)
    secrets: dict[str, str] = {}
    if args.secrets:
        secrets = check_secrets(_read_json(args.secrets, 1024 * 1024), source=_shown(args.secrets),
                                limits=limits)
    event = parse_event(_read_json(args.event, limits.event_max_bytes), source=_shown(args.event))
    resume = continue_request = None
    if args.resume:
        # Printed with indentation, a result document is larger than its compact form.
        document = _read_json(args.resume, 4 * limits.result_max_bytes)
        suspended = _validate(Result, document, args.resume)
        if suspended.resume is None:
            raise InvalidInput(f"the result is {suspended.status}, not suspended: nothing to resume",
                               source=_shown(args.resume), field="resume")
        resume = suspended.resume
        continue_request = _validate(
            ContinueRequest, _read_json(args.continue_request, limits.event_max_bytes),
            args.continue_request,
        )
    actions = [_load_action(path, secrets, runner, limits) for path in args.actions]
    cache = _load_cache(cache_path)
    signer = ResumeSigner(load_key())
    common: dict[str, Any] = dict(runner=runner, cache=cache, signer=signer, tenant=args.tenant,
                                  limits=limits)
    if resume is not None and continue_request is not None:
        result = resume_flow(actions, event, resume=resume, continue_request=continue_request,
                             **common)
    else:
        result = run_flow(actions, event, **common)
    return result, cache_path, cache


def cmd_schema(args: argparse.Namespace) -> int:
    """`actionrunner schema [--which job|result]`: the JSON Schemas of the job input and result."""
    schemas = {"job": JobInput.model_json_schema(), "result": Result.model_json_schema()}
    print(json.dumps(schemas[args.which] if args.which else schemas, indent=2))
    return 0
