"""Horizontal scale: three worker processes share 1,000 jobs from several tenants.

Every job must come back with its own tenant's result (the action echoes the tenant's own secret and
the job's correlation id), and every worker must have served a share of them.
"""

from __future__ import annotations

import collections
import uuid

import pytest

from tests.support.workers import deployment

pytestmark = [pytest.mark.redis, pytest.mark.slow]

JOBS = 1000
TENANTS = 5

ECHO = '''
def on_execute_post_challenge(event, api):
    api.transaction.set_result_url(
        "https://done.example/" + event.secrets.who, {"job": event.transaction.correlation_id})
'''


def test_three_workers_share_a_thousand_jobs_and_each_gets_its_own_tenants_result(
    redis_url: str,
) -> None:
    with deployment(redis_url, workers=3, concurrency=1) as (client, workers):
        tenants = [f"scale-{i}-{uuid.uuid4().hex[:6]}" for i in range(TENANTS)]
        for t in tenants:
            client.bind(t, [("echo", client.upload_action(t, "echo", ECHO, {"who": t}).version)])

        pending = []
        for n in range(JOBS):
            t = tenants[n % TENANTS]
            job_event = {"user": {"user_id": f"u{n}"}, "transaction": {"correlation_id": f"job-{n}"}}
            pending.append((t, n, client.submit(t, job_event, timeout=120)))
        shares: collections.Counter[str] = collections.Counter()
        for t, n, job in pending:
            result = job.wait()
            url = [c for c in result.commands if c.type == "transaction.set_result_url"][0]
            assert (result.status, url.url, url.query) == (
                "completed", f"https://done.example/{t}", {"job": f"job-{n}"})
            shares[job.worker or "?"] += 1

        print("\nper-worker share of", JOBS, "jobs:",
              {w: f"{c} ({100 * c / JOBS:.0f}%)" for w, c in sorted(shares.items())})
        assert set(shares) == {w.hostname for w in workers}  # every worker served some
