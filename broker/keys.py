"""Every Redis key name actionrunner uses, built here and nowhere else.

Layout (``P`` is the operator's prefix, every other part is escaped with `part`)::

    P:{T}:actions           hash   action name -> last version number handed out (never reused)
    P:{T}:meta:N            hash   version -> JSON {"source_hash", "created_at_ms"} (kept versions)
    P:{T}:src:N             hash   version -> JSON {"source", "secrets"} (same versions as meta)
    P:{T}:bindings          hash   trigger -> JSON [[name, version], ...] (ordered)
    P:{T}:cache:G           hash   tenant's cache key -> JSON [expires_at_ms, value]
    P:{T}:result:E          string the committed result document of execution E
    P:{T}:resume:R          string the execution id that consumed resume id R (its owner)
    P:{T}:delivery:E        string how many times the job of execution E was delivered (INCR)
    P:reply:J               list   the worker's reply to job J (one item, expires; the client BLPOPs)

``T`` is the tenant, ``N`` an action name, ``G`` a trigger, ``E`` an execution id, ``R`` a resume
id, ``J`` a job (Celery task) id chosen by the client.

Why this shape:

- Escaping: each caller-supplied part is percent-encoded (UTF-8, everything outside
  ``[A-Za-z0-9_.~-]`` becomes ``%XX``, ``%`` included). So a part never contains ``:`` (it cannot
  forge another part), ``{``/``}`` (it cannot choose a Cluster hash slot), ``*?[]`` (it cannot widen
  a SCAN pattern) or a control byte, and the encoding is injective: two different names never share
  a key. Names are also validated upstream (1-64 chars of ``[A-Za-z0-9_.-]``), which makes the
  escaping a no-op for every valid name; the escaping is the second wall, not the first.
- The tenant is wrapped in ``{...}``: under Redis Cluster every key of one tenant hashes to one
  slot, so the commit transaction (result + cache) is legal there too.
- The cache is ONE hash per (tenant, trigger), with the tenant's raw key as the field. A hash field
  is opaque bytes that can name nothing but itself, so no key, however crafted (``:``, ``*``, ``{``,
  NUL, another tenant's prefix), can leave its (tenant, trigger) namespace; and one HGETALL is an
  atomic snapshot, which the 20-record / 8 KB limits need. Redis 7.0 has no per-field expiry
  (HPEXPIRE arrived in 7.4), so each field stores its ``expires_at``, readers filter expired
  records, every commit rewrites the hash without them, and PEXPIREAT on the hash is the latest
  record's expiry (an all-expired cache disappears by itself).
"""

from __future__ import annotations

from urllib.parse import quote


def part(value: str) -> str:
    """`value` escaped for use as one part of a key: injective, never contains ``:{}*?[]`` or ``%``
    unescaped, never a control byte. Lone surrogates are kept (encoded with ``surrogatepass``)."""
    # SECURITY: without this a tenant named "a}:x" or a trigger "t:cache:.." could address keys of
    # another tenant or trigger, or pick a Cluster slot.
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _tenant(prefix: str, tenant: str) -> str:
    return f"{prefix}:{{{part(tenant)}}}"


def actions(prefix: str, tenant: str) -> str:
    """Hash: action name -> last version number handed out."""
    return f"{_tenant(prefix, tenant)}:actions"


def action_meta(prefix: str, tenant: str, name: str) -> str:
    """Hash: version -> JSON metadata of one kept version of action `name`."""
    return f"{_tenant(prefix, tenant)}:meta:{part(name)}"


def action_source(prefix: str, tenant: str, name: str) -> str:
    """Hash: version -> JSON source and secrets of one kept version of action `name`."""
    return f"{_tenant(prefix, tenant)}:src:{part(name)}"


def bindings(prefix: str, tenant: str) -> str:
    """Hash: trigger -> JSON ordered list of [name, version] bound to it."""
    return f"{_tenant(prefix, tenant)}:bindings"


def cache(prefix: str, tenant: str, trigger: str) -> str:
    """Hash: the (tenant, trigger) cache; field = tenant's key, value = JSON [expires_at_ms, value].
    """
    return f"{_tenant(prefix, tenant)}:cache:{part(trigger)}"


def result(prefix: str, tenant: str, execution_id: str) -> str:
    """String: the committed result document of one execution."""
    return f"{_tenant(prefix, tenant)}:result:{part(execution_id)}"


def resume(prefix: str, tenant: str, resume_id: str) -> str:
    """String: the execution id that consumed the resume id (present once consumed)."""
    return f"{_tenant(prefix, tenant)}:resume:{part(resume_id)}"


def delivery(prefix: str, tenant: str, execution_id: str) -> str:
    """String (integer): how many times the job of one execution was delivered to a worker."""
    return f"{_tenant(prefix, tenant)}:delivery:{part(execution_id)}"


def reply(prefix: str, job_id: str) -> str:
    """List: the reply to one job, pushed by the worker, popped by the waiting client."""
    return f"{prefix}:reply:{part(job_id)}"
