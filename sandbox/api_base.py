"""What every `api` namespace shares: the tenant-visible `ApiError`, the per-run state the
namespaces issue commands into, and the checks that turn tenant arguments into trusted plain data.

Tenant arguments are hostile: they may be instances of tenant-defined subclasses whose `__str__`,
`__len__` or `encode` lie. So checks test exact types (`type(x) is str`), and every value kept for a
command is rebuilt as plain JSON data (`to_plain`) before it is used.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar
from urllib.parse import urlsplit

from sandbox.event import EventView
from sandbox.models import Command
from sandbox.runner import ActionRequest
from sandbox.visible import TenantObject

MAX_DEPTH = 32  # nesting of JSON data an argument may have (a self-containing list has no end)


class ApiError(Exception):
    """Tenant code misused `api`: the message says what was wrong and what is accepted."""


class ApiState:
    """One handler run's state, shared by the namespaces of one `Api` (never handed to tenant code).

    `commands` in issue order; `cache` the working cache (the request's cache with this run's own
    writes applied); `side_effects` the number of cache writes applied.
    """

    __slots__ = ("request", "commands", "prompted", "redirected", "cache", "side_effects")

    def __init__(self, request: ActionRequest) -> None:
        self.request = request
        self.commands: list[Command] = []
        self.prompted = False
        self.redirected = False
        self.cache = {key: dict(record) for key, record in request.cache.items()}
        self.side_effects = 0

    def issue(self, command: Command) -> None:
        """Record `command` as issued (after every check on it passed)."""
        self.commands.append(command)


class Namespace(TenantObject):
    """Base of the `api` namespaces: holds the run's state; `_name` (e.g. "api.cache") is its repr.

    Subclasses list the attributes tenant code may read in `_exports` (enforced by sandbox.guards).
    """

    __slots__ = ("_state",)
    _name: ClassVar[str] = "api"
    # SECURITY: nothing is readable by tenant code unless a subclass lists it.
    _exports: ClassVar[frozenset[str]] = frozenset()

    def __init__(self, state: ApiState) -> None:
        self._state = state

    def __repr__(self) -> str:
        return self._name


def type_name(value: Any) -> str:
    """The name of `value`'s type, as an error message shows it."""
    return "event data" if isinstance(value, EventView) else type(value).__name__


def require_str(value: Any, where: str, *, empty_ok: bool = False) -> str:
    """`value` when it is a str (non-empty unless `empty_ok`) encodable as UTF-8; else ApiError."""
    if type(value) is not str:
        raise ApiError(f"{where} must be a string, got {type_name(value)}")
    if not value and not empty_ok:
        raise ApiError(f"{where} must be a non-empty string")
    _check_utf8(value, where)
    return value


def require_url(value: Any, where: str) -> str:
    """`value` when it is an absolute http(s) URL without whitespace; else ApiError."""
    url = require_str(value, where)
    parts = urlsplit(url)
    web = parts.scheme.lower() in ("http", "https") and bool(parts.netloc)
    if not web or any(char.isspace() for char in url):
        raise ApiError(
            f"{where} must be an absolute http:// or https:// URL without spaces, got {url!r:.200}"
        )
    return url


def string_map(value: Any, where: str) -> dict[str, str]:
    """`value` (None, a dict or event data) as a dict of str -> str; else ApiError."""
    if value is None:
        return {}
    data = to_plain(value, where)
    if type(data) is not dict:
        raise ApiError(f"{where} must be a dict of strings to strings, got {type_name(value)}")
    for key, item in data.items():
        if type(item) is not str:
            raise ApiError(f"{where}[{key!r}] must be a string, got {type(item).__name__}")
    return data


def json_object(value: Any, where: str) -> dict[str, Any]:
    """`value` (None, a dict or event data) as a plain JSON object; else ApiError."""
    if value is None:
        return {}
    data = to_plain(value, where)
    if type(data) is not dict:
        raise ApiError(f"{where} must be a dict, got {type_name(value)}")
    return data


def options_dict(value: Any, where: str, accepted: tuple[str, ...]) -> dict[str, Any]:
    """A camelCase options dict (None = {}) whose keys are all in `accepted`; else ApiError."""
    data = json_object(value, where)
    unknown = sorted(set(data) - set(accepted))
    if unknown:
        raise ApiError(
            f"{where} has unknown option(s) {', '.join(unknown)}; accepted: {', '.join(accepted)}"
        )
    return data


def to_plain(value: Any, where: str, depth: int = 0) -> Any:
    """A fresh copy of `value` as plain JSON data (dict with str keys, list, str, int, finite float,
    bool, None); tuples become lists and event data plain dicts. Raises ApiError naming the first
    part (`where`, then `[key]`/`[index]`) that is anything else, or nested deeper than MAX_DEPTH.
    """
    if depth > MAX_DEPTH:
        raise ApiError(f"{where} is nested more than {MAX_DEPTH} levels deep")
    kind = type(value)
    if value is None or kind is bool or kind is int:
        return value
    if kind is str:
        _check_utf8(value, where)
        return value
    if kind is float:
        if not math.isfinite(value):
            raise ApiError(f"{where} must be a finite number, got {value!r}")
        return value
    if isinstance(value, EventView):
        value = value.copy()
        kind = dict
    if kind is dict:
        plain = {}
        for key, item in value.items():
            if type(key) is not str:
                raise ApiError(
                    f"{where} has a key of type {type(key).__name__}; keys must be strings"
                )
            plain[key] = to_plain(item, f"{where}[{key!r}]", depth + 1)
        return plain
    if kind is list or kind is tuple:
        return [to_plain(item, f"{where}[{index}]", depth + 1) for index, item in enumerate(value)]
    raise ApiError(
        f"{where} must be JSON data (dict, list, str, int, float, bool or None), "
        f"got {type_name(value)}"
    )


def _check_utf8(text: str, where: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ApiError(f"{where} is not valid text (it contains a lone surrogate)") from None
