# ruff: noqa: F811 - pytest fixtures imported from tests
"""Webhooks for tracked letters, signed like the lead events: a person's
opens, clicks and replies by default; machine events only with the project's
switch; never a followed hidden link or a HEAD. A click, and an open inferred
from one, are sent once their verdict has settled, as they stand then."""

import pytest
from django.utils import timezone

from engagement import recording, storing
from engagement.models import EngagementSettings
from integrations import webhooks
from integrations.message_webhooks import settle_delay
from integrations.models import OutboundStatus, Webhook, WebhookDelivery
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


def send_settled() -> None:
    """What the beat sends once the settling time has passed."""
    later = timezone.now() + settle_delay()
    for pk in WebhookDelivery.objects.filter(status=OutboundStatus.PENDING).order_by("pk").values_list("pk", flat=True):
        webhooks.delivery_attempt(pk, now=later)


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
    assert events == [("message.opened", "human")]  # the click waits for its verdict to settle
    send_settled()
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
    send_settled()
    sent = [
        (r.json()["event"], r.json()["engagement"]["verdict"], r.json()["engagement"]["inferred"])
        for r in receiver.requests
    ]
    assert sent == [
        ("message.opened", "apple_mpp", False),
        ("message.replied", "human", False),
        ("message.opened", "human", True),  # inferred from the reply: sent once settled
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
    send_settled()
    assert [(r.path, r.json()["event"]) for r in receiver.requests] == [("/clicks", "message.clicked")]
    assert Webhook.objects.count() == 3


@pytest.mark.parametrize("machines_too", [False, True])
def test_a_click_found_a_scanners_before_it_settled_is_not_sent_as_a_persons(client, eager, receiver, machines_too):
    project, _key = make_project()
    EngagementSettings.objects.filter(project=project).update(webhook_machine_events=machines_too)
    make_webhook(project, receiver.url + "/hooks", events=ALL)
    copy = track(project).copies[0]
    fetch(client, copy.links[0][1], ua=IPHONE_UA)
    recording.drain()  # a person's click, as far as is known yet: it infers an open
    fetch(client, copy.links[1][1], ua=IPHONE_UA)  # the next link within the burst window: a scanner after all
    recording.drain()
    assert receiver.requests == []
    send_settled()
    sent = sorted((r.json()["event"], r.json()["engagement"]["verdict"]) for r in receiver.requests)
    if machines_too:  # sent, as they stand now
        assert sent == [("message.clicked", "scanner"), ("message.clicked", "scanner"), ("message.opened", "scanner")]
    else:
        assert sent == []
        skipped = WebhookDelivery.objects.filter(status=OutboundStatus.SKIPPED)
        assert {d.last_error for d in skipped} == {"The event turned out a machine's."}
        assert skipped.count() == 2  # the first click and the open it inferred
