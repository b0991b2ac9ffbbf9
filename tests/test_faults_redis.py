"""Faults: Redis goes down while visitors arrive, and comes back.

A Redis server of the test's own (a real redis-server on a loopback port)
serves the fast path and the cache; the test kills it with SIGKILL while
visitors keep arriving. Collect keeps answering from PostgreSQL, never 5xx;
what was written behind and flushed is in the database (only what was queued
since the last flush can be lost, and Redis keeps nothing on disk here); when
Redis is back, the fast path resumes by itself."""

import json
import shutil
import subprocess
import time

import pytest
import redis as redis_lib
from django.db import connection
from django.test.utils import CaptureQueriesContext

from lib import redis_client
from substitution import activity
from substitution.models import Lease
from substitution.rules import forget_snapshots
from tests.conftest import free_port
from tests.factories import make_setup
from tracker.models import Session
from tracker.sites import forget_sites

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server (make test installs it)"),
]
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"


class OwnRedis:
    def __init__(self):
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None

    def start(self):
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis_lib.Redis.from_url(self.url)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis_lib.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self):
        self.process.kill()
        self.process.wait()


@pytest.fixture
def own_redis(settings, monkeypatch):
    server = OwnRedis()
    server.start()
    settings.REDIS_URL = server.url
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": server.url}}
    monkeypatch.setattr(activity, "_client", None)
    monkeypatch.setattr(redis_client, "OUTAGE_SECONDS", 1)  # how long a failure keeps Redis left alone
    forget_snapshots()
    forget_sites()
    yield server
    if server.process.poll() is None:
        server.kill()
    forget_snapshots()
    forget_sites()


def collect(client, site, vid=None, path="/?utm_source=news&utm_campaign=autumn", hb=False):
    body = {"v": 1, "site": site.site_key, "vid": vid, "url": f"https://shop.test{path}", "ref": "", "consent": True}
    body["hb"] = hb
    return client.post(
        "/api/v1/collect",
        json.dumps(body),
        content_type="text/plain",
        HTTP_ORIGIN="https://shop.test",
        HTTP_USER_AGENT=BROWSER,
        REMOTE_ADDR="198.51.100.7",
    )


def answered(response) -> dict:
    assert response.status_code == 200, (response.status_code, response.content)
    return response.json()


def test_collect_answers_through_a_redis_outage_and_the_fast_path_comes_back(client, own_redis):
    setup = make_setup()
    first = answered(collect(client, setup.site))
    vid, subs = first["vid"], first["subs"]
    assert subs, "the visitor got a substitute address"

    # Two page views on the fast path, flushed: they are in the database.
    with CaptureQueriesContext(connection) as queries:
        answered(collect(client, setup.site, vid=vid, path="/a"))
        answered(collect(client, setup.site, vid=vid, path="/b"))
    assert len(queries) == 0, "the returning visitor was answered from Redis"
    assert activity.flush() >= 1
    assert Session.objects.get().page_views == 3

    # Redis dies. The returning visitor keeps their address, a new visitor
    # gets one, page views and heartbeats are answered: never a 5xx.
    own_redis.kill()
    during = [collect(client, setup.site, vid=vid, path=f"/down-{n}") for n in range(3)]
    during.append(collect(client, setup.site, vid=vid, path="/down-beat", hb=True))
    newcomer = collect(client, setup.site, path="/?utm_source=ads")
    for response in [*during, newcomer]:
        assert response.status_code == 200, (response.status_code, response.content)
    assert all(response.json()["subs"] == subs for response in during)
    assert newcomer.json()["subs"] and newcomer.json()["subs"] != subs
    # Written through while Redis is down: nothing of it is lost.
    assert Session.objects.get(visitor__vid=vid).page_views == 6
    assert Lease.objects.filter(released_at__isnull=True).count() == 2

    # Redis returns (empty: it kept nothing). Without a restart of ours, once
    # the pause after the failure is over, one page view is written through
    # and the next ones are fast again.
    own_redis.start()
    while not redis_client.available():
        time.sleep(0.1)
    answered(collect(client, setup.site, vid=vid, path="/back"))
    with CaptureQueriesContext(connection) as queries:
        again = answered(collect(client, setup.site, vid=vid, path="/fast-again"))
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert again["subs"] == subs
    activity.flush()
    assert Session.objects.get(visitor__vid=vid).page_views == 8


def test_a_flush_while_redis_is_down_fails_cleanly_and_loses_nothing_written_through(client, own_redis):
    setup = make_setup()
    vid = answered(collect(client, setup.site))["vid"]
    own_redis.kill()
    answered(collect(client, setup.site, vid=vid, path="/down"))
    # The periodic flush meets the outage: an error it reports, no crash of the
    # caller's data; the page view written through is there.
    with pytest.raises(redis_lib.ConnectionError):
        activity.flush()
    assert Session.objects.get().page_views == 2
