"""The `re` facade: compiled patterns and matches come back wrapped, flags are plain ints.

A real `re.Pattern` or `re.Match` is never handed to tenant code (their classes lead to `re`'s
internals); callbacks given to `sub` receive a wrapped match too.
"""

from __future__ import annotations

import re as _re
from collections.abc import Callable, Iterator
from typing import Any

from sandbox.visible import TenantObject

FLAGS = {
    "IGNORECASE": int(_re.IGNORECASE), "I": int(_re.IGNORECASE), "MULTILINE": int(_re.MULTILINE),
    "M": int(_re.MULTILINE), "DOTALL": int(_re.DOTALL), "S": int(_re.DOTALL),
    "VERBOSE": int(_re.VERBOSE), "X": int(_re.VERBOSE), "ASCII": int(_re.ASCII),
    "A": int(_re.ASCII), "UNICODE": int(_re.UNICODE), "U": int(_re.UNICODE),
}


def _pattern_of(pattern: Any, flags: int) -> _re.Pattern[Any]:
    if isinstance(pattern, Pattern):
        if flags:
            raise ValueError("cannot process flags argument with a compiled pattern")
        return pattern._p
    if type(pattern) not in (str, bytes):
        raise TypeError("first argument must be a string or compiled pattern")
    if type(flags) is not int:
        raise TypeError("flags must be an int (re.IGNORECASE | re.MULTILINE ...)")
    return _re.compile(pattern, flags)


def _wrap(match: _re.Match[Any] | None) -> Match | None:
    return None if match is None else Match(match)


def _repl(repl: Any) -> Any:
    if callable(repl):
        # SECURITY: the callback is tenant code; it must receive a wrapper, not a real re.Match.
        def call(match: _re.Match[Any]) -> Any:
            return repl(Match(match))
        return call
    return repl


class Match(TenantObject):
    """A regex match: `group`, `groups`, `groupdict`, `start`, `end`, `span`, `m[1]`, ..."""

    __slots__ = ("_m",)

    def __init__(self, m: _re.Match[Any]) -> None:
        self._m = m

    def group(self, *groups: Any) -> Any:
        return self._m.group(*groups)

    def groups(self, default: Any = None) -> tuple[Any, ...]:
        return self._m.groups(default)

    def groupdict(self, default: Any = None) -> dict[str, Any]:
        return self._m.groupdict(default)

    def start(self, group: Any = 0) -> int:
        return self._m.start(group)

    def end(self, group: Any = 0) -> int:
        return self._m.end(group)

    def span(self, group: Any = 0) -> tuple[int, int]:
        return self._m.span(group)

    def expand(self, template: str) -> str:
        return self._m.expand(template)

    def __getitem__(self, group: Any) -> Any:
        return self._m[group]

    def __bool__(self) -> bool:
        return True

    def __repr__(self) -> str:
        return f"<re.Match span={self._m.span()} match={self._m.group(0)!r}>"

    @property
    def string(self) -> Any:
        return self._m.string

    @property
    def pos(self) -> int:
        return self._m.pos

    @property
    def endpos(self) -> int:
        return self._m.endpos

    @property
    def lastindex(self) -> int | None:
        return self._m.lastindex

    @property
    def lastgroup(self) -> str | None:
        return self._m.lastgroup

    @property
    def re(self) -> Pattern:
        return Pattern(self._m.re)


class Pattern(TenantObject):
    """A compiled regex: the methods of `re.Pattern`, returning wrapped matches."""

    __slots__ = ("_p",)

    def __init__(self, p: _re.Pattern[Any]) -> None:
        self._p = p

    def match(self, string: Any, pos: int = 0, endpos: int = 2**63 - 1) -> Match | None:
        return _wrap(self._p.match(string, pos, endpos))

    def search(self, string: Any, pos: int = 0, endpos: int = 2**63 - 1) -> Match | None:
        return _wrap(self._p.search(string, pos, endpos))

    def fullmatch(self, string: Any, pos: int = 0, endpos: int = 2**63 - 1) -> Match | None:
        return _wrap(self._p.fullmatch(string, pos, endpos))

    def findall(self, string: Any, pos: int = 0, endpos: int = 2**63 - 1) -> list[Any]:
        return self._p.findall(string, pos, endpos)

    def finditer(self, string: Any, pos: int = 0, endpos: int = 2**63 - 1) -> Iterator[Match]:
        return iter([Match(m) for m in self._p.finditer(string, pos, endpos)])

    def split(self, string: Any, maxsplit: int = 0) -> list[Any]:
        return self._p.split(string, maxsplit)

    def sub(self, repl: Any, string: Any, count: int = 0) -> Any:
        return self._p.sub(_repl(repl), string, count)

    def subn(self, repl: Any, string: Any, count: int = 0) -> tuple[Any, int]:
        return self._p.subn(_repl(repl), string, count)

    def __repr__(self) -> str:
        return f"re.compile({self._p.pattern!r})"

    @property
    def pattern(self) -> Any:
        return self._p.pattern

    @property
    def flags(self) -> int:
        return int(self._p.flags)

    @property
    def groups(self) -> int:
        return self._p.groups

    @property
    def groupindex(self) -> dict[str, int]:
        return dict(self._p.groupindex)


class ReFacade(TenantObject):
    """The `re` module: functions taking a pattern string (or `Pattern`) and int flags."""

    __slots__ = ()
    _name = "re"
    _exports = frozenset({"compile", "match", "search", "fullmatch", "findall", "finditer", "sub",
                          "subn", "split", "escape", "error", *FLAGS})
    error = _re.error  # raised for a bad pattern; `except re.error` works

    def __getattr__(self, name: str) -> Any:
        if name in FLAGS:
            return FLAGS[name]
        raise AttributeError(name)

    def __repr__(self) -> str:
        return "<module 're' (actionrunner facade)>"

    def compile(self, pattern: Any, flags: int = 0) -> Pattern:
        return Pattern(_pattern_of(pattern, flags))

    def match(self, pattern: Any, string: Any, flags: int = 0) -> Match | None:
        return _wrap(_pattern_of(pattern, flags).match(string))

    def search(self, pattern: Any, string: Any, flags: int = 0) -> Match | None:
        return _wrap(_pattern_of(pattern, flags).search(string))

    def fullmatch(self, pattern: Any, string: Any, flags: int = 0) -> Match | None:
        return _wrap(_pattern_of(pattern, flags).fullmatch(string))

    def findall(self, pattern: Any, string: Any, flags: int = 0) -> list[Any]:
        return _pattern_of(pattern, flags).findall(string)

    def finditer(self, pattern: Any, string: Any, flags: int = 0) -> Iterator[Match]:
        return Pattern(_pattern_of(pattern, flags)).finditer(string)

    def sub(self, pattern: Any, repl: Callable[..., Any] | Any, string: Any, count: int = 0,
            flags: int = 0) -> Any:
        return _pattern_of(pattern, flags).sub(_repl(repl), string, count)

    def subn(self, pattern: Any, repl: Any, string: Any, count: int = 0,
             flags: int = 0) -> tuple[Any, int]:
        return _pattern_of(pattern, flags).subn(_repl(repl), string, count)

    def split(self, pattern: Any, string: Any, maxsplit: int = 0, flags: int = 0) -> list[Any]:
        return _pattern_of(pattern, flags).split(string, maxsplit)

    def escape(self, pattern: Any) -> Any:
        return _re.escape(pattern)
