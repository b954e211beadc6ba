"""`event`: the read-only view of the trigger's event that tenant code receives (SPEC section 2).

Both `event.user.email` and `event["user"]["email"]` work; an absent field reads as None either way.
Nothing tenant code can reach is mutable: nested dicts come back as `EventView`, lists as tuples,
and `keys()`/`values()`/`items()` return fresh lists, so the wrapped data (the request's event)
never changes. `copy()` hands out a plain, deep-copied dict for code that wants one to edit.

The methods `get`, `keys`, `values`, `items` and `copy` shadow fields of the same names under
attribute access; such fields stay readable as `event["keys"]`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any

from sandbox.visible import TenantObject


_EDIT_HINT = " (use .copy() for an editable dict)"


class EventView(TenantObject):
    """A read-only view of one dict of the event; `path` (e.g. "event.user") names it in errors."""

    __slots__ = ("_data", "_path")

    def __init__(self, data: Mapping[str, Any], path: str = "event") -> None:
        # SECURITY: the only writes this object ever takes; every other write raises TypeError.
        object.__setattr__(self, "_data", data)
        object.__setattr__(self, "_path", path)

    # -- reading ---------------------------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        # Only called when normal lookup fails: fields, never our own slots or methods.
        if name.startswith("_"):
            # Python's protocols (copy, pickle, ...) look up dunders: they must not read as None.
            raise AttributeError(name)
        return self._wrap(self._data.get(name), name)

    def __getitem__(self, name: str) -> Any:
        return self._wrap(self._data.get(name), name)

    def get(self, name: str, default: Any = None) -> Any:
        """The field `name` (views for dicts, tuples for lists), or `default` when it is absent."""
        if name not in self._data:
            return default
        return self._wrap(self._data[name], name)

    def keys(self) -> list[str]:
        """The field names, as a fresh list."""
        return list(self._data.keys())

    def values(self) -> list[Any]:
        """The field values (views for dicts, tuples for lists), as a fresh list."""
        return [self._wrap(value, name) for name, value in self._data.items()]

    def items(self) -> list[tuple[str, Any]]:
        """(name, value) pairs (views for dicts, tuples for lists), as a fresh list."""
        return [(name, self._wrap(value, name)) for name, value in self._data.items()]

    def copy(self) -> dict[str, Any]:
        """A plain deep copy of this part of the event, to edit: edits never reach the event."""
        return copy.deepcopy(dict(self._data))

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._data.keys()))

    def __len__(self) -> int:
        return len(self._data)

    def __bool__(self) -> bool:
        return bool(self._data)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, EventView):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == other
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"EventView({self._data!r})"

    def _wrap(self, value: Any, name: str) -> Any:
        return _freeze(value, f"{self._path}.{name}")

    # -- refusing writes -------------------------------------------------------------------------

    def __setattr__(self, name: str, value: Any) -> None:
        raise TypeError(f"{self._path} is read-only: cannot set {name!r}{_EDIT_HINT}")

    def __delattr__(self, name: str) -> None:
        raise TypeError(f"{self._path} is read-only: cannot delete {name!r}")

    def __setitem__(self, name: str, value: Any) -> None:
        raise TypeError(f"{self._path} is read-only: cannot set {name!r}{_EDIT_HINT}")

    def __delitem__(self, name: str) -> None:
        raise TypeError(f"{self._path} is read-only: cannot delete {name!r}")


def _freeze(value: Any, path: str) -> Any:
    """`value` as tenant code may hold it: dicts as views, lists as tuples, scalars as they are."""
    # SECURITY: without this, tenant code would get the request's own dicts and lists and could
    # change what the rest of the action (and, in-process, the next action) sees.
    if isinstance(value, Mapping):
        return EventView(value, path)
    if isinstance(value, (list, tuple)):
        return tuple(_freeze(item, f"{path}[{index}]") for index, item in enumerate(value))
    return value

