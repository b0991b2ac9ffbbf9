# ruff: noqa: F811 - pytest fixtures imported from tests
"""Webhooks for tracked letters, signed like the lead events: a person's
opens, clicks and replies by default; machine events only with the project's
switch; never a followed hidden link or a HEAD."""

import pytest

from engagement import recording, storing
from engagement.models import EngagementSettings
from integrations.models import Webhook
from tests.engagement_fixtures import (  # noqa: F401 - fixtures
    APPLE_IP,
    IPHONE_UA,
    empty_stream,
    fetch,
    make_project,
    track,
    trusted_proxy,
)
from tests.test_webhooks import SECRET, eager, make_webhook, readme_verify, receiver  # noqa: F401 - fixtures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("empty_stream", "trusted_proxy")]

ALL = ("message.opened", "message.clicked", "message.replied")


def test_a_persons_open_and_click_are_sent_signed_and_machine_events_are_not(client, eager, receiver):
    project, _key = make_project()
    make_webhook(project, receiver.url + "/hooks", events=ALL)
    copy = track(project).copies[0]
    fetch(client, copy.pixel_url, ua="Mozilla/5.0", ip=APPLE_IP)  # Apple's prefetch: not sent
    fetch(client, copy.links[0][1], method="head")  # never counted
    fetch(client, copy.pixel_url, ua=IPHONE_UA)
    fetch(client, copy.links[0][1], ua=IPHONE_UA)
    recording.drain()
    events = [(r.headers["x-emailtrack-event"], r.json()["engagement"]["verdict"]) for r in receiver.requests]
    assert events == [("message.opened", "human"), ("message.clicked", "human")]
    for request in receiver.requests:
        assert readme_verify(SECRET, request.headers, request.body)
        payload = request.json()
        assert payload["message"]["id"] == copy.recipient.message_id
        assert payload["recipient"]["email"] == "anna@client.test"
        assert payload["project"]["id"] == project.pk
    assert receiver.requests[1].json()["engagement"]["url"] == "https://shop.test/price"


def test_the_switch_sends_machine_events_too_and_a_reply_is_sent(client, eager, receiver):
    project, _key = make_project()
    EngagementSettings.objects.filter(project=project).update(webhook_machine_events=True)
    make_webhook(project, receiver.url + "/hooks", events=ALL)
    copy = track(project).copies[0]
    fetch(client, copy.pixel_url, ua="Mozilla/5.0", ip=APPLE_IP)
    recording.drain()
    storing.reply_record(recipient=copy.recipient, letter_id=None, at=copy.recipient.message.created_at)
    sent = [
        (r.json()["event"], r.json()["engagement"]["verdict"], r.json()["engagement"]["inferred"])
        for r in receiver.requests
    ]
    assert sent == [
        ("message.opened", "apple_mpp", False),
        ("message.opened", "human", True),
        ("message.replied", "human", False),
    ]


def test_only_subscribed_webhooks_of_the_events_project_hear_of_it(client, eager, receiver):
    project, _key = make_project()
    other, _k = make_project("Other")
    make_webhook(project, receiver.url + "/leads-only", events=("lead.created",))
    make_webhook(other, receiver.url + "/other", events=ALL)
    make_webhook(project, receiver.url + "/clicks", events=("message.clicked",))
    copy = track(project).copies[0]
    fetch(client, copy.pixel_url, ua=IPHONE_UA)
    fetch(client, copy.links[0][1], ua=IPHONE_UA)
    recording.drain()
    assert [(r.path, r.json()["event"]) for r in receiver.requests] == [("/clicks", "message.clicked")]
    assert Webhook.objects.count() == 3
