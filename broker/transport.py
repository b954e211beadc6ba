"""kombu's Redis transport, hardened against malformed messages on the queue and against losing a
message taken by a worker that is killed.

kombu 5.7 decodes each popped queue item as a JSON envelope ({"body", "headers", "properties"})
outside any error handling: one item that is not such an envelope (anyone who can write to Redis can
LPUSH one) ends the worker with "Unrecoverable error: JSONDecodeError". Here such an item is logged
and dropped, and the worker keeps serving. Malformed *bodies* in a well-formed envelope (not JSON,
pickle, unknown task) are already rejected and logged by Celery.

It also closes kombu's window for losing a message: kombu pops with BRPOP and only then, in a second
round trip, registers the message as unacknowledged, so a worker SIGKILLed between the two loses it
for good (celery/kombu#305). Here a consumer takes a message with `fetch.lua`, which pops it AND
registers it in kombu's own unacked structures in one atomic step; kombu's visibility-timeout
restore then brings back the job of a worker that dies at any later point. When every queue is empty
the channel blocks on a non-destructive peek (BLMOVE q q RIGHT RIGHT: pop and push back in one atomic
command, so nothing is in flight) of its first queue, for at most `brpop_timeout` (1 s), and then
fetches again: a job on the first queue wakes an idle worker at once, a job on another queue (or
priority) within about a second. Needs Redis >= 6.2 (BLMOVE).

Selected by `broker_transport` in `broker.app.celery_config`.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import time
from importlib import resources
from typing import Any

from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.transport.virtual import Empty
from redis.exceptions import NoScriptError

log = logging.getLogger("actionrunner.transport")

FETCH_SCRIPT = resources.files("broker").joinpath("fetch.lua").read_text("utf-8")
FETCH_SHA = hashlib.sha1(FETCH_SCRIPT.encode("utf-8")).hexdigest()

# What kombu raises for an envelope it cannot use: not JSON / not UTF-8 (ValueError), not an
# object or missing fields (TypeError, KeyError, AttributeError).
_MALFORMED = (ValueError, TypeError, KeyError, AttributeError)


class RegisteredQoS(kombu_redis.QoS):
    """kombu's Redis QoS, minus the unacked write for a message `fetch.lua` already registered."""

    def append(self, message: Any, delivery_tag: str) -> None:
        if delivery_tag in self.channel._registered_tags:
            # fetch.lua wrote the very entry kombu's QoS.append would write; only the in-process
            # bookkeeping (delivered, for ack / reject / restore at shutdown) is left to do.
            virtual.QoS.append(self, message, delivery_tag)
        else:
            super().append(message, delivery_tag)


class GuardedChannel(kombu_redis.Channel):
    """A Redis channel that takes messages with `fetch.lua` (no message is ever in flight outside
    both its queue and kombu's unacked hash) and drops (with an error log line) queue items that are
    not envelopes."""

    QoS = RegisteredQoS
    # kombu holds its restore sweep's lock (unacked_mutex) for 300 s by default: a worker SIGKILLed
    # during a sweep would stop every restore, so every dead worker's job, for five minutes. The
    # lock only saves duplicate work (restore_by_tag is a WATCH transaction: a message is restored
    # once even by two concurrent sweeps), so it may expire soon. A transport option still wins.
    unacked_mutex_expire = 15

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._fetch_command: str | None = None  # the pending "EVALSHA" or "BLMOVE"; None: BRPOP
        self._fetch_keys: list[str] = []  # the queue keys of the pending EVALSHA, unprefixed
        self._peek_next = False  # the last fetch found every queue empty: block on a peek next
        self._no_ack_queues: set[str] = set()
        self._registered_tags: set[str] = set()  # registered by fetch.lua, being delivered now
        super().__init__(*args, **kwargs)

    def basic_consume(self, queue: str, no_ack: bool = False, *args: Any, **kwargs: Any) -> Any:
        # A no_ack consumer never acknowledges: a message registered as unacked for it would be
        # restored and delivered again after every visibility timeout. Such channels keep BRPOP.
        if no_ack:
            self._no_ack_queues.add(queue)
        else:
            self._no_ack_queues.discard(queue)
        return super().basic_consume(queue, no_ack, *args, **kwargs)

    def _brpop_start(self, timeout: float | None = None) -> None:
        if any(queue in self._no_ack_queues for queue in self._active_queues):
            self._fetch_command = None
            super()._brpop_start(timeout)
            return
        if timeout is None:
            timeout = self.brpop_timeout
        queues = self._queue_cycle.consume(len(self.active_queues))
        if not queues:
            return
        prefix = self.global_keyprefix or ""
        if self._peek_next:
            # Block until the first queue holds something, taking nothing: BLMOVE from a list to
            # its own right end pops and pushes back in one atomic command.
            key = prefix + self._q_for_pri(self._active_queues[0], 0)
            command: list[Any] = ["BLMOVE", key, key, "RIGHT", "RIGHT", timeout or 0]
        else:
            # Pop and register as unacked in ONE atomic step: with BRPOP a worker killed before
            # its next round trip (QoS.append) loses the job for good.
            keys = [self._q_for_pri(queue, pri) for pri in self.priority_steps for queue in queues]
            self._fetch_keys = keys
            command = ["EVALSHA", FETCH_SHA, 2 + len(keys), prefix + self.unacked_index_key,
                       prefix + self.unacked_key, *(prefix + key for key in keys),
                       repr(time.time())]
        self._in_poll = self.client.connection
        self._brpop_sent_at = time.monotonic()
        self._fetch_command = command[0]
        self.client.connection.send_command(*command)

    def _brpop_read(self, **options: Any) -> bool:
        command = self._fetch_command
        if command is None:
            return self._guarded_brpop_read(**options)
        try:
            try:
                reply = self.client.parse_response(self.client.connection, command, **options)
            except self.connection_errors:
                self.client.connection.disconnect()
                raise
            except NoScriptError:  # a new or restarted Redis: load the script, fetch next time
                with self.conn_or_acquire() as client:
                    client.script_load(FETCH_SCRIPT)
                raise Empty() from None
            if command == "BLMOVE":  # the first queue holds something, or the wait timed out
                self._peek_next = False
                raise Empty()
            if not reply:  # every queue was empty
                self._peek_next = True
                raise Empty()
            index, item, tag = reply
            dest = self._fetch_keys[int(index) - 3].rsplit(self.sep, 1)[0]
            self._queue_cycle.rotate(dest)
            self._deliver_fetched(item, dest, kombu_redis.bytes_to_str(tag) if tag else None)
            return True
        finally:
            self._in_poll = None
            self._fetch_command = None
            self._flush_brpop_reauth()

    def _deliver_fetched(self, item: bytes, dest: str, tag: str | None) -> None:
        """Deliver an item fetch.lua took (and, when `tag`, registered as unacked under it)."""
        payload = checked_envelope(item, dest)
        if payload is not None and payload["properties"]["delivery_tag"] != tag:
            log.error("dropped a malformed message from queue %r (not a kombu envelope): no "
                      "string exchange and routing_key in properties.delivery_info", dest)
            payload = None
        if payload is None or tag is None:
            if tag is not None:
                # SECURITY: a registered bad message would be restored and dropped again after
                # every visibility timeout, forever.
                self.qos._remove_from_indices(tag).execute()
            raise Empty()
        self._registered_tags.add(tag)
        try:
            self.connection._deliver(payload, dest)
        finally:
            self._registered_tags.discard(tag)

    def _guarded_brpop_read(self, **options: Any) -> bool:
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
