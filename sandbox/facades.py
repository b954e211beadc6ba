"""The modules an action may import: facades, never the real modules.

Each facade is a `TenantObject` whose only readable attributes are listed in its `_exports`; every
callable it hands out is a bound method of a facade or a small wrapper, and every object a call
returns is a plain value (str, bytes, int, dict, datetime, ...) or another wrapper. So nothing
reachable from a facade leads to a real module, a frame, a code object, a class's internals, a
formatter that walks attributes, or the host's `random` generator. `re` flags are plain ints (not
`re.RegexFlag`, whose class would lead to `enum`).

The clock (`time.time()`, `datetime.datetime.now()`, `date.today()`) is the request's `now_ms`,
advancing with the run's own monotonic clock, so an action sees the time the flow gives it.
"""

from __future__ import annotations

import base64 as _base64
import hashlib as _hashlib
import hmac as _hmac
import json as _json
import math as _math
import urllib.parse as _parse
from collections.abc import Callable
from typing import Any, ClassVar

from sandbox.facades_datetime import Clock, DatetimeFacade
from sandbox.facades_re import ReFacade
from sandbox.visible import TenantObject


class Facade(TenantObject):
    """Base of every facade module; the guard lets tenant code read only `_exports`."""

    __slots__ = ()
    _name: ClassVar[str] = "?"
    _exports: ClassVar[frozenset[str]] = frozenset()

    def __repr__(self) -> str:
        return f"<module {self._name!r} (actionrunner facade)>"


class JsonFacade(Facade):
    """`json`: `dumps` and `loads` only."""

    __slots__ = ()
    _name = "json"
    _exports = frozenset({"dumps", "loads", "JSONDecodeError"})
    JSONDecodeError = ValueError  # what loads() raises; `except json.JSONDecodeError` works

    def dumps(self, obj: Any, *, indent: int | str | None = None, sort_keys: bool = False,
              separators: tuple[str, str] | None = None, ensure_ascii: bool = True,
              default: Callable[[Any], Any] | None = None) -> str:
        """`json.dumps` with the common keywords (no `cls`: no class of the caller's choosing)."""
        return _json.dumps(obj, indent=indent, sort_keys=sort_keys, separators=separators,
                           ensure_ascii=ensure_ascii, default=default)

    def loads(self, s: str | bytes) -> Any:
        """`json.loads`; a document that does not parse raises ValueError with the position."""
        try:
            return _json.loads(s)
        except _json.JSONDecodeError as exc:
            # SECURITY: JSONDecodeError carries .doc; re-raise a plain ValueError, message only.
            raise ValueError(str(exc)) from None


class MathFacade(Facade):
    """`math`: every public function and constant (C functions of floats and ints)."""

    __slots__ = ()
    _name = "math"
    _exports = frozenset(name for name in dir(_math) if not name.startswith("_"))

    def __getattr__(self, name: str) -> Any:
        if name in self._exports:
            return getattr(_math, name)  # C functions and float constants only
        raise AttributeError(name)


class TimeFacade(Facade):
    """`time`: `time()` and `time_ns()` on the action's clock; no `sleep`."""

    __slots__ = ("_clock",)
    _name = "time"
    _exports = frozenset({"time", "time_ns"})

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def time(self) -> float:
        """Seconds since the epoch on the action's clock (the request's now, advancing)."""
        return self._clock.seconds()

    def time_ns(self) -> int:
        """`time()` in nanoseconds."""
        return int(self._clock.seconds() * 1e9)


class Hash(TenantObject):
    """A hashlib (or hmac) object: `update`, `digest`, `hexdigest`, `copy` and its sizes."""

    __slots__ = ("_h",)

    def __init__(self, h: Any) -> None:
        self._h = h

    def update(self, data: bytes) -> None:
        self._h.update(data)

    def digest(self) -> bytes:
        return self._h.digest()

    def hexdigest(self) -> str:
        return self._h.hexdigest()

    def copy(self) -> Hash:
        return Hash(self._h.copy())

    @property
    def name(self) -> str:
        return self._h.name

    @property
    def digest_size(self) -> int:
        return self._h.digest_size

    @property
    def block_size(self) -> int:
        return self._h.block_size


HASH_NAMES = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512", "sha3_256", "sha3_512",
              "blake2b", "blake2s")


