"""The marker for objects tenant code may read public attributes of.

The policy's attribute guard (`sandbox.policy`) lets tenant code read a public attribute only on a
short allow-list of plain value types and on instances of `TenantObject`. Every object the trigger
hands to tenant code (`event`, `api` and its namespaces, cache records, facade modules) derives from
it; nothing else does.
"""

from __future__ import annotations


class TenantObject:
    """Base of every object handed to tenant code whose public attributes tenant code may read."""

    __slots__ = ()
