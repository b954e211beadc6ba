"""The run-time half of the policy: the guards RestrictedPython's compiled code calls, per run.

`sandbox.policy` rewrites every attribute read to `_getattr_(obj, "name")`, every subscript to
`_getitem_`, every write target to `_write_`, ...; this module supplies those functions, bound to
one run's `RunState`, and the restricted builtins. It is deliberately an ALLOW-LIST: tenant code may
read public attributes of a short list of plain value types (exact types, not subclasses), `args`
of an exception, and public attributes of `TenantObject` instances. Anything else is a `Violation`.

A `Violation` derives from BaseException so `except Exception` cannot swallow it, and every one is
recorded in the run's `RunState`, so even a bare `except:` that swallows it still ends the run with
outcome `violation`.

A `TenantObject` class may narrow what tenant code reads further with a class attribute
`_exports: frozenset[str]`: reading any other name of it is then a violation (facade modules and
`api` use this, so `json.codecs` or `api.commands` are refused, not merely missing).
"""

from __future__ import annotations

import builtins
import datetime as _dt
import operator
import sys
import time
import types
import unicodedata
import urllib.parse
from collections.abc import Callable
from typing import Any, NoReturn

from RestrictedPython.Guards import guarded_iter_unpack_sequence, guarded_unpack_sequence

from sandbox.console import Console
from sandbox.visible import TenantObject

ACTION_FILENAME_PREFIX = "<action "
VIOLATIONS_KEPT_COUNT = 20
VIOLATION_MESSAGE_MAX_CHARS = 500


class Violation(BaseException):
    """Tenant code tried something the policy refuses. Ends the run with outcome `violation`.

    A BaseException so that `except Exception` in tenant code cannot catch it; recorded in the
    run's `RunState` so that catching it with a bare `except:` does not help either.
    """


class RunState:
    """What one run's guards remember: every violation, even those tenant code swallowed."""

    __slots__ = ("violations", "first_line")

    def __init__(self) -> None:
        self.violations: list[str] = []
        self.first_line: int | None = None  # the action's line of the first violation, if known

    @property
    def violated(self) -> bool:
        """True once any guard refused something in this run."""
        return bool(self.violations)

    def refuse(self, message: str) -> NoReturn:
        """Record a violation (with the action's line, when known) and raise `Violation`."""
        line = tenant_line()
        if len(message) > VIOLATION_MESSAGE_MAX_CHARS:  # names in it are the tenant's: bound them
            message = message[:VIOLATION_MESSAGE_MAX_CHARS] + "..."
        text = f"line {line}: {message}" if line is not None else message
        if not self.violations:
            self.first_line = line
        if len(self.violations) < VIOLATIONS_KEPT_COUNT:
            self.violations.append(text)
        raise Violation(text)


def tenant_line() -> int | None:
    """The line of the innermost frame running action code (filename `<action ...>`), if any."""
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        if frame.f_code.co_filename.startswith(ACTION_FILENAME_PREFIX):
            return frame.f_lineno
        frame = frame.f_back
    return None


# --------------------------------------------------------------------------------------------------
# The allow-list of attributes.

# SECURITY: each of these hands out a formatter that walks attributes outside the guard (format,
# format_map), or the class hierarchy (mro).
DENIED_ATTRIBUTES = frozenset({"format", "format_map", "mro"})


def _public(kind: type, minus: tuple[str, ...] = ()) -> frozenset[str]:
    names = {name for name in dir(kind) if not name.startswith("_")}
    return frozenset(names - DENIED_ATTRIBUTES - set(minus))


_CLOCK_READERS = ("now", "utcnow", "today")  # the action's clock is the request's, see facades
_ISO_CALENDAR = type(_dt.date(2000, 1, 1).isocalendar())

# Exact type -> public attributes tenant code may read on its instances.
VALUE_ATTRIBUTES: dict[type, frozenset[str]] = {
    kind: _public(kind)
    for kind in (str, bytes, int, float, bool, complex, list, dict, tuple, set, frozenset, range,
                 slice, _ISO_CALENDAR, time.struct_time)
}
VALUE_ATTRIBUTES[type(None)] = frozenset()
# SECURITY: `mapping` on a dict view hands out a read-only proxy of the viewed dict.
VALUE_ATTRIBUTES.update({kind: frozenset({"isdisjoint"}) for kind in
                         (type({}.keys()), type({}.values()), type({}.items()))})
VALUE_ATTRIBUTES.update({kind: _public(kind, _CLOCK_READERS) for kind in
                         (_dt.datetime, _dt.date, _dt.time, _dt.timedelta, _dt.timezone)})
VALUE_ATTRIBUTES.update({kind: _public(kind, ("encode",)) for kind in
                         (urllib.parse.ParseResult, urllib.parse.SplitResult,
                          urllib.parse.DefragResult)})

