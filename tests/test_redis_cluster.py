"""A Redis Cluster of three masters on loopback ports (redis-server
--cluster-enabled yes, redis-cli --cluster create), with REDIS_CLUSTER on:
collect (a new visitor, a returning one answered from Redis, the flush), the
rate limiter and the cache run on it. The fast path's keys share the hash tag
{et}, so its one script finds them in one slot; the limiter's and the cache's
keys spread over the masters. Celery's broker needs a plain Redis: the
settings refuse a Cluster without CELERY_BROKER_URL."""

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import redis as redis_lib
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from engagement import recording
from lib import ratelimit, redis_client
from substitution import activity
from substitution.rules import forget_snapshots
from tests.factories import make_setup
from tracker.models import Session
from tracker.sites import forget_sites

pytestmark = pytest.mark.skipif(
    not (shutil.which("redis-server") and shutil.which("redis-cli")), reason="needs redis-server and redis-cli"
)
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def cluster():
    """Three masters, all 16384 slots assigned; yields their ports."""
    folder = tempfile.mkdtemp(prefix="et-cluster-")
    ports = cluster_ports(3)
    servers = []
    for port in ports:
        command = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes"]
        command += ["--cluster-config-file", f"{folder}/nodes-{port}.conf", "--dir", folder]
        command += ["--save", "", "--appendonly", "no"]
        servers.append(subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    try:
        for port in ports:
            _wait(lambda port=port: redis_lib.Redis(port=port).ping())
        nodes = [f"127.0.0.1:{port}" for port in ports]
        subprocess.run(
            ["redis-cli", "--cluster", "create", *nodes, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        for port in ports:
            _wait(lambda port=port: redis_lib.Redis(port=port).cluster("info")["cluster_state"] == "ok")
        yield ports
    finally:
        for server in servers:
            server.terminate()
        for server in servers:
            server.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def cluster_ports(count: int) -> list[int]:
    """Free ports whose cluster bus port (10000 higher) is free too, so at most 55535."""
    rng, ports = random.Random(), []
    while len(ports) < count:
        port = rng.randrange(20000, 55000)
        if port in ports:
            continue
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        ports.append(port)
    return ports


def _wait(ready, seconds=30):
    deadline = time.monotonic() + seconds
    while True:
        try:
            if ready():
                return
        except redis_lib.ConnectionError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the Redis Cluster did not come up")
        time.sleep(0.05)


@pytest.fixture
def on_cluster(cluster, settings, monkeypatch):
    url = f"redis://127.0.0.1:{cluster[0]}/0"
    settings.REDIS_URL = url
    settings.REDIS_CLUSTER = True
    settings.CACHES = {"default": {"BACKEND": "lib.redis_client.ClusterCache", "LOCATION": url}}
    monkeypatch.setattr(activity, "_client", None)
    forget_snapshots()
    forget_sites()
    client = activity.redis()
    assert isinstance(client, redis_lib.RedisCluster)
    client.flushall(target_nodes=redis_lib.RedisCluster.PRIMARIES)
    yield cluster
    forget_snapshots()
    forget_sites()


def keys_by_node(ports) -> dict[int, list[str]]:
    return {port: [k.decode() for k in redis_lib.Redis(port=port).keys("*")] for port in ports}


def collect(client, site, vid=None, path="/", ip="198.51.100.7"):
    body = {"v": 1, "site": site.site_key, "vid": vid, "url": f"https://shop.test{path}", "consent": True}
    return client.post(
        "/api/v1/collect",
        json.dumps(body),
        content_type="text/plain",
        HTTP_ORIGIN="https://shop.test",
        HTTP_USER_AGENT=BROWSER,
        REMOTE_ADDR=ip,
    )


@pytest.mark.django_db(transaction=True)
def test_collect_runs_on_a_cluster_its_fast_path_in_one_slot(client, on_cluster):
    setup = make_setup()
    first = collect(client, setup.site)
    assert first.status_code == 200, first.content
    vid, subs = first.json()["vid"], first.json()["subs"]
    assert subs
    with CaptureQueriesContext(connection) as queries:
        again = [collect(client, setup.site, vid=vid, path=f"/page-{n}") for n in range(2)]
    assert [r.status_code for r in again] == [200, 200]
    assert len(queries) == 0, "answered from the Cluster by the fast path's one script"
    assert all(r.json()["subs"] == subs for r in again)

    # Every key of the fast path (and the collect limit's) is on the one master of {et}'s slot.
    hot = {port: [k for k in keys if k.startswith(redis_client.HOT)] for port, keys in keys_by_node(on_cluster).items()}
    holders = [port for port, keys in hot.items() if keys]
    assert len(holders) == 1
    assert any(key.startswith(activity.visit_key(setup.site.pk, "")) for key in hot[holders[0]])

    assert activity.flush() == 1
    session = Session.objects.get()
    assert session.page_views == 3
    assert session.last_urls[-2:] == ["https://shop.test/page-0", "https://shop.test/page-1"]
    left = [k for keys in keys_by_node(on_cluster).values() for k in keys if k.startswith(redis_client.HOT)]
    assert left == [activity.visit_key(setup.site.pk, vid)]  # the flush took and deleted the pending hashes


@pytest.mark.django_db(transaction=True)
def test_the_collect_limit_holds_on_the_fast_path_on_a_cluster(client, on_cluster, settings, monkeypatch):
    monkeypatch.setattr(ratelimit, "clock", lambda: 1_800_000_000.0)
    settings.COLLECT_RATE_LIMIT_PER_MINUTE = 2
    setup = make_setup()
    vid = collect(client, setup.site).json()["vid"]
    limited = [collect(client, setup.site, vid=vid) for _ in range(2)]
    assert [r.status_code for r in limited] == [200, 429]
    assert limited[-1]["Retry-After"] == "30"


def test_the_limiter_and_the_cache_spread_over_the_masters(on_cluster, monkeypatch):
    now = [1_800_000_000.0]
    monkeypatch.setattr(ratelimit, "clock", lambda: now[0])
    rule = ratelimit.Rule("api-key", 3, 60)
    for who in range(30):
        assert [ratelimit.hit(rule, str(who)).allowed for _ in range(4)] == [True, True, True, False]
    now[0] += 20
    assert ratelimit.hit(rule, "7").allowed
    limiter_nodes = {port for port, keys in keys_by_node(on_cluster).items() if any(k.startswith("rl:") for k in keys)}
    assert len(limiter_nodes) == 3

    cache.set_many({f"item-{n}": n for n in range(30)}, 60)
    assert cache.get_many([f"item-{n}" for n in range(30)]) == {f"item-{n}": n for n in range(30)}
    assert cache.add("counter", 1) and cache.incr("counter") == 2
    cache.delete_many([f"item-{n}" for n in range(10)])
    assert cache.get("item-3") is None and cache.get("item-13") == 13
    cache_nodes = {port for port, keys in keys_by_node(on_cluster).items() if any("item-" in k for k in keys)}
    assert len(cache_nodes) == 3


def test_engagement_events_are_refused_by_a_cluster_so_they_are_stored_at_once(on_cluster):
    """What the README says: the engagement script's keys share no slot, the
    Cluster refuses it, and recording.record() then stores the event itself."""
    args = (2, recording.STREAM, f"{recording.RATE_KEY}1:0", 100, "k", "1")
    [reply] = activity.exchange(("EVAL", recording._QUEUE, *args))
    assert isinstance(reply, redis_lib.exceptions.ClusterCrossSlotError)


def test_a_cluster_without_a_plain_redis_for_celery_is_refused_at_start(cluster, tmp_path):
    base = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings", "DEBUG": "1", "VAR_DIR": str(tmp_path)}
    base.update(REDIS_URL=f"redis://127.0.0.1:{cluster[0]}/0", REDIS_CLUSTER="1")
    base.pop("CELERY_BROKER_URL", None)
    show = "import django; django.setup(); from django.conf import settings as s; print(s.CELERY_BROKER_URL)"
    refused = subprocess.run([sys.executable, "-c", show], env=base, cwd=ROOT, capture_output=True, text=True)
    assert refused.returncode != 0
    assert "Celery's Redis broker does not support Redis Cluster" in refused.stderr
    plain = subprocess.run(
        [sys.executable, "-c", show],
        env={**base, "CELERY_BROKER_URL": "redis://127.0.0.1:6379/6"},
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert plain.returncode == 0, plain.stderr
    assert plain.stdout.strip() == "redis://127.0.0.1:6379/6"
