"""The worker's fetch (broker/transport.py + broker/fetch.lua) on real Redis: a message taken off a
queue is registered as unacknowledged in the same atomic step, so a consumer that dies right after
taking it does not lose it; kombu's visibility-timeout restore brings it back.

With kombu's stock BRPOP fetch, the first test's message would be in no queue and in no unacked
entry after the consumer read it: lost for good (celery/kombu#305).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import redis
from kombu import Connection, Queue

from broker.transport import FETCH_SCRIPT

pytestmark = [pytest.mark.redis]

QUEUE = "jobs"


@contextmanager
def _connection(redis_url: str, prefix: str, **options: Any) -> Iterator[Connection]:
    conn = Connection(redis_url, transport="broker.transport:GuardedRedisTransport",
                      transport_options={"global_keyprefix": f"{prefix}:celery:", **options})
    try:
        yield conn
    finally:
        conn.release()


def _publish(conn: Connection, body: dict[str, Any]) -> None:
    conn.Producer(serializer="json").publish(body, routing_key=QUEUE, declare=[Queue(QUEUE)])


def test_a_consumer_that_dies_right_after_the_fetch_leaves_the_job_for_the_restore(
    redis_url: str, redis_prefix: str,
) -> None:
    raw = redis.Redis.from_url(redis_url)
    keyprefix = f"{redis_prefix}:celery:"
    with _connection(redis_url, redis_prefix) as conn:
        _publish(conn, {"job": 1})
        raw.script_load(FETCH_SCRIPT)  # as the channel does when Redis answers NOSCRIPT
        channel = conn.channel()
        channel.basic_consume(QUEUE, no_ack=False, callback=lambda message: None,
                              consumer_tag="doomed")
        # The consumer sends its fetch and reads the reply off the socket, then "dies" before it
        # hands the message on: the window in which a SIGKILL used to lose the job.
        channel.connection.cycle._register_BRPOP(channel)  # connects and sends the fetch
        reply = channel.client.parse_response(channel.client.connection, "EVALSHA")
        channel.client.connection.disconnect()  # dead: the message never reaches a callback
        assert reply is not None and json.loads(reply[1])["body"]
        assert raw.llen(keyprefix + QUEUE) == 0
        unacked = raw.hgetall(keyprefix + "unacked")
        assert len(unacked) == 1 and raw.zcard(keyprefix + "unacked_index") == 1
        message, exchange, routing_key = json.loads(next(iter(unacked.values())))
        assert (exchange, routing_key) == ("", QUEUE)

    # Another worker's restore sweep (visibility timeout 0: everything taken is overdue) puts it
    # back on the queue, marked redelivered, and a consumer gets it.
    with _connection(redis_url, redis_prefix, visibility_timeout=0) as conn:
        queue = conn.SimpleQueue(QUEUE)
        queue.channel.qos.restore_visible(interval=1)
        assert raw.hlen(keyprefix + "unacked") == 0
        got = queue.get(timeout=10)
        assert got.payload == {"job": 1}
        assert got.delivery_info.get("redelivered") is True
        got.ack()
        assert raw.hlen(keyprefix + "unacked") == 0
        queue.close()
    raw.close()


def test_a_malformed_item_is_dropped_and_not_left_to_be_restored(
    redis_url: str, redis_prefix: str,
) -> None:
    raw = redis.Redis.from_url(redis_url)
    keyprefix = f"{redis_prefix}:celery:"
    with _connection(redis_url, redis_prefix) as conn:
        queue = conn.SimpleQueue(QUEUE)
        # Registrable by fetch.lua (string tag, exchange, routing key) but no body: not an envelope.
        bad = {"properties": {"delivery_tag": "forged",
                              "delivery_info": {"exchange": "", "routing_key": QUEUE}}}
        raw.lpush(keyprefix + QUEUE, json.dumps(bad), "not json at all")
        _publish(conn, {"job": "good"})
        got = queue.get(timeout=10)
        assert got.payload == {"job": "good"}
        got.ack()
        assert raw.hgetall(keyprefix + "unacked") == {}
        assert raw.llen(keyprefix + QUEUE) == 0
        queue.close()
    raw.close()


def test_an_idle_consumer_wakes_for_a_job_published_after_it_found_the_queue_empty(
    redis_url: str, redis_prefix: str,
) -> None:
    with _connection(redis_url, redis_prefix) as conn:
        queue = conn.SimpleQueue(QUEUE)
        with pytest.raises(queue.Empty):
            queue.get(timeout=0.3)  # found empty: the channel now blocks on its peek
        _publish(conn, {"job": "late"})
        got = queue.get(timeout=10)
        assert got.payload == {"job": "late"}
        got.ack()
        queue.close()


def test_a_fresh_redis_without_the_script_loaded_still_serves() -> None:
    from tests.support.redis_server import PrivateRedis, cleanup_private, redis_server_binary

    if redis_server_binary() is None:
        pytest.skip("NO redis-server binary: the NOSCRIPT path did NOT run")
    server = PrivateRedis().start()  # its own: flushing the shared Redis's scripts would hit others
    try:
        with _connection(server.url, "fresh") as conn:
            queue = conn.SimpleQueue(QUEUE)
            _publish(conn, {"job": "first"})
            got = queue.get(timeout=10)  # NOSCRIPT on the first fetch: loaded, then fetched
            assert got.payload == {"job": "first"}
            got.ack()
            queue.close()
    finally:
        cleanup_private(server)