# Classes tenant code holds (through builtins) and the few alternate constructors it may call.
CLASS_ATTRIBUTES: dict[type, frozenset[str]] = {
    dict: frozenset({"fromkeys"}), str: frozenset({"maketrans"}), int: frozenset({"from_bytes"}),
    bytes: frozenset({"fromhex"}), float: frozenset({"fromhex"}),
}

SUBSCRIPTABLE = frozenset({str, bytes, list, tuple, dict, range, _ISO_CALENDAR, time.struct_time,
                           urllib.parse.ParseResult, urllib.parse.SplitResult,
                           urllib.parse.DefragResult})
WRITABLE = frozenset({list, dict, set})

# SECURITY: whatever a TenantObject hands out, these must never reach tenant code: each is a door
# to the interpreter (code, frames, modules, classes and their __subclasses__).
NEVER_HANDED_OUT = (type, types.ModuleType, types.FrameType, types.CodeType, types.TracebackType)


def _is_underscored(name: str) -> bool:
    # SECURITY: NFKC too, so look-alikes of "_" (fullwidth low line, ...) count as "_".
    return name.startswith("_") or unicodedata.normalize("NFKC", name).startswith("_")


class Guards:
    """The guard functions of one run, all reporting to that run's `RunState`."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def getattr_(self, obj: Any, name: Any, *default: Any) -> Any:
        """RestrictedPython's `_getattr_` (and the `getattr` builtin): read `obj.name` if allowed.

        Raises Violation for anything off the allow-list; AttributeError for an allowed-kind object
        that simply lacks a (public) attribute.
        """
        refuse = self.state.refuse
        # SECURITY: a str subclass could lie to startswith(); only exact str names are accepted.
        if type(name) is not str:
            refuse(f"attribute names must be str, not {type(name).__name__}")
        if name.startswith("_") or (not name.isascii() and _is_underscored(name)):
            refuse(f'"{name}" is not allowed: attribute names must not start with "_"')
        kind = type(obj)
        allowed = VALUE_ATTRIBUTES.get(kind)
        if allowed is not None:
            if name in allowed:
                return getattr(obj, name)
            if hasattr(obj, name) or name in DENIED_ATTRIBUTES:
                refuse(f"{kind.__name__}.{name} is not allowed")
            return self._missing(kind, name, default)
        if isinstance(obj, TenantObject):
            return self._tenant_attribute(obj, name, default)
        if isinstance(obj, BaseException):
            if name == "args":
                return obj.args
            refuse(f"exceptions expose only .args, not .{name}")
        if kind is type and obj in CLASS_ATTRIBUTES and name in CLASS_ATTRIBUTES[obj]:
            return getattr(obj, name)
        refuse(f"reading .{name} of a {_kind_name(obj)} is not allowed")

    def _tenant_attribute(self, obj: TenantObject, name: str, default: tuple[Any, ...]) -> Any:
        exports = getattr(type(obj), "_exports", None)
        if exports is not None and name not in exports:
            refuse = self.state.refuse
            refuse(f"{obj!r} has no attribute {name!r} "
                   f"(it exposes only: {', '.join(sorted(exports))})")
        try:
            value = getattr(obj, name)
        except AttributeError:
            return self._missing(type(obj), name, default)
        if isinstance(value, NEVER_HANDED_OUT) and not _is_exception_class(value):
            self.state.refuse(f"{type(obj).__name__}.{name} would hand out a {_kind_name(value)}")
        return value

    @staticmethod
    def _missing(kind: type, name: str, default: tuple[Any, ...]) -> Any:
        if default:
            return default[0]
        raise AttributeError(f"{kind.__name__!r} object has no attribute {name!r}")

    def hasattr_(self, obj: Any, name: Any) -> bool:
        """The `hasattr` builtin through the guard: probing a forbidden name is a violation too."""
        try:
            self.getattr_(obj, name)
        except AttributeError:
            return False
        return True

    def getitem_(self, obj: Any, key: Any) -> Any:
        """RestrictedPython's `_getitem_`: `obj[key]` on plain containers and TenantObjects only."""
        if type(obj) in SUBSCRIPTABLE or isinstance(obj, TenantObject):
            return obj[key]
        self.state.refuse(f"subscripting a {_kind_name(obj)} is not allowed")

    def write_(self, obj: Any) -> Any:
        """RestrictedPython's `_write_`: only the action's lists, dicts and sets are writable."""
        if type(obj) in WRITABLE:
            return obj
        # SECURITY: event, api and facade modules are shared, read-only views; writing to them would
        # let one action change what another sees (or what the trusted side does).
        self.state.refuse(f"modifying this {_kind_name(obj)} is not allowed (only the action's own "
                          "lists, dicts and sets can be changed)")

    def import_(self, facades: dict[str, Any]) -> Callable[..., Any]:
        """The guarded `__import__`: only returns this run's facade modules, never a real module."""
        refuse = self.state.refuse

        def __import__(name: Any, globals: Any = None, locals: Any = None,
                       fromlist: Any = (), level: int = 0) -> Any:
            if type(name) is not str or level != 0:
                refuse("only absolute imports of allowed modules are possible")
            top = name.partition(".")[0]
            if name not in facades or top not in facades:
                refuse(f"import of {name!r} is not allowed")
            # `import a.b` binds `a`; `from a.b import c` wants `a.b` itself.
            return facades[name] if fromlist else facades[top]

        return __import__

    def trap(self, name: str) -> Callable[..., NoReturn]:
        """A stand-in for a builtin actions may not use: calling it is a violation."""
        refuse = self.state.refuse

        def forbidden(*args: Any, **kwargs: Any) -> NoReturn:
            refuse(f"{name}() is not available in actions")

        forbidden.__name__ = name
        return forbidden


