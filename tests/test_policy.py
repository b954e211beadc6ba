"""The compile-time policy: each kind of diagnostic, with the line and column to act on."""

from __future__ import annotations

import pytest

from sandbox.errors import CompileFailed
from sandbox.facades import ALLOWED_IMPORTS
from sandbox.limits import Limits
from sandbox.policy import check_source, compile_action

HANDLER = "def on_execute_post_challenge(event, api):\n    return None\n"


def kinds(source: str | bytes, **kwargs: object) -> list[str]:
    return [d.kind for d in check_source(source, **kwargs)]  # type: ignore[arg-type]


def test_a_plain_action_has_no_diagnostics() -> None:
    assert check_source(HANDLER) == []


def test_bytes_that_are_not_utf8_name_the_line_and_column_of_the_first_bad_byte() -> None:
    source = HANDLER.encode() + b"# ok\nx = 'caf\xe9'\n"
    [diagnostic] = check_source(source)
    assert diagnostic.kind == "encoding"
    assert (diagnostic.line, diagnostic.column) == (4, 8)
    assert "0xe9" in diagnostic.message


def test_utf8_bytes_with_a_bom_compile() -> None:
    assert check_source(b"\xef\xbb\xbf" + HANDLER.encode() + "s = 'é'\n".encode()) == []


def test_a_1_mb_source_is_refused_for_its_size_before_parsing() -> None:
    source = HANDLER + "x = 1\n" * (1024 * 1024 // 6)
    [diagnostic] = check_source(source)
    assert diagnostic.kind == "size"
    assert str(Limits().source_max_bytes) in diagnostic.message


def test_the_size_limit_follows_the_limits_given() -> None:
    assert kinds(HANDLER, limits=Limits(source_max_bytes=10)) == ["size"]


def test_a_syntax_error_has_its_line_and_column() -> None:
    [diagnostic] = check_source(HANDLER + "x = (1 +\ny = 2\n")
    assert diagnostic.kind == "syntax"
    assert diagnostic.line == 3
    assert diagnostic.column == 4  # 0-based: the unclosed "("


def test_null_bytes_and_absurd_nesting_are_diagnostics_not_crashes() -> None:
    assert kinds(HANDLER + "x = 1\x00\n") == ["syntax"]
    assert kinds(HANDLER + "x = " + "(" * 5000 + ")" * 5000 + "\n")[0] in ("syntax", "limit")
    assert kinds(HANDLER + "x = " + "-" * 100_000 + "1\n")[0] in ("syntax", "limit")


def test_a_name_starting_with_underscore_is_a_policy_error_with_line_and_column() -> None:
    [diagnostic] = check_source(HANDLER + "\nif True:\n    _secret = 1\n")
    assert diagnostic.kind == "policy"
    assert (diagnostic.line, diagnostic.column) == (5, 4)
    assert '"_secret"' in diagnostic.message


def test_a_dunder_attribute_is_a_policy_error() -> None:
    [diagnostic] = check_source(HANDLER + "x = ().__class__\n")
    assert (diagnostic.kind, diagnostic.line, diagnostic.column) == ("policy", 3, 4)
    assert "__class__" in diagnostic.message


def test_str_format_is_refused_with_a_hint() -> None:
    [diagnostic] = check_source(HANDLER + "x = '{}'.format(1)\n")
    assert diagnostic.kind == "policy"
    assert "f-string" in diagnostic.message


def test_an_import_off_the_allow_list_is_an_import_error_naming_the_module() -> None:
    [diagnostic] = check_source(HANDLER + "import os\n")
    assert (diagnostic.kind, diagnostic.line) == ("import", 3)
    assert "'os'" in diagnostic.message and "json" in diagnostic.message


def test_from_import_of_a_name_a_facade_does_not_export_is_an_import_error() -> None:
    [diagnostic] = check_source(HANDLER + "from json import decoder\n")
    assert diagnostic.kind == "import"
    assert "decoder" in diagnostic.message


def test_every_allowed_import_compiles() -> None:
    lines = [f"import {name}" for name in ALLOWED_IMPORTS]
    lines += [f"from {name} import {', '.join(sorted(names))}"
              for name, names in ALLOWED_IMPORTS.items()]
    lines += ["import urllib.parse as up", "from datetime import datetime as dt"]
    assert check_source(HANDLER + "\n".join(lines) + "\n") == []


def test_a_missing_handler_is_reported() -> None:
    [diagnostic] = check_source("def on_execute(event, api):\n    pass\n")
    assert diagnostic.kind == "missing_handler"
    assert "on_execute_post_challenge" in diagnostic.message


def test_a_handler_that_cannot_take_event_and_api_is_reported_at_its_line() -> None:
    source = HANDLER + "\ndef on_continue_post_challenge(event):\n    pass\n"
    [diagnostic] = check_source(source)
    assert (diagnostic.kind, diagnostic.line) == ("missing_handler", 4)


def test_a_nested_handler_does_not_count() -> None:
    source = "def outer():\n    def on_execute_post_challenge(event, api):\n        pass\n"
    assert kinds(source) == ["missing_handler"]


def test_class_definitions_are_refused() -> None:
    [diagnostic] = check_source(HANDLER + "class Helper:\n    pass\n")
    assert (diagnostic.kind, diagnostic.line) == ("policy", 3)


def test_a_forbidden_builtin_is_refused_unless_the_action_binds_the_name_itself() -> None:
    assert kinds(HANDLER + "x = open('f')\n") == ["policy"]
    assert kinds(HANDLER + "def f(type, id):\n    return (type, id)\n") == []


def test_lookalike_identifiers_are_refused() -> None:
    source = HANDLER + "\uff58 = 1\n"  # fullwidth x, which Python reads as "x"
    [diagnostic] = check_source(source)
    assert diagnostic.kind == "policy"
    assert "look-alike" in diagnostic.message
    assert check_source(HANDLER + "café = 1\n") == []  # non-ASCII is fine when already normal


def test_every_problem_is_reported_in_source_order() -> None:
    source = "import os\nx = ().__class__\nclass C:\n    pass\n"
    diagnostics = check_source(source)
    assert [d.kind for d in diagnostics] == ["missing_handler", "import", "policy", "policy"]
    assert [d.line for d in diagnostics] == sorted(d.line for d in diagnostics)


def test_compile_action_names_the_code_after_the_action() -> None:
    code = compile_action(HANDLER, name="block-risky")
    assert code.co_filename == "<action block-risky>"


def test_compile_action_raises_compile_failed_with_the_diagnostics() -> None:
    with pytest.raises(CompileFailed) as caught:
        compile_action(HANDLER + "import os\n", name="bad")
    assert caught.value.name == "bad"
    assert [d.kind for d in caught.value.diagnostics] == ["import"]
    assert "line 3" in str(caught.value)


def test_text_that_has_no_utf8_form_is_an_encoding_error() -> None:
    assert kinds(HANDLER + "x = '\ud800'\n") == ["encoding"]
    assert kinds(None) == ["encoding"]  # type: ignore[arg-type]


def test_the_list_of_diagnostics_is_bounded() -> None:
    diagnostics = check_source(HANDLER + "_x = 1\n" * 500)
    assert len(diagnostics) == 100
    assert diagnostics[-1].kind == "limit"
    assert "401 more" in diagnostics[-1].message
