"""A round trip split in two (lib.redis_client.send, lib.ratelimit.hit_later):
the commands go now, their replies are read later, and nothing in between
mixes them up; collect counts a new visitor's request while it builds its
rows, and a request over the limit still writes nothing."""

import json

import pytest
from django.test import Client

from lib import ratelimit, redis_client
from substitution import activity
from tests.factories import make_setup
from tracker.models import Session, Visitor


@pytest.fixture
def clock(monkeypatch):
    now = [1_800_000_000.0]
    monkeypatch.setattr(ratelimit, "clock", lambda: now[0])
    return now


def test_replies_sent_earlier_are_read_before_an_exchange_on_the_same_connection(fresh_redis):
    client = activity.redis()
    client.set("{et}:a", "first")
    pending = redis_client.send(client, ("GET", "{et}:a"), ("INCR", "{et}:n"))
    # An exchange on this thread's connection comes after the commands sent:
    # it reads their replies first and keeps them for the pending one.
    assert redis_client.exchange(client, ("SET", "{et}:a", "second"), ("GET", "{et}:a")) == [b"OK", b"second"]
    assert pending.replies() == [b"first", 1]
    assert pending.replies() == [b"first", 1], "read once, given again"
    assert redis_client.exchange(client, ("GET", "{et}:n")) == [b"1"]


def test_an_error_reply_is_returned_as_its_exception(fresh_redis):
    client = activity.redis()
    client.set("{et}:text", "x")
    (reply,) = redis_client.send(client, ("INCR", "{et}:text")).replies()
    assert isinstance(reply, Exception)


def test_hit_later_counts_at_once_and_gives_the_verdicts_of_hit(fresh_redis, clock):
    rule = ratelimit.Rule("test", 2, 60)
    first = ratelimit.hit_later(rule, "a")
    second = ratelimit.hit_later(rule, "a")
    third = ratelimit.hit_later(rule, "a")  # all three counted before any verdict is read
    assert [c.verdict().allowed for c in (first, second, third)] == [True, True, False]
    assert third.verdict().retry_after == 30
    assert not ratelimit.hit(rule, "a").allowed
    assert ratelimit.hit(rule, "b").allowed


def test_hit_later_sends_the_script_again_after_redis_forgot_it(fresh_redis, clock):
    activity.redis().script_flush()
    rule = ratelimit.Rule("test", 1, 60)
    assert ratelimit.hit_later(rule, "a").verdict().allowed
    assert not ratelimit.hit_later(rule, "a").verdict().allowed


def test_hit_later_counts_in_the_process_while_redis_is_unreachable(settings, clock):
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # the discard port: nothing listens
    try:
        rule = ratelimit.Rule("test-unreachable", 1, 60)
        assert ratelimit.hit_later(rule, "a").verdict().allowed
        assert not ratelimit.hit_later(rule, "a").verdict().allowed
    finally:
        redis_client._down_until = 0.0


def collect(client, site, ip="198.51.100.7", origin="https://shop.test"):
    body = {"v": 1, "site": site.site_key, "vid": None, "url": "https://shop.test/", "consent": True}
    return client.post(
        "/api/v1/collect",
        json.dumps(body),
        content_type="text/plain",
        HTTP_ORIGIN=origin,
        HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36",
        REMOTE_ADDR=ip,
    )


@pytest.mark.django_db(transaction=True)
def test_a_new_visitor_over_the_limit_is_refused_before_anything_is_written(fresh_redis, clock, settings):
    settings.COLLECT_RATE_LIMIT_PER_MINUTE = 2
    setup = make_setup()
    client = Client()
    answers = [collect(client, setup.site) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[-1]["Retry-After"] == "30"
    assert Visitor.objects.count() == 2 and Session.objects.count() == 2
    # Over the limit, the 429 comes before the other refusals, as before.
    assert collect(client, setup.site, origin="https://elsewhere.test").status_code == 429
    assert collect(client, setup.site, ip="10.0.0.2", origin="https://elsewhere.test").status_code == 403