def _is_exception_class(value: Any) -> bool:
    # Exception classes (re.error, ...) may be handed out for `except`; the guard refuses reading
    # any attribute of a class, so their internals stay out of reach like builtin ValueError's.
    return isinstance(value, type) and issubclass(value, BaseException)


def _kind_name(obj: Any) -> str:
    if isinstance(obj, type):
        return f"class ({obj.__name__})"
    if isinstance(obj, types.ModuleType):
        return "module"
    return f"{type(obj).__name__} object"


_INPLACE: dict[str, Callable[[Any, Any], Any]] = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "<<=": operator.ilshift,
    ">>=": operator.irshift, "|=": operator.ior, "^=": operator.ixor, "&=": operator.iand,
    "@=": operator.imatmul,
}


def inplacevar(op: str, target: Any, value: Any) -> Any:
    """RestrictedPython's `_inplacevar_`: `x op= y` for a plain name `x`."""
    return _INPLACE[op](target, value)


def apply(func: Any, *args: Any, **kwargs: Any) -> Any:
    """RestrictedPython's `_apply_`: a call written with `*args` or `**kwargs`."""
    return func(*args, **kwargs)


SAFE_BUILTIN_NAMES = (
    "abs", "all", "any", "ascii", "bin", "bool", "bytes", "callable", "chr", "complex", "dict",
    "divmod", "enumerate", "filter", "float", "frozenset", "hash", "hex", "int", "isinstance",
    "issubclass", "iter", "len", "list", "map", "max", "min", "next", "oct", "ord", "pow", "range",
    "repr", "reversed", "round", "set", "slice", "sorted", "str", "sum", "tuple", "zip",
    "ArithmeticError", "AssertionError", "AttributeError", "BaseException", "Exception",
    "ImportError", "IndexError", "KeyError", "LookupError", "MemoryError", "NameError",
    "NotImplementedError", "OverflowError", "RecursionError", "RuntimeError", "StopIteration",
    "TypeError", "UnicodeDecodeError", "UnicodeEncodeError", "UnicodeError", "ValueError",
    "ZeroDivisionError",
)

# Builtins tenant code may not use; naming one that is not bound in the action is refused when the
# action compiles, and calling one at run time is a violation.
FORBIDDEN_BUILTIN_NAMES = (
    "open", "eval", "exec", "compile", "globals", "locals", "vars", "dir", "type", "object",
    "super", "breakpoint", "input", "help", "setattr", "delattr", "memoryview", "bytearray",
    "classmethod", "staticmethod", "property", "exit", "quit", "id", "copyright", "credits",
    "license", "aiter", "anext", "format", "ExceptionGroup", "BaseExceptionGroup",
)


def new_globals(console: Console, *, state: RunState | None = None,
                facades: dict[str, Any] | None = None) -> dict[str, Any]:
    """Fresh restricted globals for one run: builtins, the guards, `_print_` wired to `console`.

    `state` collects the run's violations (a new one when omitted); `facades` maps importable names
    (e.g. "json", "urllib.parse") to facade objects (this run's `sandbox.facades.facade_modules()`
    when omitted).
    """
    from sandbox.facades import facade_modules

    guards = Guards(state if state is not None else RunState())
    restricted: dict[str, Any] = {name: getattr(builtins, name) for name in SAFE_BUILTIN_NAMES}
    restricted.update({name: guards.trap(name) for name in FORBIDDEN_BUILTIN_NAMES})
    restricted.update({"None": None, "True": True, "False": False})
    restricted["getattr"] = guards.getattr_
    restricted["hasattr"] = guards.hasattr_
    restricted["__import__"] = guards.import_(facades if facades is not None else facade_modules())
    return {
        # SECURITY: a dict (not the builtins module) so the interpreter resolves every builtin name,
        # including `__import__` used by `import`, in this restricted table only.
        "__builtins__": restricted,
        "__name__": "action",
        "__metaclass__": guards.trap("class"),
        "_getattr_": guards.getattr_,
        "_getitem_": guards.getitem_,
        "_getiter_": iter,
        "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
        "_unpack_sequence_": guarded_unpack_sequence,
        "_write_": guards.write_,
        "_inplacevar_": inplacevar,
        "_apply_": apply,
        "_print_": console.print_factory(guards.state.refuse),
    }
