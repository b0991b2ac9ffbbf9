"""The collect endpoint's fast path: returning visitors answered from Redis,
activity written behind, PostgreSQL still deciding every allocation."""

import json
import logging
import threading
import time
from datetime import timedelta

import pytest
import redis as redis_lib
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from lib import ratelimit, redis_client
from substitution import activity, services
from substitution.models import Lease, Pool, RuleCondition, StaticAddress
from substitution.rules import forget_snapshots
from tests.conftest import free_port
from tests.factories import make_setup
from tracker.models import Session, Visitor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_redis")]
BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0 Safari/537.36"


def collect(client, site, vid=None, url="https://shop.test/?utm_source=news&utm_campaign=autumn", hb=False, **extra):
    body = {"v": 1, "site": site.site_key, "vid": vid, "url": url, "ref": "", "consent": True, "hb": hb, **extra}
    response = client.post(
        "/api/v1/collect",
        json.dumps(body),
        content_type="text/plain",
        HTTP_ORIGIN="https://shop.test",
        HTTP_USER_AGENT=BROWSER,
        REMOTE_ADDR="198.51.100.7",
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_a_returning_visitors_page_view_makes_no_database_query(client):
    setup = make_setup()
    first = collect(client, setup.site)
    with CaptureQueriesContext(connection) as queries:
        again = collect(client, setup.site, vid=first["vid"], url="https://shop.test/prices")
        beat = collect(client, setup.site, vid=first["vid"], url="https://shop.test/prices", hb=True)
    assert len(queries) == 0, [q["sql"] for q in queries]
    assert again["subs"] == first["subs"] == beat["subs"]
    assert again["exp"] >= first["exp"]


def test_written_behind_activity_reaches_the_database_on_flush(client):
    setup = make_setup()
    first = collect(client, setup.site)
    lease = Lease.objects.get()
    later = timezone.now() + timedelta(seconds=5)
    for path in ("/a", "/b"):
        collect(client, setup.site, vid=first["vid"], url=f"https://shop.test{path}")
    session = Session.objects.get()
    assert session.page_views == 1  # not written yet
    assert activity.flush() == 1
    session.refresh_from_db()
    assert session.page_views == 3
    assert session.last_urls[-2:] == ["https://shop.test/a", "https://shop.test/b"]
    refreshed = Lease.objects.get(pk=lease.pk)
    assert refreshed.last_activity_at > lease.last_activity_at
    assert refreshed.expires_at > lease.expires_at
    assert refreshed.expires_at <= later + timedelta(minutes=setup.pool.hold_minutes)


def test_a_new_visitor_is_not_held_up_by_a_flush_in_progress(client):
    """The flush locks the leases it writes, not their pools: a new visitor's
    lease in the same pool goes in while a flush's transaction is open."""
    setup = make_setup()
    first = collect(client, setup.site)
    collect(client, setup.site, vid=first["vid"], url="https://shop.test/later")
    inside, finish = threading.Event(), threading.Event()

    def hold(*_activity):
        inside.set()
        finish.wait(30)

    flushed = []
    activity.on_flush(hold)
    flusher = threading.Thread(target=lambda: flushed.append(activity.flush()))
    try:
        flusher.start()
        assert inside.wait(10), "the flush did not start"
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = '3s'")
        try:
            second = collect(client, setup.site)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = 0")
    finally:
        finish.set()
        flusher.join(30)
        activity._flush_listeners.remove(hold)
    assert second["subs"] and second["subs"][0]["email"] != first["subs"][0]["email"]
    assert flushed == [1]


def test_a_lease_with_pending_activity_is_not_released_on_a_stale_expiry():
    setup = make_setup(hold_minutes=30)
    now = timezone.now()
    visitor = Visitor.objects.create(site=setup.site, vid="pending001", created_at=now, last_seen_at=now)
    session = Session.objects.create(visitor=visitor, started_at=now, last_seen_at=now)
    lease = services.lease_acquire(pool=setup.pool, visitor=visitor, now=now).lease
    activity.redis().hset(activity.PENDING_LEASES, lease.pk, (now + timedelta(minutes=25)).timestamp())
    activity.redis().hset(activity.PENDING_SESSIONS, session.pk, (now + timedelta(minutes=25)).timestamp())
    # Without the activity the lease would have expired at now + 30 min.
    assert services.release_expired_leases(setup.pool, now + timedelta(minutes=40)) == 0
    assert Lease.objects.get(pk=lease.pk).released_at is None
    assert services.release_expired_leases(setup.pool, now + timedelta(minutes=56)) == 1


def test_a_visitor_whose_lease_was_taken_over_is_not_served_the_old_address(client):
    setup = make_setup(pool_size=1, policy=Pool.ExhaustedPolicy.TAKE_OVER)
    victim = collect(client, setup.site)
    thief = collect(client, setup.site)
    assert thief["subs"] == victim["subs"]  # the only address changed hands
    victim_again = collect(client, setup.site, vid=victim["vid"])
    # The victim's answer came from the database: it took the address back.
    assert Lease.objects.filter(released_at__isnull=True).get().visitor.vid == victim["vid"]
    assert victim_again["subs"] == victim["subs"]


def test_a_new_campaign_goes_to_the_database_and_starts_a_session(client):
    setup = make_setup()
    first = collect(client, setup.site)
    with CaptureQueriesContext(connection) as queries:
        collect(client, setup.site, vid=first["vid"], url="https://shop.test/?utm_source=google&utm_medium=cpc")
    assert len(queries) > 0
    assert Session.objects.count() == 2


def test_a_changed_rule_reaches_returning_visitors(client):
    setup = make_setup()
    first = collect(client, setup.site)
    static = StaticAddress.objects.create(project=setup.project, name="Maps", email="maps@shop.test")
    setup.rule.order = 5
    setup.rule.save()
    maps = setup.project.rules.create(name="Maps visitors", order=0, kind="static", static_address=static)
    maps.sites.add(setup.site)
    maps.blocks.add(setup.block)
    RuleCondition.objects.create(rule=maps, field="utm_source", operator="equals", value="news")
    forget_snapshots()  # as every process does within SNAPSHOT_SECONDS
    again = collect(client, setup.site, vid=first["vid"])
    assert again["subs"] == [{"block": setup.block.pk, "email": "maps@shop.test"}]


def test_close_to_the_database_expiry_the_lease_is_written_through(client):
    setup = make_setup(hold_minutes=30)
    first = collect(client, setup.site)
    lease = Lease.objects.get()
    # Pretend the database expiry is near: the fast path must refuse.
    Lease.objects.filter(pk=lease.pk).update(expires_at=timezone.now() + timedelta(minutes=5))
    key = activity.visit_key(setup.site.pk, first["vid"])
    activity.redis().hset(key, "db_exp", repr((timezone.now() + timedelta(minutes=5)).timestamp()))
    collect(client, setup.site, vid=first["vid"])
    assert Lease.objects.get(pk=lease.pk).expires_at > timezone.now() + timedelta(minutes=25)


def test_without_consent_the_fast_path_keeps_nothing(client):
    setup = make_setup()
    answer = collect(client, setup.site, consent=False)
    assert answer["vid"] is None and answer["subs"] == []
    assert activity.redis().keys(activity.visit_key(setup.site.pk, "*")) == []
    assert Visitor.objects.count() == 0


def test_the_fast_path_counts_against_the_rate_limit(client, settings, monkeypatch):
    now = [1_800_000_000.0]
    monkeypatch.setattr(ratelimit, "clock", lambda: now[0])
    settings.COLLECT_RATE_LIMIT_PER_MINUTE = 3
    setup = make_setup()
    first = collect(client, setup.site)  # a new visitor: counted on the slow path

    def page_view():
        body = {"v": 1, "site": setup.site.site_key, "vid": first["vid"], "url": "https://shop.test/", "consent": True}
        return client.post(
            "/api/v1/collect",
            json.dumps(body),
            content_type="text/plain",
            HTTP_ORIGIN="https://shop.test",
            HTTP_USER_AGENT=BROWSER,
            REMOTE_ADDR="198.51.100.7",
        )

    with CaptureQueriesContext(connection) as queries:
        responses = [page_view() for _ in range(3)]
    assert len(queries) == 0, "counted and answered on the fast path"
    assert [r.status_code for r in responses] == [200, 200, 429]
    # 3 a minute: a burst of 3, then one every 20 s; the header says when.
    assert responses[-1]["Retry-After"] == "20"
    assert responses[-1].json() == {"error": "Too many requests"}
    now[0] += 19.5
    assert page_view()["Retry-After"] == "1"
    now[0] += 0.5
    assert page_view().status_code == 200
    assert page_view().status_code == 429


def test_a_cache_write_sent_without_reply_lands_and_leaves_the_connection_clean():
    activity.send_without_reply(("SET", "et:test:key", "value", "EX", 60))
    # The thread's own connection, which sent it with no reply awaited, reads
    # its next answer as its own (the connection is clean); a read on the
    # client's pooled connection may come a moment before the write lands.
    assert activity.exchange(("GET", "et:test:key")) == [b"value"]
    assert activity.redis().ttl("et:test:key") > 0


def test_several_cache_writes_sent_without_reply_land_in_order_and_leave_the_connection_clean():
    activity.send_without_reply(
        ("SET", "et:test:key", "first"), ("APPEND", "et:test:key", "+second"), ("EXPIRE", "et:test:key", 60)
    )
    assert activity.exchange(("GET", "et:test:key"), ("TTL", "et:test:key")) == [b"first+second", 60]


def test_a_remembered_answer_replaces_an_older_one_whole_and_expires_after_the_hold():
    key = activity.visit_key(1, "a" * 32)
    activity.redis().hset(key, mapping={"stale": "older answer's", "cfg": "old"})
    session = type("Facts", (), {"id": 7, "key": "", "ga": "", "ym": ""})()
    now = timezone.now()
    activity.remember(
        key=key,
        fingerprint="cfg-1",
        lease_ids=[3, 4],
        visitor_id=5,
        session=session,
        subs=[{"block": 1, "email": "a@shop.test"}],
        hold_minutes=30,
        db_expires_at=now + timedelta(minutes=30),
        now=now,
    )
    entry = {k.decode(): v.decode() for k, v in activity.exchange(("HGETALL", key))[0].items()}
    assert set(entry) == set(activity.ENTRY_FIELDS)
    assert (entry["cfg"], entry["leases"], entry["visitor"], entry["hold"]) == ("cfg-1", "3 4", "5", "30")
    assert 1790 <= activity.redis().ttl(key) <= 1800


def test_an_exchange_sends_any_argument_redis_py_would():
    """Commands are packed by hiredis directly; what it does not take (a
    command name holding a space, a bytearray) still goes redis-py's way."""
    replies = activity.exchange(
        ("SET", "et:test:key", bytearray(b"raw")),
        ("GET", "et:test:key"),
        ("SET", "et:test:number", 1.5),
        ("GET", "et:test:number"),
        ("CLIENT ID",),
    )
    assert replies[1] == b"raw" and replies[3] == b"1.5"
    assert isinstance(replies[4], int)


def test_a_cache_write_to_an_unreachable_redis_is_skipped_without_an_error(caplog):
    reachable = activity._client
    activity._client = redis_lib.Redis(port=free_port(), socket_connect_timeout=1)
    try:
        with caplog.at_level(logging.WARNING):
            assert activity.send_without_reply(("SET", "et:test:key", "value")) is None  # returned, raised nothing
            # Redis is left alone for a few seconds: the next write does not try.
            assert activity.send_without_reply(("SET", "et:test:key", "skipped")) is None
    finally:
        activity._client = reachable
    said = [record.getMessage() for record in caplog.records if record.name == redis_client.log.name]
    assert len(said) == 1 and said[0].startswith("Redis unreachable"), said
    assert not redis_client.available()
    assert activity.redis().get("et:test:key") is None
    # Redis back, the pause over: the next write lands.
    redis_client._down_until = 0.0
    activity.send_without_reply(("SET", "et:test:key", "again"))
    # Sent on a connection of its own with no reply awaited: it lands, maybe
    # a moment after a read on another connection.
    deadline = time.monotonic() + 5
    while activity.redis().get("et:test:key") != b"again" and time.monotonic() < deadline:
        time.sleep(0.01)
    assert activity.redis().get("et:test:key") == b"again"


def test_the_fast_path_survives_a_flushed_script_cache_and_killed_connections(client):
    """Redis restarted (its scripts forgotten, our pooled connections dropped):
    the next page view is still answered from Redis, not failed."""
    setup = make_setup()
    first = collect(client, setup.site)
    collect(client, setup.site, vid=first["vid"])  # the script is loaded
    activity.redis().script_flush()
    killed = redis_lib.Redis.from_url(settings.REDIS_URL).client_kill_filter(_type="normal", skipme=True)
    assert killed >= 1
    with CaptureQueriesContext(connection) as queries:
        again = collect(client, setup.site, vid=first["vid"], url="https://shop.test/after-restart")
    assert len(queries) == 0
    assert again["subs"] == first["subs"]
    assert activity.redis().script_exists(activity._FAST_SHA) == [True]


def test_a_held_connection_broken_meanwhile_is_replaced_once():
    """Each thread keeps its connection between exchanges (lib.redis_client):
    one whose socket broke since (Redis restarted) is replaced, and the
    exchange sent again once."""
    activity.exchange(("PING",))
    _pool, held = redis_client._held.connections[id(activity.redis().connection_pool)]
    held._sock.close()
    assert activity.exchange(("SET", "et:test", "1"), ("GET", "et:test")) == [b"OK", b"1"]
    _pool, replaced = redis_client._held.connections[id(activity.redis().connection_pool)]
    assert replaced is not held
