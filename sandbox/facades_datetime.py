"""The `datetime` facade and the action's clock.

`datetime.datetime`, `datetime.date`, ... are callable stand-ins for the classes (`_Constructor`):
calling one builds a real `datetime` value (plain values tenant code may read the public attributes
of), and their alternate constructors are methods. The classes themselves are never handed out, so
their internals (`__subclasses__`, the `datetime` module behind them) stay out of reach; the price
is that `isinstance(x, datetime.datetime)` does not work in actions.

`now()`/`today()`/`utcnow()` read the action's clock: the request's `now_ms`, advancing with the
run's own monotonic clock.
"""

from __future__ import annotations

import datetime as _dt
import time as _time
from typing import Any

from sandbox.visible import TenantObject


class Clock:
    """The action's wall clock: `now_ms` at the start of the run, advancing monotonically."""

    __slots__ = ("_start_ms", "_started")

    def __init__(self, now_ms: int | None = None) -> None:
        self._start_ms = _time.time() * 1000 if now_ms is None else float(now_ms)
        self._started = _time.monotonic()

    def seconds(self) -> float:
        """Seconds since the epoch, as the action sees them."""
        return self._start_ms / 1000 + (_time.monotonic() - self._started)


class _Constructor(TenantObject):
    """A callable stand-in for a class: builds instances, never exposes the class itself."""

    __slots__ = ("_kind",)

    def __init__(self, kind: type) -> None:
        self._kind = kind

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._kind(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<constructor {self._kind.__name__}>"


class DatetimeType(_Constructor):
    """`datetime.datetime`: call it, or its alternate constructors; `now()` is the action's now."""

    __slots__ = ("_clock",)

    def __init__(self, clock: Clock) -> None:
        super().__init__(_dt.datetime)
        self._clock = clock

    def now(self, tz: _dt.tzinfo | None = None) -> _dt.datetime:
        """The action's now in `tz` (naive local time when None, like Python)."""
        return _dt.datetime.fromtimestamp(self._clock.seconds(), tz)

    def utcnow(self) -> _dt.datetime:
        """The action's now as a naive UTC datetime."""
        now = _dt.datetime.fromtimestamp(self._clock.seconds(), _dt.timezone.utc)
        return now.replace(tzinfo=None)

    def fromtimestamp(self, ts: float, tz: _dt.tzinfo | None = None) -> _dt.datetime:
        return _dt.datetime.fromtimestamp(ts, tz)

    def fromisoformat(self, text: str) -> _dt.datetime:
        return _dt.datetime.fromisoformat(text)

    def strptime(self, text: str, fmt: str) -> _dt.datetime:
        return _dt.datetime.strptime(text, fmt)

    def combine(self, date: _dt.date, time: _dt.time, tzinfo: Any = True) -> _dt.datetime:
        if tzinfo is True:
            return _dt.datetime.combine(date, time)
        return _dt.datetime.combine(date, time, tzinfo)

    min = _dt.datetime.min
    max = _dt.datetime.max


class DateType(_Constructor):
    """`datetime.date`: call it, or `today()` (the action's today), `fromisoformat`, ..."""

    __slots__ = ("_clock",)

    def __init__(self, clock: Clock) -> None:
        super().__init__(_dt.date)
        self._clock = clock

    def today(self) -> _dt.date:
        return _dt.date.fromtimestamp(self._clock.seconds())

    def fromisoformat(self, text: str) -> _dt.date:
        return _dt.date.fromisoformat(text)

    def fromtimestamp(self, ts: float) -> _dt.date:
        return _dt.date.fromtimestamp(ts)

    min = _dt.date.min
    max = _dt.date.max


class TimezoneType(_Constructor):
    """`datetime.timezone`: `timezone(timedelta(hours=2))`, `timezone.utc`."""

    __slots__ = ()
    utc = _dt.timezone.utc


class DatetimeFacade(TenantObject):
    """`datetime`: the class stand-ins, `UTC`, `MINYEAR`, `MAXYEAR`."""

    __slots__ = ("datetime", "date", "time", "timedelta", "timezone")
    _name = "datetime"
    _exports = frozenset({"datetime", "date", "time", "timedelta", "timezone", "UTC", "MINYEAR",
                          "MAXYEAR"})
    UTC = _dt.timezone.utc
    MINYEAR = _dt.MINYEAR
    MAXYEAR = _dt.MAXYEAR

    def __init__(self, clock: Clock) -> None:
        self.datetime = DatetimeType(clock)
        self.date = DateType(clock)
        self.time = _Constructor(_dt.time)
        self.timedelta = _Constructor(_dt.timedelta)
        self.timezone = TimezoneType(_dt.timezone)

    def __repr__(self) -> str:
        return "<module 'datetime' (actionrunner facade)>"
