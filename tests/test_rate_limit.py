"""The one rate limiter (lib.ratelimit), on Redis and on the embedded default
(the local-memory cache, no Redis): no 2x burst where a minute turns, each
key its own count, an exact Retry-After, the same verdicts from the Lua and
the Python, and collect, the API and sign-ins limited by it. The limiter's
clock is the test's: nothing sleeps."""

import json
import random

import pytest
from django.core.cache import cache
from django.test import Client

from integrations.keys import api_key_create
from lib import ratelimit, redis_client
from projects.logins import FAILURES_PER_USERNAME, TOO_MANY
from substitution import activity
from tests.factories import make_setup
from tests.test_journal_support import member

MINUTE = 1_800_000_000.0  # a Unix time on a minute's turn (divisible by 60)
LOCMEM = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    clock = Clock(MINUTE - 30)
    monkeypatch.setattr(ratelimit, "clock", clock)
    return clock


@pytest.fixture(params=["redis", "embedded"])
def store(request, settings, fresh_redis):
    """Redis, or the embedded default: no REDIS_URL, the local-memory cache."""
    if request.param == "embedded":
        settings.REDIS_URL = ""
        settings.CACHES = LOCMEM
        cache.clear()  # local-memory caches of one name share their store across tests
    return request.param


def rate_keys() -> list[bytes]:
    return activity.redis().keys("rl:*")


def test_a_burst_just_before_a_minute_turns_leaves_nothing_just_after(store, clock):
    rule = ratelimit.Rule("test", 10, 60)
    allowed = 0
    # A request every 50 ms from 12:00:59 to 12:01:01: a fixed minute window let 20 through.
    clock.now = MINUTE - 1
    while clock.now <= MINUTE + 1:
        allowed += ratelimit.hit(rule, "client").allowed
        clock.now += 0.05
    assert allowed == 10
    # And over ten minutes of hammering: the burst, then one every 6 seconds.
    clock.now = MINUTE + 600
    over_ten_minutes = 0
    while clock.now < MINUTE + 1200:
        over_ten_minutes += ratelimit.hit(rule, "client").allowed
        clock.now += 0.25
    assert over_ten_minutes == 10 + 600 // 6 - 1  # 600 s after the first: 99 more intervals
    assert (rate_keys() != []) == (store == "redis")  # the embedded default writes nothing to Redis


def test_each_key_has_its_own_count(store, clock):
    rule = ratelimit.Rule("test", 3, 60)
    assert [ratelimit.hit(rule, "a").allowed for _ in range(4)] == [True, True, True, False]
    assert ratelimit.hit(rule, "b").allowed
    assert not ratelimit.hit(rule, "a").allowed
    other_rule = ratelimit.Rule("other", 3, 60)
    assert ratelimit.hit(other_rule, "a").allowed  # a rule's keys are its own too


def test_retry_after_is_the_wait_until_the_next_request_is_allowed(store, clock):
    rule = ratelimit.Rule("test", 3, 60)  # a burst of 3, then one every 20 s
    verdicts = [ratelimit.hit(rule, "a") for _ in range(3)]
    assert [v.remaining for v in verdicts] == [2, 1, 0]
    assert verdicts[-1].retry_after_ms == 20_000  # the one that used up the limit says when the next comes
    refused = ratelimit.hit(rule, "a")
    assert (refused.allowed, refused.retry_after_ms, refused.retry_after) == (False, 20_000, 20)
    clock.now += 19.5
    assert ratelimit.hit(rule, "a").retry_after_ms == 500
    assert ratelimit.hit(rule, "a").retry_after == 1  # whole seconds for the header, never 0
    clock.now += 0.5
    assert ratelimit.hit(rule, "a").allowed
    assert not ratelimit.hit(rule, "a").allowed


def test_peek_counts_nothing_and_reset_forgets(store, clock):
    rule = ratelimit.Rule("test", 2, 60)
    for _ in range(5):
        assert ratelimit.peek(rule, "a").allowed
    ratelimit.hit(rule, "a")
    ratelimit.hit(rule, "a")
    assert not ratelimit.peek(rule, "a").allowed
    ratelimit.reset(rule, "a")
    assert ratelimit.hit(rule, "a").allowed
    with pytest.raises(ratelimit.Limited) as limited:
        ratelimit.check(rule, "a")
        ratelimit.check(rule, "a")
    assert limited.value.retry_after == 30


