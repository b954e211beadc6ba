"""What a jailed child does once set up: wait for its one request, do it, answer.

Runs only inside a jailed child (after child.enter_jail). The request comes from the fork server (a
flag byte, "1" when the child should mark a clean compile, then a JSON object, read to EOF from the
request pipe); the answer goes to the result pipe:

- run:   [C] + ActionOutput JSON, where `C` is written after the source compiled cleanly and before
         any tenant code runs (the fork server then compiles it too, so later children inherit it);
- check: the diagnostics list as JSON;
- call:  (test hook) the JSON of a plain function's return value.
"""

from __future__ import annotations

import base64
import dataclasses
import importlib
import json
import os
from collections.abc import Callable
from typing import Any

from sandbox.jail.supervise import MARK_COMPILED
from sandbox.limits import Limits
from sandbox.runner import ActionRequest

_WARM_UP_SOURCE = (
    "def on_execute_post_challenge(event, api):\n"
    "    if event.user.email and event.user.email.endswith('@example.invalid'):\n"
    "        api.access.deny('warm-up')\n"
    "    print('warm-up')\n"
)


# Standard-library modules that other modules import lazily, on first use of some function (strptime,
# IDNA and other codecs, unicodedata). Children may not be able to read the interpreter's files (the
# stdlib can live under a directory `nobody` cannot enter, and they hold at most a few descriptors),
# so the fork server imports these up front and children inherit them.
PRELOADED_MODULES = (
    "_strptime", "calendar", "locale", "unicodedata", "stringprep", "encodings.idna",
    "encodings.punycode", "encodings.ascii", "encodings.latin_1", "encodings.utf_16",
    "encodings.utf_32", "encodings.unicode_escape", "encodings.raw_unicode_escape",
    "encodings.cp1252", "encodings.base64_codec", "encodings.hex_codec",
)


class Runtime:
    """The sandbox runtime children use (`run_handler`, `compiled`, `check_source`).

    Raises ImportError/AttributeError when the runtime modules are missing.
    """

    def __init__(self, execute_module: str, policy_module: str) -> None:
        execute = importlib.import_module(execute_module)
        policy = importlib.import_module(policy_module)
        self.run_handler: Callable[[ActionRequest], Any] = execute.run_handler
        self.compiled: Callable[[str], Any] = execute.compiled
        self.check_source: Callable[..., list[Any]] = policy.check_source
        for name in PRELOADED_MODULES:
            try:
                importlib.import_module(name)
            except ImportError:
                pass

    def warm_up(self, limits: Limits) -> None:
        """Run the whole path once on trusted code, in the fork server, so children inherit its lazy
        imports and caches instead of each redoing them."""
        self.check_source(_WARM_UP_SOURCE, limits=limits)
        request = ActionRequest(
            action="warm-up", source=_WARM_UP_SOURCE, handler="on_execute_post_challenge",
            event={"user": {"user_id": "warm-up", "email": "a@example.invalid"}}, now_ms=0,
            limits=limits,
        )
        self.run_handler(request).model_dump_json()


# The bounds a request carries to its own child (the Jail's header; forkserver.request_limits reads
# them, each must be > 0); the rest of `Limits` is the Jail's.
REQUEST_LIMIT_FIELDS = ("action_cpu_seconds", "action_memory_bytes", "action_output_max_bytes")


def request_to_json(request: ActionRequest) -> dict[str, Any]:
    """The request as JSON data (`request_from_json` reads it back). Unlike dataclasses.asdict it
    does not deep-copy the event and cache: json.dumps only reads them."""
    return {
        "action": request.action, "source": request.source, "handler": request.handler,
        "event": request.event, "now_ms": request.now_ms, "cache": request.cache,
        "continue_request": request.continue_request,
        "limits": dataclasses.asdict(request.limits),
    }


def request_from_json(data: dict[str, Any]) -> ActionRequest:
    """An ActionRequest from its JSON form (dataclasses.asdict of one). Raises TypeError/KeyError."""
    fields = dict(data)
    fields["limits"] = Limits(**fields["limits"])
    return ActionRequest(**fields)


def read_to_eof(fd: int) -> bytes:
    """Everything readable from `fd` until its writer closes it."""
    chunks = []
    while chunk := os.read(fd, 1 << 20):
        chunks.append(chunk)
    return b"".join(chunks)


def do_request(
    runtime: Runtime, limits: Limits, message: dict[str, Any], result_fd: int, *,
    mark_compiled: bool = False,
) -> bytes:
    """Carry out one request in this (jailed) child; return the answer. With `mark_compiled`, write
    MARK_COMPILED once the source compiled cleanly, before running it. Raises ValueError on an
    unknown op (the child then exits non-zero: `crashed`)."""
    op = message["op"]
    if op == "run":
        request = request_from_json(message["request"])
        if mark_compiled:
            try:
                runtime.compiled(request.source)
            except BaseException:  # noqa: BLE001 - run_handler reports it properly
                pass
            else:
                # Before any tenant code runs: the source compiles cleanly in a jailed child.
                os.write(result_fd, MARK_COMPILED)
        return runtime.run_handler(request).model_dump_json().encode("utf-8")
    if op == "check":
        source = message["source"] if "source" in message else base64.b64decode(message["source_b64"])
        found = runtime.check_source(source, limits=limits)
        return json.dumps([diagnostic.model_dump() for diagnostic in found]).encode("utf-8")
    if op == "call":
        function = getattr(importlib.import_module(message["module"]), message["function"])
        return json.dumps(function(*message.get("args", []))).encode("utf-8")
    raise ValueError(f"unknown op {op!r}")
