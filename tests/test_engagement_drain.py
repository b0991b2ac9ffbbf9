# ruff: noqa: F811 - pytest fixtures imported from tests.engagement_fixtures
"""The pixel and clicks queue their events in a Redis stream; drainers store
them in batches. Nothing is lost and nothing is stored twice: not when the
drainer is stopped and started again, not when one dies mid-batch, not
without Redis (stored at once)."""

import threading
import time
from types import SimpleNamespace

import pytest
from django.db import connections

from engagement import endpoint, recording, storing
from engagement.models import Event, EventKind
from substitution import activity
from tests.conftest import free_port
from tests.engagement_fixtures import empty_stream, fetch, make_project, track, trusted_proxy  # noqa: F401 - fixtures
from tests.route import RouteClient

pytestmark = pytest.mark.usefixtures("empty_stream", "trusted_proxy")


def wait_for(condition, seconds=15):
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


class Drainer:
    def __init__(self):
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run)
        self.thread.start()

    def run(self):
        try:
            recording.drain_forever(stop=self.stop, consumer="d1")
        finally:
            connections.close_all()

    def halt(self):
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive()


@pytest.mark.django_db(transaction=True)
def test_it_counts_every_event_once_when_the_drainer_stops_and_starts_again():
    project, _key = make_project()
    copies = track(project, recipients=[f"r{i}@client.test" for i in range(5)]).copies
    route = RouteClient()

    def fire(count):
        for i in range(count):
            copy = copies[i % len(copies)]
            assert fetch(route, copy.pixel_url, ip=f"203.0.113.{i % 200}").status_code == 200

    drainer = Drainer()
    fire(30)
    assert wait_for(lambda: Event.objects.count() == 30)
    drainer.halt()
    fire(40)
    time.sleep(0.3)
    assert Event.objects.count() == 30 and recording.pending_count() == 40
    drainer = Drainer()
    try:
        assert wait_for(lambda: Event.objects.count() == 70)
        assert wait_for(lambda: recording.pending_count() == 0)
    finally:
        drainer.halt()
    assert Event.objects.filter(kind=EventKind.OPEN).count() == 70
    assert Event.objects.values("stream_id").distinct().count() == 70


@pytest.mark.django_db
def test_a_drainer_that_died_after_storing_but_before_acknowledging_stores_nothing_twice(client):
    project, _key = make_project()
    copy = track(project).copies[0]
    for _ in range(3):
        fetch(client, copy.pixel_url)
    redis = recording.redis()
    recording.ensure_group(redis)
    entries = recording.decoded(redis.xreadgroup(recording.GROUP, "d1", {recording.STREAM: ">"}, count=10)[0][1])
    storing.store(entries)  # stored, then the drainer died: never acknowledged
    assert Event.objects.count() == 3
    assert recording.drain(consumer="d1") == 3  # read again under the same name
    assert Event.objects.count() == 3 and recording.pending_count() == 0


@pytest.mark.django_db
def test_entries_a_dead_drainer_took_are_taken_over_by_another(client, monkeypatch):
    project, _key = make_project()
    copy = track(project).copies[0]
    fetch(client, copy.pixel_url)
    fetch(client, copy.links[0][1])
    redis = recording.redis()
    recording.ensure_group(redis)
    redis.xreadgroup(recording.GROUP, "dead", {recording.STREAM: ">"}, count=10)  # read, never stored
    monkeypatch.setattr(recording, "RECLAIM_IDLE_MS", 0)
    assert recording.drain(consumer="alive") == 2
    assert sorted(Event.objects.filter(inferred=False).values_list("kind", flat=True)) == ["click", "open"]


@pytest.fixture
def redis_at(settings, monkeypatch):
    def use(url):
        settings.REDIS_URL = url
        monkeypatch.setattr(activity, "_client", None)

    yield use
    activity._client = None


@pytest.mark.django_db
def test_without_redis_each_event_is_stored_at_once(client, redis_at):
    redis_at("")
    project, _key = make_project()
    copy = track(project).copies[0]
    fetch(client, copy.pixel_url)
    assert fetch(client, copy.links[0][1]).status_code == 302
    assert sorted(Event.objects.filter(inferred=False).values_list("kind", flat=True)) == ["click", "open"]


@pytest.mark.django_db
def test_when_redis_is_down_the_event_is_stored_at_once(client, redis_at):
    project, _key = make_project()
    copy = track(project).copies[0]
    redis_at(f"redis://127.0.0.1:{free_port()}/0")
    assert fetch(client, copy.pixel_url).status_code == 200
    assert Event.objects.filter(kind=EventKind.OPEN).count() == 1


@pytest.mark.django_db
def test_a_token_replayed_in_a_flood_is_answered_but_recorded_only_up_to_the_cap(client, settings, monkeypatch):
    settings.ENGAGEMENT_EVENTS_PER_RECIPIENT_PER_MINUTE = 3
    monkeypatch.setattr(endpoint, "time", SimpleNamespace(time=lambda: 1_800_000_000.0))  # one minute
    project, _key = make_project()
    copy, other = track(project, recipients=["a@client.test", "b@client.test"]).copies
    for _ in range(6):
        assert fetch(client, copy.pixel_url).status_code == 200
    fetch(client, other.pixel_url)
    recording.drain()
    assert Event.objects.filter(recipient=copy.recipient).count() == 3
    assert Event.objects.filter(recipient=other.recipient).count() == 1