def test_the_lua_and_the_python_give_the_same_verdicts(settings, fresh_redis, clock):
    """One rule, written twice: the same requests get the same answers."""
    rng = random.Random(20)
    times = []
    at = MINUTE - 5
    for _ in range(400):
        at += rng.choice([0, 0.001, 0.05, 0.3, 1.7, 7.5, 20])
        times.append((round(at, 3), rng.choice(["a", "b"]), rng.random() < 0.2))

    def run() -> list[tuple]:
        out = []
        rule = ratelimit.Rule("same", 7, 60)
        for at, who, dry in times:
            clock.now = at
            verdict = ratelimit.peek(rule, who) if dry else ratelimit.hit(rule, who)
            out.append((verdict.allowed, verdict.remaining, verdict.retry_after_ms))
        return out

    on_redis = run()
    settings.REDIS_URL = ""
    settings.CACHES = LOCMEM
    cache.clear()
    embedded = run()
    assert on_redis == embedded
    assert {allowed for allowed, _, _ in on_redis} == {True, False}  # both answers were exercised


def test_an_unreachable_redis_keeps_the_limit_in_the_process_and_is_tried_again(settings, clock, caplog):
    reachable = settings.REDIS_URL
    settings.REDIS_URL = "redis://127.0.0.1:9/0"  # the discard port: nothing listens
    rule = ratelimit.Rule("test", 2, 60)
    verdicts = [ratelimit.hit(rule, "a").allowed for _ in range(3)]
    assert verdicts == [True, True, False], "the rule still holds, counted in this process"
    assert ratelimit.hit(rule, "b").allowed
    assert "Redis unreachable" in caplog.text
    # Redis answers again once the pause is over: its count, not the process's, decides.
    redis_client._down_until = 0.0
    settings.REDIS_URL = reachable
    assert ratelimit.hit(rule, "a").allowed
    assert redis_client.available()


# The endpoints


def collect(client, site, ip="198.51.100.7", vid=None):
    body = {"v": 1, "site": site.site_key, "vid": vid, "url": "https://shop.test/", "consent": True}
    return client.post(
        "/api/v1/collect",
        json.dumps(body),
        content_type="text/plain",
        HTTP_ORIGIN="https://shop.test",
        HTTP_USER_AGENT="Mozilla/5.0 (X11; Linux x86_64) Chrome/156.0 Safari/537.36",
        REMOTE_ADDR=ip,
    )


@pytest.mark.django_db
def test_collect_is_limited_per_client_address_with_the_exact_wait(store, clock, settings):
    settings.COLLECT_RATE_LIMIT_PER_MINUTE = 2
    setup = make_setup()
    client = Client()
    first = collect(client, setup.site)
    vid = first.json()["vid"]
    responses = [first, *(collect(client, setup.site, vid=vid) for _ in range(2))]
    assert [r.status_code for r in responses] == [200, 200, 429]
    assert responses[-1]["Retry-After"] == "30"
    assert responses[-1].json() == {"error": "Too many requests"}
    assert collect(client, setup.site, ip="10.0.0.2").status_code == 200  # another address
    clock.now += 30
    assert collect(client, setup.site, vid=vid).status_code == 200


@pytest.mark.django_db
def test_the_api_is_limited_per_key_with_the_exact_wait(store, clock, settings):
    settings.API_RATE_LIMIT_PER_MINUTE = 4
    setup = make_setup()
    _row, key = api_key_create(project=setup.project, name="CRM")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    answers = [client.get("/api/v1/project") for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 200, 429]
    assert [a["X-RateLimit-Remaining"] for a in answers[:4]] == ["3", "2", "1", "0"]
    assert answers[-1]["Retry-After"] == "15"
    clock.now += 15
    assert client.get("/api/v1/project").status_code == 200


@pytest.mark.django_db
def test_a_locked_username_gets_one_more_attempt_after_the_interval(store, clock):
    member("mark", make_setup().project, is_staff=False)
    client = Client()
    for _ in range(FAILURES_PER_USERNAME):
        client.post("/journal/login/", {"username": "mark", "password": "guess"})
    refused = client.post("/journal/login/", {"username": "mark", "password": "pw-mark"})
    assert TOO_MANY in refused.content.decode()
    clock.now += 179
    assert TOO_MANY in client.post("/journal/login/", {"username": "mark", "password": "pw-mark"}).content.decode()
    clock.now += 1  # 5 per 15 minutes: one more every 3 minutes
    assert client.post("/journal/login/", {"username": "mark", "password": "pw-mark"}).status_code == 302
