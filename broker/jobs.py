"""The job document the client sends: checked here once, sent as ONE JSON string, parsed by the
worker straight from that string (`worker.tasks.parse_job`), so nobody encodes or decodes it twice.

    {"tenant": str, "execution_id": str, ["resume": {...}, "continue_request": {...},] "event": {...}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from sandbox.errors import InvalidEvent, InvalidInput
from sandbox.limits import Limits
from sandbox.models import Event, event_to_dict, parse_event


def event_json(event: Event | Mapping[str, Any] | str | bytes, limits: Limits) -> str:
    """The event as snake_case JSON text, after checking its size (`limits.event_max_bytes`, as
    given and as sent) and its fields. Raises InvalidEvent naming the field or the size."""
    limit = limits.event_max_bytes
    if isinstance(event, Event):
        parsed = event
    else:
        if isinstance(event, (str, bytes)):
            raw = event.encode("utf-8", "surrogatepass") if isinstance(event, str) else event
        else:
            try:
                raw = json.dumps(event, separators=(",", ":")).encode("utf-8", "surrogatepass")
            except (TypeError, ValueError) as exc:
                raise InvalidEvent(f"not JSON data: {exc}", source="event") from None
        if len(raw) > limit:
            raise InvalidEvent(f"{len(raw)} bytes, over the limit of {limit} bytes",
                               source="event", field="(size)")
        if isinstance(event, (str, bytes)):
            try:
                event = json.loads(raw)
            except ValueError as exc:
                raise InvalidEvent(f"not JSON: {exc}", source="event") from None
        parsed = parse_event(event)
    text = json.dumps(event_to_dict(parsed), separators=(",", ":"))
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > limit:
        raise InvalidEvent(f"{size} bytes, over the limit of {limit} bytes", source="event",
                           field="(size)")
    return text


def job_json(fields: dict[str, Any], event: str) -> str:
    """The job document: `fields` (at least one, never "event") plus the event JSON text from
    `event_json`, spliced in without encoding it again. Raises InvalidInput for fields that are not
    JSON data."""
    if not fields or "event" in fields:
        raise ValueError("job fields must be non-empty and must not hold the event")
    try:
        head = json.dumps(fields, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidInput(f"not JSON data: {exc}", field="tenant") from None
    return f'{head[:-1]},"event":{event}}}'
