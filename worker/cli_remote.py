"""Pipeline commands: `worker`, `actions upload|list|versions|bind`, `submit`, `demo`.

The broker URL comes from `--broker-url`, else `REDIS_URL`; the key prefix from `--prefix`, else
`ACTIONRUNNER_PREFIX` (default "actionrunner"). Exit status: 0 ok (any flow outcome), 1 compile
problems, 2 unusable input, 3 timeout or worker error. Errors are one line on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sandbox.errors import (
    ActionRunnerError, CompileFailed, ExecutionTimeout, InvalidInput, JailBroken, JailUnavailable,
    WorkerError,
)

EXIT_OK, EXIT_COMPILE, EXIT_INPUT, EXIT_WORKER = 0, 1, 2, 3

Handler = Callable[[argparse.Namespace], int]


def register(subparsers: Any) -> None:
    """Add the pipeline commands to `actionrunner`'s subparsers (each sets `handler=`)."""
    worker = subparsers.add_parser("worker", help="serve jobs from the broker (Celery worker)")
    _common(worker)
    worker.add_argument("--concurrency", "-c", type=int, default=None,
                        help="pool processes (default: number of CPUs)")
    worker.add_argument("--queues", "-Q", default=None,
                        help="comma-separated queues (default: the trigger's and uploads)")
    worker.add_argument("--hostname", "-n", default=None, help="worker name (default: celery@host)")
    worker.add_argument("--loglevel", "-l", default="INFO")
    worker.set_defaults(handler=_guard(_worker))

    actions = subparsers.add_parser("actions", help="upload, list, version and bind actions")
    verbs = actions.add_subparsers(dest="verb", required=True, metavar="VERB")
    upload = verbs.add_parser("upload", help="compile and store a new version of an action")
    _common(upload)
    upload.add_argument("--tenant", required=True)
    upload.add_argument("--name", help="action name (default: the file's stem)")
    upload.add_argument("--secrets", type=Path, help="JSON object: secret name -> string")
    upload.add_argument("file", type=Path)
    upload.set_defaults(handler=_guard(_upload))
    listing = verbs.add_parser("list", help="the latest version of each action")
    _common(listing)
    listing.add_argument("--tenant", required=True)
    listing.set_defaults(handler=_guard(_list))
    versions = verbs.add_parser("versions", help="every kept version of one action")
    _common(versions)
    versions.add_argument("--tenant", required=True)
    versions.add_argument("--name", required=True)
    versions.set_defaults(handler=_guard(_versions))
    bind = verbs.add_parser("bind", help="bind NAME:VERSION ... in order (none: unbind)")
    _common(bind)
    bind.add_argument("--tenant", required=True)
    bind.add_argument("bindings", nargs="*", metavar="NAME:VERSION")
    bind.set_defaults(handler=_guard(_bind))

    submit = subparsers.add_parser("submit", help="run the bound actions on an event; print the result")
    _common(submit)
    submit.add_argument("--tenant", required=True)
    submit.add_argument("--event", required=True, type=Path)
    submit.add_argument("--execution-id")
    submit.add_argument("--timeout", type=float, default=30.0, help="seconds (default 30)")
    submit.add_argument("--resume", type=Path, help="the suspended result document to resume")
    submit.add_argument("--continue-request", type=Path, help="JSON {state, query, body}")
    submit.set_defaults(handler=_guard(_submit))

    demo = subparsers.add_parser("demo", help="the whole pipeline in one process, over examples/")
    demo.add_argument("--examples", type=Path, default=None, help="examples directory")
    demo.set_defaults(handler=_guard(_demo))


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--broker-url", default=None, help="Redis URL (default: $REDIS_URL)")
    parser.add_argument("--prefix", default=None, help="key prefix (default: $ACTIONRUNNER_PREFIX)")


def _guard(handler: Handler) -> Handler:
    """Turn each caller-facing error into its exit status and one line on stderr."""

    def run(args: argparse.Namespace) -> int:
        try:
            return handler(args)
        except CompileFailed as exc:
            source = getattr(args, "file", None) or exc.name
            for d in exc.diagnostics:
                print(f"{source}:{d.line}:{d.column}: {d.kind}: {d.message}", file=sys.stderr)
            return EXIT_COMPILE
        except (ExecutionTimeout, WorkerError, JailBroken, JailUnavailable) as exc:
            print(f"actionrunner: {type(exc).__name__}: {exc}", file=sys.stderr)
            return EXIT_WORKER
        except (ActionRunnerError, ValueError) as exc:
            first_line = (str(exc).splitlines() or [""])[0]
            print(f"actionrunner: {type(exc).__name__}: {first_line}", file=sys.stderr)
            return EXIT_INPUT

    return run