class HashConstructor(TenantObject):
    """`hashlib.sha256` and friends: `hashlib.sha256(b"...")`; usable as hmac's `digestmod`."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __call__(self, data: bytes = b"") -> Hash:
        return Hash(_hashlib.new(self.name, data))

    def __repr__(self) -> str:
        return f"<hashlib.{self.name}>"


class HashlibFacade(Facade):
    """`hashlib`: constructors of the listed algorithms, returning `Hash` wrappers."""

    __slots__ = HASH_NAMES
    _name = "hashlib"
    _exports = frozenset({*HASH_NAMES, "new", "algorithms_available", "algorithms_guaranteed"})
    algorithms_available = frozenset(HASH_NAMES)
    algorithms_guaranteed = frozenset(HASH_NAMES)

    def __init__(self) -> None:
        for name in HASH_NAMES:
            setattr(self, name, HashConstructor(name))

    def new(self, name: str, data: bytes = b"") -> Hash:
        """`hashlib.new(name, data)` for the listed algorithms only."""
        if name not in HASH_NAMES:
            raise ValueError(f"unsupported hash type {name!r}")
        return Hash(_hashlib.new(name, data))


def _digest_name(digestmod: Any) -> str:
    if isinstance(digestmod, HashConstructor):
        return digestmod.name
    if type(digestmod) is str and digestmod.lower() in HASH_NAMES:
        return digestmod.lower()
    raise ValueError("digestmod must be a hashlib constructor (hashlib.sha256) or its name")


class HmacFacade(Facade):
    """`hmac`: `new`, `digest`, `compare_digest`; `digestmod` is a hashlib constructor or name."""

    __slots__ = ()
    _name = "hmac"
    _exports = frozenset({"new", "digest", "compare_digest"})

    def new(self, key: bytes, msg: bytes | None = None, digestmod: Any = None) -> Hash:
        """`hmac.new(key, msg, digestmod)`; `digestmod` is required, as in Python 3.8+."""
        return Hash(_hmac.new(key, msg, _digest_name(digestmod)))

    def digest(self, key: bytes, msg: bytes, digest: Any) -> bytes:
        return _hmac.digest(key, msg, _digest_name(digest))

    def compare_digest(self, a: str | bytes, b: str | bytes) -> bool:
        return _hmac.compare_digest(a, b)


class _Functions(Facade):
    """A facade that re-exports plain functions of a real module, by name."""

    __slots__ = ()
    _module: ClassVar[Any] = None

    def __getattr__(self, name: str) -> Any:
        if name in self._exports:
            return getattr(self._module, name)  # functions taking and returning plain values
        raise AttributeError(name)


class Base64Facade(_Functions):
    """`base64`: the encode/decode functions (bytes in, bytes out)."""

    __slots__ = ()
    _name = "base64"
    _module = _base64
    _exports = frozenset({"b64encode", "b64decode", "urlsafe_b64encode", "urlsafe_b64decode",
                          "standard_b64encode", "standard_b64decode", "b32encode", "b32decode",
                          "b16encode", "b16decode"})


class ParseFacade(Facade):
    """`urllib.parse`: quoting, `urlencode`, splitting and joining URLs, query strings."""

    __slots__ = ()
    _name = "urllib.parse"
    _exports = frozenset({"quote", "quote_plus", "unquote", "unquote_plus", "urlencode", "urlparse",
                          "urlsplit", "urlunparse", "urlunsplit", "urljoin", "urldefrag",
                          "parse_qs", "parse_qsl"})

    def __getattr__(self, name: str) -> Any:
        if name in self._exports and name != "urlencode":
            return getattr(_parse, name)
        raise AttributeError(name)

    def urlencode(self, query: Any, doseq: bool = False, safe: str = "") -> str:
        """`urlencode` without `quote_via` (a callable of the caller's choosing)."""
        return _parse.urlencode(query, doseq=doseq, safe=safe)


class UrllibFacade(Facade):
    """`urllib`: only its `parse` submodule."""

    __slots__ = ("parse",)
    _name = "urllib"
    _exports = frozenset({"parse"})

    def __init__(self, parse: ParseFacade) -> None:
        self.parse = parse


def facade_modules(now_ms: int | None = None) -> dict[str, Facade]:
    """This run's importable modules by import name; its clock starts at `now_ms` (epoch ms)."""
    clock = Clock(now_ms)
    parse = ParseFacade()
    return {
        "json": JsonFacade(), "re": ReFacade(), "math": MathFacade(), "time": TimeFacade(clock),
        "datetime": DatetimeFacade(clock), "hashlib": HashlibFacade(), "hmac": HmacFacade(),
        "base64": Base64Facade(), "urllib": UrllibFacade(parse), "urllib.parse": parse,
    }


ALLOWED_IMPORTS: dict[str, frozenset[str]] = {
    name: type(facade)._exports for name, facade in facade_modules(0).items()
}
"""Import name -> the names `from <module> import ...` may take from it."""
