"""The console: what one action's `print(...)` calls wrote, bounded.

RestrictedPython compiles `print(...)` to `_print._call_print(...)` after binding
`_print = _print_(_getattr_)` at the top of each function that prints, so `_print_` is a factory of
printers (its `PrintCollector` protocol). `Console.print_factory(...)` builds that factory; every
printer it makes writes into the one `Console` of the run.

Bounds: the first `limits.console_kept_bytes` bytes (UTF-8) are kept, the rest only counted. Past
`limits.console_max_bytes` printed in total the action is flooding, not logging: `OutputTooLarge` is
raised (and remembered, so a tenant's bare `except:` cannot hide it) and the run ends with outcome
`output_too_large`.
"""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any, NoReturn

from sandbox.limits import DEFAULT_LIMITS, Limits


class OutputTooLarge(BaseException):
    """The action printed more than `limits.console_max_bytes`; ends the run (`output_too_large`).

    A BaseException so that tenant code's `except Exception` does not catch it.
    """


class Console:
    """Collects one action's printed text: keeps a bounded prefix, counts what it drops."""

    def __init__(self, limits: Limits = DEFAULT_LIMITS) -> None:
        self.kept_max_bytes = limits.console_kept_bytes
        self._total_max = limits.console_max_bytes
        self._kept: list[str] = []
        self._kept_bytes = 0
        self._total_bytes = 0
        self.overflowed = False  # set once OutputTooLarge was raised, even if tenant code caught it

    @property
    def text(self) -> str:
        """The kept text (at most `console_kept_bytes` UTF-8 bytes, cut on a character boundary)."""
        return "".join(self._kept)

    @property
    def dropped_bytes(self) -> int:
        """How many printed bytes (UTF-8) were not kept."""
        return self._total_bytes - self._kept_bytes

    def write(self, text: str) -> None:
        """Append `text`. Raises OutputTooLarge once more than `console_max_bytes` were written."""
        if type(text) is not str:  # print() only ever hands us str; anything else is misuse
            raise TypeError("console.write() takes a str")
        if self.overflowed:
            raise OutputTooLarge(f"the action printed more than {self._total_max} bytes")
        data = text.encode("utf-8", "surrogatepass")
        self._total_bytes += len(data)
        room = self.kept_max_bytes - self._kept_bytes
        if room > 0:
            piece = data[:room].decode("utf-8", "ignore")  # drops a character cut in half
            self._kept.append(piece)
            self._kept_bytes += len(piece.encode("utf-8", "surrogatepass"))
        if self._total_bytes > self._total_max:
            # SECURITY: without this an action could fill the parent's memory and the result store
            # with an endless print loop that never touches the CPU limit first.
            self.overflowed = True
            raise OutputTooLarge(f"the action printed more than {self._total_max} bytes")

    def print_factory(self, refuse: Callable[[str], NoReturn]) -> Callable[..., Printer]:
        """RestrictedPython's `_print_` for one run: makes printers writing to this console.

        `refuse(message)` is the run's violation hook (see `sandbox.policy.RunState.refuse`).
        """

        def _print_(_getattr_: Any = None) -> Printer:
            return Printer(self, refuse)

        return _print_


class Printer:
    """What `_print_` returns: `print(...)` calls `_call_print`; `printed` calls the printer."""

    __slots__ = ("_console", "_refuse", "_own", "_own_chars")

    def __init__(self, console: Console, refuse: Callable[[str], NoReturn]) -> None:
        self._console = console
        self._refuse = refuse
        self._own: list[str] = []
        self._own_chars = 0

    def write(self, text: str) -> None:
        """Write `text` to the console (and remember it for `printed`, up to the kept bound)."""
        self._console.write(text)
        room = self._console.kept_max_bytes - self._own_chars
        if room > 0:
            self._own.append(text[:room])
            self._own_chars += min(len(text), room)

    def __call__(self) -> str:
        """RestrictedPython's `printed`: what this scope printed (at most console_kept_bytes)."""
        return "".join(self._own)

    def _call_print(self, *objects: Any, **kwargs: Any) -> None:
        # SECURITY: print(file=x) would call x.write(...) on any object the tenant holds, outside
        # the attribute guard; only the console is a valid target.
        if kwargs.get("file") is not None:
            self._refuse("print(file=...) is not allowed: print() writes to the action's console")
        kwargs["file"] = self
        kwargs.pop("flush", None)
        builtins.print(*objects, **kwargs)