def _settings(args: argparse.Namespace, *, need_broker: bool = True) -> Any:
    from broker.app import Settings

    settings = Settings.from_env(broker_url=args.broker_url, prefix=args.prefix)
    if need_broker and settings.broker_url is None:
        raise InvalidInput("no broker: pass --broker-url or set REDIS_URL", source="command line")
    return settings


def _client(args: argparse.Namespace) -> Any:
    from broker.client import ActionRunnerClient

    return ActionRunnerClient(settings=_settings(args))


def _read_json(path: Path) -> Any:
    """The JSON in `path` ("-" = stdin); InvalidInput naming the file otherwise."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read: {exc}", source=str(path)) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"not JSON: {exc}", source=str(path)) from None


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=False))


# ------------------------------------------------------------------------------------ commands


def _worker(args: argparse.Namespace) -> int:
    from broker.app import UPLOAD_QUEUE, create_app

    settings = _settings(args)
    app = create_app(settings)
    argv = ["worker", "--loglevel", args.loglevel, "--pool", "prefork",
            # Request/response: no gossip, mingle or heartbeats between workers.
            "--without-gossip", "--without-mingle", "--without-heartbeat",
            "--queues", args.queues or f"{settings.queue},{UPLOAD_QUEUE}"]
    if args.concurrency:
        argv += ["--concurrency", str(args.concurrency)]
    if args.hostname:
        argv += ["--hostname", args.hostname]
    app.worker_main(argv=argv)
    return EXIT_OK


def _upload(args: argparse.Namespace) -> int:
    path: Path = args.file
    try:
        source = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"cannot read: {exc}", source=str(path)) from None
    secrets = _read_json(args.secrets) if args.secrets else {}
    with _client(args) as client:
        version = client.upload_action(args.tenant, args.name or path.stem, source, secrets)
    _print(_version_dict(version))
    return EXIT_OK


def _list(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print([_version_dict(v) for v in client.list_actions(args.tenant)])
    return EXIT_OK


def _versions(args: argparse.Namespace) -> int:
    with _client(args) as client:
        _print([_version_dict(v) for v in client.versions(args.tenant, args.name)])
    return EXIT_OK


def _bind(args: argparse.Namespace) -> int:
    pairs = []
    for text in args.bindings:
        name, _, version = text.rpartition(":")
        if not name or not version.isdigit():
            raise InvalidInput(f"{text!r} is not NAME:VERSION", source="command line")
        pairs.append((name, int(version)))
    with _client(args) as client:
        bound = client.bind(args.tenant, pairs)
    _print([{"name": b.name, "version": b.version} for b in bound])
    return EXIT_OK


def _submit(args: argparse.Namespace) -> int:
    from sandbox.models import ResumeInfo, Result

    event = _read_json(args.event)
    with _client(args) as client:
        if args.resume is None:
            result = client.execute(args.tenant, event, execution_id=args.execution_id,
                                    timeout=args.timeout)
        else:
            if args.continue_request is None:
                raise InvalidInput("--resume needs --continue-request", source="command line")
            suspended = Result.model_validate(_read_json(args.resume))
            if suspended.resume is None:
                raise InvalidInput("not a suspended result (no `resume`)", source=str(args.resume))
            result = client.resume(args.tenant, ResumeInfo.model_validate(suspended.resume),
                                   _read_json(args.continue_request), event,
                                   execution_id=args.execution_id, timeout=args.timeout)
    print(result.model_dump_json(indent=2))
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    examples = args.examples or Path(os.environ.get("ACTIONRUNNER_EXAMPLES", "examples"))
    if args.examples is None and not examples.is_dir():
        examples = Path(__file__).resolve().parents[1] / "examples"  # a source checkout
    return run_demo(examples)


def _version_dict(version: Any) -> dict[str, Any]:
    return {"tenant": version.tenant, "name": version.name, "version": version.version,
            "source_hash": version.source_hash, "created_at_ms": version.created_at_ms}
