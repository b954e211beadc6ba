"""Running one handler: outcomes, console bounds, and facades that behave like the real modules."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import urllib.parse
from typing import Any

from sandbox.console import Console, OutputTooLarge
from sandbox.execute import COMPILE_CACHE_MAX_ENTRIES, InProcessRunner, compiled, run_handler
from sandbox.limits import Limits
from sandbox.models import ActionOutput
from sandbox.runner import ActionRequest

NOW_MS = 1_767_225_600_000  # 2026-01-01T00:00:00Z
EVENT: dict[str, Any] = {"user": {"user_id": "auth0|1", "email": "a@example.com"},
                         "request": {"hostname": "example.com", "ip": "203.0.113.9"}}


def run(body: str, *, prelude: str = "", handler: str = "on_execute_post_challenge",
        limits: Limits = Limits(), event: dict[str, Any] | None = None) -> ActionOutput:
    lines = "\n".join("    " + line for line in body.strip("\n").splitlines())
    source = f"{prelude}\ndef on_execute_post_challenge(event, api):\n{lines}\n"
    return run_source(source, handler=handler, limits=limits, event=event)


def run_source(source: str, *, handler: str = "on_execute_post_challenge",
               limits: Limits = Limits(), event: dict[str, Any] | None = None) -> ActionOutput:
    request = ActionRequest(
        action="test-action", source=source, handler=handler,  # type: ignore[arg-type]
        event=EVENT if event is None else event, now_ms=NOW_MS, limits=limits)
    return run_handler(request)


# ----------------------------------------------------------------------------------------- outcomes


def test_a_handler_that_returns_is_ok_with_its_commands_and_console() -> None:
    output = run("print('checking', event.user.email)\napi.access.deny('risky')")
    assert output.outcome == "ok"
    assert [c.model_dump() for c in output.commands] == [
        {"type": "access.deny", "action": "test-action", "reason": "risky"}]
    assert output.console == "checking a@example.com\n"
    assert output.error is None


def test_a_missing_continue_handler_is_ok_with_no_commands() -> None:
    output = run("api.access.deny('x')", handler="on_continue_post_challenge")
    assert (output.outcome, output.commands) == ("ok", [])


def test_a_tenant_exception_is_an_error_with_type_message_and_line_and_no_commands() -> None:
    output = run("api.access.deny('x')\nraise ValueError('bad ' + event.user.user_id)")
    assert output.outcome == "error"
    assert output.commands == []
    assert output.error is not None
    assert (output.error.action, output.error.type, output.error.message, output.error.line) == (
        "test-action", "ValueError", "bad auth0|1", 4)


def test_the_error_line_is_the_deepest_line_inside_the_action() -> None:
    prelude = "import json\n\ndef parse(text):\n    return json.loads(text)\n"
    output = run("parse('{not json')", prelude=prelude)
    assert output.outcome == "error"
    assert output.error is not None
    assert (output.error.type, output.error.line) == ("ValueError", 4)


def test_an_error_in_the_module_body_is_reported_at_its_line() -> None:
    output = run_source(
        "x = 1\ny = {}['missing']\n\ndef on_execute_post_challenge(event, api):\n    pass\n")
    assert output.error is not None
    assert (output.outcome, output.error.type, output.error.line) == ("error", "KeyError", 2)


def test_unbounded_recursion_is_an_error() -> None:
    output = run("f(1)", prelude="def f(n):\n    return f(n + 1)\n")
    assert output.error is not None
    assert (output.outcome, output.error.type) == ("error", "RecursionError")


def test_a_memory_error_is_memory_limit() -> None:
    output = run("raise MemoryError()")
    assert output.outcome == "memory_limit"


def test_a_violation_ends_the_run_as_violation_with_the_line() -> None:
    output = run("api.access.deny('x')\nx = getattr(event, '_' + 'data')")
    assert output.outcome == "violation"
    assert output.commands == []
    assert output.error is not None and output.error.line == 4
    assert "_data" in output.error.message


def test_a_swallowed_violation_still_ends_the_run_as_violation() -> None:
    body = "try:\n    getattr((), '_' * 2 + 'class__')\nexcept:\n    pass\napi.access.deny('x')"
    output = run(body)
    assert (output.outcome, output.commands) == ("violation", [])
    assert output.error is not None and output.error.line == 4


def test_source_that_fails_the_policy_at_run_time_is_a_violation() -> None:
    output = run("import os")
    assert output.outcome == "violation"
    assert output.error is not None and output.error.type == "CompileFailed"


def test_source_that_does_not_parse_at_run_time_is_an_error() -> None:
    output = run_source("def on_execute_post_challenge(event, api):\n    x = (\n")
    assert output.outcome == "error"
    assert output.error is not None and output.error.type == "CompileFailed"


def test_a_run_cannot_change_the_event_the_next_run_sees() -> None:
    event = {"user": {"user_id": "auth0|1", "app_metadata": {"tier": "gold"},
                      "identities": [{"provider": "auth0"}]}}
    before = json.loads(json.dumps(event))
    body = ("d = event.copy()\nd['user']['app_metadata']['tier'] = 'x'\n"
            "d['user']['identities'].append(1)\nm = event.user.app_metadata.copy()\n"
            "m['tier'] = 'y'\nprint(event.user.app_metadata.tier, len(event.user.identities))")
    output = run(body, event=event)
    assert (output.outcome, output.console) == ("ok", "gold 1\n")
    assert event == before


def test_action_local_names_may_reuse_builtin_names() -> None:
    output = run("type = event.user.user_id\nid = 3\nprint(type, id)")
    assert (output.outcome, output.console) == ("ok", "auth0|1 3\n")


# ------------------------------------------------------------------------------------------ console


def test_the_console_keeps_a_bounded_prefix_and_counts_the_rest() -> None:
    limits = Limits(console_kept_bytes=10, console_max_bytes=1000)
    output = run("for i in range(5):\n    print('abcd')", limits=limits)
    assert output.outcome == "ok"
    assert output.console == "abcd\nabcd\n"
    assert output.console_dropped_bytes == 15


def test_the_console_never_cuts_a_character_in_half() -> None:
    console = Console(Limits(console_kept_bytes=5, console_max_bytes=100))
    console.write("ab€cd")  # "€" is 3 bytes: bytes 3-5
    assert console.text == "ab€"
    console.write("é")
    assert console.text == "ab€"
    assert console.dropped_bytes == 4


def test_printing_past_the_maximum_is_output_too_large_even_when_caught() -> None:
    limits = Limits(console_kept_bytes=100, console_max_bytes=1000)
    body = "for i in range(100):\n    try:\n        print('x' * 50)\n    except BaseException:\n" \
           "        pass\napi.access.deny('x')"
    output = run(body, limits=limits)
    assert output.outcome == "output_too_large"
    assert output.commands == []
    assert len(output.console) == 100


def test_console_raises_output_too_large_once_over_the_maximum() -> None:
    console = Console(Limits(console_kept_bytes=4, console_max_bytes=8))
    console.write("12345678")
    try:
        console.write("9")
    except OutputTooLarge:
        pass
    else:
        raise AssertionError("no OutputTooLarge")
    assert console.overflowed


# ------------------------------------------------------------------------------------------ facades


def facade_values(body: str) -> list[Any]:
    output = run(body + "\nprint(json.dumps(out))", prelude="import json")
    assert output.outcome == "ok", output.error
    return json.loads(output.console)


def test_json_round_trips() -> None:
    [text, back] = facade_values(
        "doc = {'a': [1, 2.5, None, True], 'b': 'é'}\ns = json.dumps(doc, sort_keys=True)\n"
        "out = [s, json.loads(s)]")
    doc = {"a": [1, 2.5, None, True], "b": "é"}
    assert text == json.dumps(doc, sort_keys=True)
    assert back == doc


def test_re_behaves_like_re() -> None:
    out = facade_values(
        "import re\nm = re.match(r'(?P<user>\\w+)@(\\w+)', 'bob@example.com')\n"
        "p = re.compile('O+', re.IGNORECASE)\n"
        "out = [re.sub(r'\\d', '#', 'a1b22'), m.group('user'), m[2], m.span(), p.findall('foOo o'),"
        " re.split(',', 'a,b'), re.sub('b', lambda m: m.group(0).upper(), 'abc'),"
        " re.escape('a.b')]")
    assert out == ["a#b##", "bob", "example", [0, 11], ["oOo", "o"], ["a", "b"], "aBc", "a\\.b"]


def test_hashlib_hmac_and_base64_match_the_real_modules() -> None:
    out = facade_values(
        "import hashlib, hmac, base64\nh = hashlib.sha256(b'abc')\nh.update(b'def')\n"
        "mac = hmac.new(b'key', b'msg', hashlib.sha256).hexdigest()\n"
        "out = [h.hexdigest(), hashlib.md5(b'x').hexdigest(), mac, hmac.compare_digest('a', 'a'),"
        " base64.b64encode(b'\\x00hi').decode(), base64.urlsafe_b64decode('_-8=').hex()]")
    assert out == [
        hashlib.sha256(b"abcdef").hexdigest(), hashlib.md5(b"x").hexdigest(),
        hmac.new(b"key", b"msg", hashlib.sha256).hexdigest(), True,
        base64.b64encode(b"\x00hi").decode(), base64.urlsafe_b64decode("_-8=").hex(),
    ]


def test_datetime_arithmetic_and_the_action_clock() -> None:
    out = facade_values(
        "import time\nfrom datetime import datetime, timedelta, timezone\n"
        "now = datetime.now(timezone.utc)\nlater = now + timedelta(days=1, hours=2)\n"
        "parsed = datetime.fromisoformat('2025-12-31T23:00:00+00:00')\n"
        "out = [later.isoformat()[:19], (now - parsed).total_seconds() // 1,"
        " int(time.time()) // 60, later.strftime('%Y-%m-%d'), later.weekday()]")
    expected = datetime.datetime(2026, 1, 2, 2, 0, tzinfo=datetime.timezone.utc)
    assert out == [expected.isoformat()[:19], 3600, NOW_MS // 60_000, "2026-01-02",
                   expected.weekday()]


def test_urllib_parse_behaves_like_urllib_parse() -> None:
    out = facade_values(
        "import urllib.parse\nfrom urllib.parse import urlencode, urlparse\n"
        "u = urlparse('https://example.com/p?a=1#f')\n"
        "out = [urlencode({'q': 'a b', 'x': 'é'}), urllib.parse.quote('a/b c'), u.netloc, u.query,"
        " urllib.parse.parse_qs('a=1&a=2')]")
    assert out == [urllib.parse.urlencode({"q": "a b", "x": "é"}), urllib.parse.quote("a/b c"),
                   "example.com", "a=1", {"a": ["1", "2"]}]


def test_math_works() -> None:
    assert facade_values("import math\nout = [math.sqrt(16), math.floor(2.5), math.pi > 3]") == [
        4.0, 2, True]


# ------------------------------------------------------------------------------------------ runner


def test_compiled_code_is_cached_by_source_and_bounded() -> None:
    first = "def on_execute_post_challenge(event, api):\n    return 'first'\n"
    code = compiled(first)
    assert compiled(first) is code
    for n in range(COMPILE_CACHE_MAX_ENTRIES):
        compiled(f"def on_execute_post_challenge(event, api):\n    return {n}\n")
    assert compiled(first) is not code  # evicted by 256 newer sources, compiled again


def test_in_process_runner_checks_and_runs() -> None:
    runner = InProcessRunner()
    assert [d.kind for d in runner.check("import os\n", name="x")] == ["missing_handler", "import"]
    request = ActionRequest(action="a", source="def on_execute_post_challenge(event, api):\n"
                            "    api.access.deny('no')\n", handler="on_execute_post_challenge",
                            event=EVENT, now_ms=NOW_MS)
    result = runner.run(request, timeout_seconds=5)
    assert result.outcome == "ok"
    assert result.output is not None and len(result.output.commands) == 1
    assert result.wall_ms >= 0 and result.cpu_ms >= 0 and result.peak_memory_kb > 0
    runner.close()


def test_except_exception_does_not_catch_a_violation() -> None:
    body = ("try:\n    getattr(api, '_' + 'state')\nexcept Exception:\n    print('caught')\n"
            "print('after')")
    output = run(body)
    assert output.outcome == "violation"
    assert output.console == ""


def test_printed_returns_what_the_function_printed() -> None:
    output = run("def f():\n    print('a', 1)\n    return printed\nprint(f() * 2, end='')",
                 prelude="")
    assert (output.outcome, output.console) == ("ok", "a 1\na 1\na 1\n")
