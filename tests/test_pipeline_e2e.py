"""The pipeline end to end: a real Redis, a real `actionrunner worker` process, the real jail.

Given a deployment of its own (key prefix and queues), each test drives the orchestrator's client
as a user would: upload, bind, execute, resume, roll back, and feed it bad input.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from broker.app import EXECUTE_TASK
from broker.client import ActionRunnerClient
from broker.replies import wait_reply
from sandbox.errors import (
    CompileFailed, ExecutionTimeout, InvalidEvent, InvalidInput, NothingBound, ResumeRefused,
    UnknownAction, UnknownTenant,
)
from sandbox.resume import ResumeSigner, load_key
from tests.support.workers import COUNTER, TEST_SECRET_KEY, WorkerProcess, deployment

pytestmark = pytest.mark.redis

REDIRECT = '''
def on_execute_post_challenge(event, api):
    api.cache.set("before", "1")
    api.redirect.send_user_to("https://check.example/")

def on_continue_post_challenge(event, api):
    print("continued with " + str(event.request.ip))
    api.transaction.set_result_url("https://after.example/")
'''


def event(correlation_id: str = "c1", **request: Any) -> dict[str, Any]:
    return {"user": {"user_id": "auth0|u1", "email": "u1@example.com"},
            "request": {"ip": "198.51.100.7", **request},
            "transaction": {"correlation_id": correlation_id, "state": "st-1"}}


@pytest.fixture(scope="module")
def pipeline(redis_url: str) -> Iterator[tuple[ActionRunnerClient, WorkerProcess]]:
    with deployment(redis_url, workers=1, concurrency=2) as (client, workers):
        yield client, workers[0]


@pytest.fixture
def client(pipeline: tuple[ActionRunnerClient, WorkerProcess]) -> ActionRunnerClient:
    return pipeline[0]


def tenant() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def result_url(result: Any) -> tuple[str, dict[str, Any]]:
    urls = [c for c in result.commands if c.type == "transaction.set_result_url"]
    assert urls, result
    return urls[-1].url, urls[-1].query


def test_uploaded_and_bound_action_runs_and_its_cache_write_is_stored(client: ActionRunnerClient) -> None:
    t = tenant()
    version = client.upload_action(t, "counter", COUNTER, {"who": t})
    client.bind(t, [("counter", version.version)])

    result = client.execute(t, event("first"))

    assert result.status == "completed"
    assert result_url(result) == (f"https://done.example/{t}", {"count": "1"})
    assert [(a.name, a.version, a.outcome) for a in result.actions] == [("counter", 1, "ok")]
    snapshot = client.stores.cache.snapshot(t, client.settings.trigger, now_ms=int(time.time() * 1000))
    assert snapshot["n-first"]["value"] == "1"
    assert [v.name for v in client.list_actions(t)] == ["counter"]


def test_upload_that_does_not_compile_is_refused_with_line_and_nothing_stored(
    client: ActionRunnerClient,
) -> None:
    t = tenant()
    with pytest.raises(CompileFailed) as caught:
        client.upload_action(t, "broken", "def on_execute_post_challenge(event, api):\n    x = (\n")
    assert caught.value.diagnostics and caught.value.diagnostics[0].line >= 2
    with pytest.raises(UnknownAction):
        client.versions(t, "broken")


def test_redirect_suspends_and_resume_runs_on_continue_once(client: ActionRunnerClient) -> None:
    t = tenant()
    client.bind(t, [("redirect", client.upload_action(t, "redirect", REDIRECT).version)])
    suspended = client.execute(t, event())
    assert suspended.status == "suspended" and suspended.resume is not None
    assert suspended.resume.state == "st-1"

    resumed = client.resume(t, suspended.resume, {"state": "st-1", "query": {}, "body": {}},
                            event(ip="203.0.113.9"))

    assert resumed.status == "completed"
    assert [c.type for c in resumed.commands] == ["transaction.set_result_url"]  # only new ones
    assert [log.message.strip() for log in resumed.logs] == ["continued with 203.0.113.9"]
    with pytest.raises(ResumeRefused):
        client.resume(t, suspended.resume, {"state": "st-1"}, event())


def test_a_resume_whose_worker_died_before_its_commit_can_be_retried_by_its_execution_only(
    client: ActionRunnerClient,
) -> None:
    t = tenant()
    client.bind(t, [("redirect", client.upload_action(t, "redirect", REDIRECT).version)])
    suspended = client.execute(t, event())
    assert suspended.resume is not None
    # What a worker that died between consuming the token and committing leaves behind: the resume
    # id consumed by execution "resume-1", no result stored for it.
    signer = ResumeSigner(load_key({"ACTIONRUNNER_SECRET_KEY": TEST_SECRET_KEY}))
    state = signer.verify(suspended.resume.token, now_s=time.time())
    assert client.stores.results.consume_resume(t, state.id, execution_id="resume-1",
                                                ttl_seconds=3600)
    request = {"state": "st-1", "query": {}, "body": {}}

    with pytest.raises(ResumeRefused):
        client.resume(t, suspended.resume, request, event(), execution_id="resume-2")
    retried = client.resume(t, suspended.resume, request, event(), execution_id="resume-1")

    assert retried.status == "completed"
    with pytest.raises(ResumeRefused):
        client.resume(t, suspended.resume, request, event(), execution_id="resume-3")


def test_resume_token_of_another_tenant_is_refused(client: ActionRunnerClient) -> None:
    a, b = tenant(), tenant()
    for t in (a, b):
        client.bind(t, [("redirect", client.upload_action(t, "redirect", REDIRECT).version)])
    suspended = client.execute(a, event())
    assert suspended.resume is not None
    with pytest.raises(ResumeRefused):
        client.resume(b, suspended.resume, {"state": "st-1"}, event())


def test_binding_an_older_version_rolls_back(client: ActionRunnerClient) -> None:
    t = tenant()
    sources = {n: COUNTER.replace("https://done.example/", f"https://v{n}.example/") for n in (1, 2)}
    v1 = client.upload_action(t, "counter", sources[1], {"who": t})
    v2 = client.upload_action(t, "counter", sources[2], {"who": t})
    assert [v.version for v in client.versions(t, "counter")] == [1, 2]

    client.bind(t, [("counter", v2.version)])
    assert result_url(client.execute(t, event("a")))[0].startswith("https://v2.example/")
    client.bind(t, [("counter", v1.version)])
    assert result_url(client.execute(t, event("b")))[0].startswith("https://v1.example/")


def test_same_execution_id_runs_once_and_returns_the_stored_result(client: ActionRunnerClient) -> None:
    t = tenant()
    client.bind(t, [("counter", client.upload_action(t, "counter", COUNTER, {"who": t}).version)])

    first = client.execute(t, event("same"), execution_id="exec-1")
    second = client.execute(t, event("same"), execution_id="exec-1")
    third = client.execute(t, event("same"), execution_id="exec-2")

    assert second == first and result_url(first)[1] == {"count": "1"}
    assert result_url(third)[1] == {"count": "2"}


def test_unknown_tenant_and_nothing_bound_are_clear_errors(client: ActionRunnerClient) -> None:
    with pytest.raises(UnknownTenant):
        client.execute(tenant(), event())
    t = tenant()
    client.upload_action(t, "counter", COUNTER, {"who": t})
    with pytest.raises(NothingBound):
        client.execute(t, event())


def test_invalid_event_is_refused_before_sending_naming_the_field(client: ActionRunnerClient) -> None:
    with pytest.raises(InvalidEvent) as caught:
        client.execute(tenant(), {"user": {"email": "x@example.com"}})
    assert caught.value.field == "user.user_id"


def test_ten_megabyte_event_is_refused_by_the_client_and_by_the_worker(
    client: ActionRunnerClient,
) -> None:
    t = tenant()
    client.bind(t, [("counter", client.upload_action(t, "counter", COUNTER, {"who": t}).version)])
    huge = event()
    huge["user"]["nickname"] = "x" * (10 * 1024 * 1024)
    with pytest.raises(InvalidEvent):
        client.execute(t, huge)

    # Put on the queue by hand, bypassing the client's check: the worker refuses it too.
    job = {"tenant": t, "event": huge, "execution_id": "by-hand"}
    job_id = uuid.uuid4().hex
    client.app.tasks[EXECUTE_TASK].apply_async(args=(job,), task_id=job_id, expires=30)
    reply = wait_reply(client.stores.client, client.settings.prefix, job_id,
                       deadline=time.monotonic() + 30, max_bytes=1024 * 1024)
    assert reply is not None and reply.ok is False and reply.error is not None
    assert reply.error.type == "InvalidEvent"

    assert client.execute(t, event()).status == "completed"  # the worker keeps serving


def test_malformed_messages_on_the_queue_are_dropped_with_a_log_line_and_worker_keeps_serving(
    pipeline: tuple[ActionRunnerClient, WorkerProcess], redis_url: str,
) -> None:
    client, worker = pipeline
    t = tenant()
    client.bind(t, [("counter", client.upload_action(t, "counter", COUNTER, {"who": t}).version)])
    queue = f"{client.settings.celery_keyprefix}{client.settings.queue}"
    envelope = {"content-type": "application/json", "content-encoding": "utf-8", "headers": {},
                "properties": {"delivery_tag": "t1", "body_encoding": "base64",
                               "delivery_info": {"exchange": "", "routing_key": "x"}}}
    pickled = {**envelope, "body": "gASVAAAAAA==", "content-type": "application/x-python-serialize",
               "headers": {"task": EXECUTE_TASK, "id": "p1"}}
    r = redis.Redis.from_url(redis_url)
    for item in (b"not json {", b"\xff\xfe", b"[1, 2]", json.dumps({**envelope, "body": "%%%"}),
                 json.dumps(pickled)):
        r.lpush(queue, item)

    assert client.execute(t, event()).status == "completed"
    assert r.llen(queue) == 0
    log = worker.log()
    assert log.count("dropped a malformed message") >= 4
    assert "Refusing to deserialize untrusted content of type pickle" in log


def test_crafted_tenant_names_are_refused(client: ActionRunnerClient) -> None:
    victim = tenant()
    client.bind(victim, [("counter", client.upload_action(victim, "counter", COUNTER,
                                                          {"who": victim}).version)])
    for crafted in (f"{victim}:x", f"{{{victim}}}", f"{victim}*", f"{victim}\x00", "a" * 65):
        with pytest.raises(InvalidInput):
            client.execute(crafted, event())


def test_tenants_share_nothing_cache_secrets_or_actions(client: ActionRunnerClient) -> None:
    a, b = tenant(), tenant()
    for t in (a, b):
        client.bind(t, [("counter", client.upload_action(t, "counter", COUNTER, {"who": t}).version)])
    # A writes keys that look like B's namespace or other keys; none of them reaches B.
    crafty = COUNTER + f'''
    for key in ["n-shared", "*", "{{{b}}}:cache:n-shared", "../{b}/n-shared", "n-shared\\x00"]:
        api.cache.set(key, "from-a")
'''
    client.bind(a, [("crafty", client.upload_action(a, "crafty", crafty, {"who": a}).version)])

    result_a = client.execute(a, event("shared"))
    # B's event claims to be A's (tenant.id): the job's tenant decides, not the event.
    result_b = client.execute(b, {**event("shared"), "tenant": {"id": a}})

    assert result_url(result_a) == (f"https://done.example/{a}", {"count": "1"})
    assert result_url(result_b) == (f"https://done.example/{b}", {"count": "1"})  # own secret, own cache
    now = int(time.time() * 1000)
    snapshot_b = client.stores.cache.snapshot(b, client.settings.trigger, now_ms=now)
    assert {k: v["value"] for k, v in snapshot_b.items()} == {"n-shared": "1"}
    with pytest.raises(UnknownAction):
        client.versions(b, "crafty")


def test_no_worker_answering_raises_execution_timeout_at_the_deadline(
    client: ActionRunnerClient, redis_url: str,
) -> None:
    # A deployment with its own queues that no worker serves (under the module's prefix: cleaned up).
    lonely = ActionRunnerClient(redis_url, prefix=f"{client.settings.prefix}:nobody")
    try:
        t = tenant()
        lonely.stores.registry.add_version(t, "counter", COUNTER, {"who": t})
        lonely.bind(t, [("counter", 1)])
        with pytest.raises(ExecutionTimeout):
            lonely.execute(t, event(), timeout=1.0)
    finally:
        lonely.close()


def test_secrets_and_events_never_reach_the_worker_log(
    pipeline: tuple[ActionRunnerClient, WorkerProcess],
) -> None:
    client, worker = pipeline
    t = tenant()
    secret = f"s3cret-{uuid.uuid4().hex}"
    client.bind(t, [("counter", client.upload_action(t, "counter", COUNTER, {"who": secret}).version)])
    result = client.execute(t, {**event("private"), "user": {"user_id": "u", "email": "pii@example.com"}})

    assert result_url(result)[0].endswith(secret)  # the action saw it; the log must not
    log = worker.log()
    assert "actionrunner.execute" in log  # the job did pass through this worker
    assert secret not in log and "pii@example.com" not in log
