"""kombu's Redis transport, hardened against malformed messages on the queue.

kombu 5.7 decodes each popped queue item as a JSON envelope ({"body", "headers", "properties"})
outside any error handling: one item that is not such an envelope (anyone who can write to Redis can
LPUSH one) ends the worker with "Unrecoverable error: JSONDecodeError". Here such an item is logged
and dropped, and the worker keeps serving. Malformed *bodies* in a well-formed envelope (not JSON,
pickle, unknown task) are already rejected and logged by Celery.

Selected by `broker_transport` in `broker.app.celery_config`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport.virtual import Empty

log = logging.getLogger("actionrunner.transport")

# What kombu raises for an envelope it cannot use: not JSON / not UTF-8 (ValueError), not an
# object or missing fields (TypeError, KeyError, AttributeError).
_MALFORMED = (ValueError, TypeError, KeyError, AttributeError)


class GuardedChannel(kombu_redis.Channel):
    """A Redis channel that drops (with an error log line) queue items that are not envelopes."""

    def _brpop_read(self, **options: Any) -> bool:
        # kombu 5.7.0's Channel._brpop_read (pinned in pyproject.toml), with the envelope checked
        # before delivery: a message delivered is registered as unacknowledged, so a bad one that got
        # that far would be restored and dropped again after every visibility timeout, forever.
        try:
            try:
                dest__item = self.client.parse_response(self.client.connection, "BRPOP", **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            if not dest__item:
                raise Empty()
            dest, item = dest__item
            dest = kombu_redis.bytes_to_str(dest).rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            payload = checked_envelope(item, dest)
            if payload is None:
                raise Empty()
            self.connection._deliver(payload, dest)
            return True
        finally:
            self._in_poll = None
            self._flush_brpop_reauth()

    def _get(self, queue: str, timeout: float | None = None) -> Any:
        try:
            return super()._get(queue, timeout)
        except _MALFORMED as exc:
            log.error("dropped a malformed message from queue %r (not a kombu envelope): %s: %s",
                      queue, type(exc).__name__, exc)
            raise Empty() from None


def checked_envelope(item: bytes | str, queue: str) -> dict[str, Any] | None:
    """The kombu envelope in `item`, or None (after one error log line) when it is not one:
    a JSON object with a str `body` (base64 when its properties say so) and a `properties` object
    holding a `delivery_tag` and a `delivery_info` object."""
    # SECURITY: without this, one hand-written item on the queue stops every worker that pops it
    # (kombu raises out of the event loop: a denial of service for every tenant).
    try:
        payload = json.loads(item)
        if not isinstance(payload, dict):
            raise ValueError(f"a JSON {type(payload).__name__}, not an object")
        properties = payload.get("properties")
        if not isinstance(properties, dict) or not isinstance(properties.get("delivery_info"), dict):
            raise ValueError("no properties.delivery_info object")
        if not isinstance(properties.get("delivery_tag"), str):
            raise ValueError("no properties.delivery_tag string")
        body = payload.get("body")
        if not isinstance(body, str):
            raise ValueError("no body string")
        if properties.get("body_encoding") == "base64":
            base64.b64decode(body, validate=True)
        if not isinstance(payload.get("headers", {}), dict):
            raise ValueError("headers is not an object")
    except (ValueError, binascii.Error) as exc:
        log.error("dropped a malformed message from queue %r (not a kombu envelope): %s",
                  queue, exc)
        return None
    return payload


class GuardedRedisTransport(kombu_redis.Transport):
    """kombu's Redis transport with `GuardedChannel`."""

    Channel = GuardedChannel
