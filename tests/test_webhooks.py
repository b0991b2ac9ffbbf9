"""Webhooks against a real HTTP receiver on loopback: one signed delivery per
event, retries with backoff, the delivery log and redelivery, and the refusal
of internal targets."""

import hashlib
import hmac
import json
import time
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone

from attribution.leads import lead_update
from integrations import outbox, tasks, webhooks
from integrations.models import OutboundStatus, Webhook, WebhookDelivery
from lib import crypto
from tests.factories import make_setup
from tests.test_api_support import Receiver, Reply, lead_to_main_address

pytestmark = pytest.mark.django_db(transaction=True)

SECRET = "whsec_test-secret-0123456789abcdefghij"


def readme_verify(secret: str, headers: dict, body: bytes) -> bool:
    """The check a receiver writes from the README's "Checking the signature"
    (standard library only; deliberately not our signing code)."""
    timestamp = headers["x-emailtrack-timestamp"]
    message = timestamp.encode() + b"." + body
    expected = "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    fresh = abs(time.time() - int(timestamp)) <= 300
    return fresh and hmac.compare_digest(expected, headers["x-emailtrack-signature"])


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_TASK_EAGER_PROPAGATES = True
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True  # the receiver is on loopback


def make_webhook(project, url, events=("lead.created",), secret=SECRET, **fields) -> Webhook:
    hook = Webhook(project=project, url=url, events=list(events), **fields)
    webhooks.webhook_set_secret(hook, secret)
    hook.save()
    return hook


def test_a_new_lead_produces_exactly_one_signed_webhook(eager, receiver):
    setup = make_setup()
    make_webhook(setup.project, receiver.url + "/hooks/emailtrack")
    other = make_setup(name="Other", original="info@other.test")
    make_webhook(other.project, receiver.url + "/other")

    lead = lead_to_main_address(setup, subject="Need bricks")

    assert len(receiver.requests) == 1
    request = receiver.requests[0]
    assert request.path == "/hooks/emailtrack"
    assert request.headers["content-type"] == "application/json"
    assert request.headers["x-emailtrack-event"] == "lead.created"
    assert readme_verify(SECRET, request.headers, request.body)
    payload = request.json()
    assert payload["event"] == "lead.created"
    assert payload["id"] == request.headers["x-emailtrack-delivery"]
    assert payload["project"] == {"id": setup.project.pk, "name": setup.project.name}
    assert payload["lead"]["id"] == lead.pk
    assert payload["lead"]["subject"] == "Need bricks"
    assert payload["lead"]["sender_email"] == "anna@client.test"
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (OutboundStatus.SENT, 1, 200)


def test_nothing_is_sent_for_a_lead_whose_transaction_rolls_back(eager, receiver):
    setup = make_setup()
    make_webhook(setup.project, receiver.url)
    with pytest.raises(RuntimeError), transaction.atomic():
        lead_to_main_address(setup)
        assert receiver.requests == []  # not before the commit either
        raise RuntimeError("the surrounding work failed")
    assert receiver.requests == []
    assert not WebhookDelivery.objects.exists()
    lead_to_main_address(setup)
    assert len(receiver.requests) == 1


def test_a_forged_body_or_a_wrong_secret_fails_the_readme_check(eager, receiver):
    setup = make_setup()
    make_webhook(setup.project, receiver.url)
    lead_to_main_address(setup)
    request = receiver.requests[0]
    assert readme_verify(SECRET, request.headers, request.body)
    forged = request.body.replace(b'"status":"new"', b'"status":"won"')
    assert forged != request.body
    assert not readme_verify(SECRET, request.headers, forged)
    assert not readme_verify("whsec_someone-elses-secret", request.headers, request.body)
    old = {**request.headers, "x-emailtrack-timestamp": str(int(request.headers["x-emailtrack-timestamp"]) - 3600)}
    assert not readme_verify(SECRET, old, request.body)


def test_a_receiver_that_answers_500_twice_gets_the_third_attempt(eager, receiver):
    setup = make_setup()
    make_webhook(setup.project, receiver.url)
    receiver.replies = [Reply(500, b"boom"), Reply(500, b"still down")]
    lead_to_main_address(setup)

    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (OutboundStatus.PENDING, 1, 500)
    first_wait = delivery.next_attempt_at - delivery.last_attempt_at
    assert timedelta(seconds=30) <= first_wait <= timedelta(seconds=33)

    # Nothing is sent before the next attempt is due.
    assert webhooks.delivery_attempt(delivery.pk, now=delivery.next_attempt_at - timedelta(seconds=1)) is None
    assert len(receiver.requests) == 1

    webhooks.delivery_attempt(delivery.pk, now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (OutboundStatus.PENDING, 2)
    second_wait = delivery.next_attempt_at - delivery.last_attempt_at
    assert timedelta(seconds=60) <= second_wait <= timedelta(seconds=66)

    webhooks.delivery_attempt(delivery.pk, now=delivery.next_attempt_at)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.last_status_code) == (OutboundStatus.SENT, 3, 200)

    assert len(receiver.requests) == 3
    assert len({r.headers["x-emailtrack-delivery"] for r in receiver.requests}) == 1
    assert len({r.body for r in receiver.requests}) == 1
    assert all(readme_verify(SECRET, r.headers, r.body) for r in receiver.requests)
    log = list(delivery.attempt_log.values_list("number", "status_code", "response_excerpt"))
    assert log == [(1, 500, "boom"), (2, 500, "still down"), (3, 200, "ok")]


def test_backoff_doubles_up_to_four_hours_and_gives_up_after_a_day(eager, receiver):
    assert [outbox.backoff(n, rng=lambda: 0).total_seconds() for n in (1, 2, 3, 4, 10, 20)] == [
        30,
        60,
        120,
        240,
        14400,
        14400,
    ]
    setup = make_setup()
    make_webhook(setup.project, receiver.url)
    receiver.check = lambda request: Reply(503, b"down")
    lead_to_main_address(setup)
    delivery = WebhookDelivery.objects.get()
    while delivery.status == OutboundStatus.PENDING:
        webhooks.delivery_attempt(delivery.pk, now=delivery.next_attempt_at)
        delivery.refresh_from_db()
    assert delivery.status == OutboundStatus.FAILED
    assert delivery.last_attempt_at <= delivery.created_at + timedelta(hours=24)
    assert 10 <= delivery.attempts == len(receiver.requests) <= 20


def test_the_outbox_times_are_settings(settings):
    settings.OUTBOX_FIRST_RETRY_SECONDS = 2
    settings.OUTBOX_CLAIM_SECONDS = 7
    assert [outbox.backoff(n, rng=lambda: 0).total_seconds() for n in (1, 2, 3)] == [2, 4, 8]
    assert outbox.claim_period() == timedelta(seconds=7)


def test_410_gone_stops_the_retries_at_once(eager, receiver):
    setup = make_setup()
    make_webhook(setup.project, receiver.url)
    receiver.replies = [Reply(410, b"gone")]
    lead_to_main_address(setup)
    delivery = WebhookDelivery.objects.get()
    assert (delivery.status, delivery.last_status_code, delivery.next_attempt_at) == (OutboundStatus.FAILED, 410, None)


def test_the_beat_sweep_sends_what_is_due(eager, receiver):
    setup = make_setup()
    make_webhook(setup.project, receiver.url)
    receiver.replies = [Reply(502)]
    lead_to_main_address(setup)
    assert tasks.send_due() == 0  # the retry is not due yet
    WebhookDelivery.objects.update(next_attempt_at=timezone.now() - timedelta(seconds=1))
    assert tasks.send_due() == 1
    assert WebhookDelivery.objects.get().status == OutboundStatus.SENT
    assert len(receiver.requests) == 2


def test_events_go_only_to_webhooks_that_subscribe_and_are_active(eager, receiver):
    setup = make_setup()
    make_webhook(setup.project, receiver.url + "/created", events=["lead.created"])
    make_webhook(setup.project, receiver.url + "/updated", events=["lead.updated"])
    make_webhook(setup.project, receiver.url + "/off", events=["lead.created", "lead.updated"], active=False)
    lead = lead_to_main_address(setup)
    lead_update(lead=lead, status="won", deal_amount="990")
    assert [r.path for r in receiver.requests] == ["/created", "/updated"]
    updated = receiver.requests[1].json()
    assert updated["event"] == "lead.updated"
    assert (updated["lead"]["status"], updated["lead"]["deal_amount"]) == ("won", "990.00")


def test_redeliver_from_the_admin_sends_the_same_delivery_again(eager, receiver, client):
    setup = make_setup()
    make_webhook(setup.project, receiver.url)
    lead_to_main_address(setup)
    delivery = WebhookDelivery.objects.get()
    admin = get_user_model().objects.create_superuser("boss", "boss@shop.test", "pw")
    client.force_login(admin)
    response = client.post(
        "/admin/integrations/webhookdelivery/",
        {"action": "redeliver", "_selected_action": [delivery.pk]},
    )
    assert response.status_code == 302
    assert len(receiver.requests) == 2
    first, second = receiver.requests
    assert first.body == second.body
    assert first.headers["x-emailtrack-delivery"] == second.headers["x-emailtrack-delivery"]
    assert readme_verify(SECRET, second.headers, second.body)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == (OutboundStatus.SENT, 2)
    page = client.get(f"/admin/integrations/webhookdelivery/{delivery.pk}/change/")
    assert page.status_code == 200
    assert b"200" in page.content


def test_a_marketer_cannot_redeliver(eager, receiver, client):
    from projects.models import Membership

    setup = make_setup()
    make_webhook(setup.project, receiver.url)
    lead_to_main_address(setup)
    delivery = WebhookDelivery.objects.get()
    user = get_user_model().objects.create_user("mia", "mia@shop.test", "pw", is_staff=True)
    Membership.objects.create(project=setup.project, user=user, role=Membership.Role.MARKETER)
    client.force_login(user)
    client.post("/admin/integrations/webhookdelivery/", {"action": "redeliver", "_selected_action": [delivery.pk]})
    assert len(receiver.requests) == 1


def test_a_webhook_made_in_admin_shows_its_secret_once_and_keeps_it_encrypted(settings, client):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    setup = make_setup()
    admin = get_user_model().objects.create_superuser("boss", "boss@shop.test", "pw")
    client.force_login(admin)
    response = client.post(
        "/admin/integrations/webhook/add/",
        {"project": setup.project.pk, "url": "http://127.0.0.1:9/hook", "events": ["lead.created"], "active": "on"},
    )
    assert response.status_code == 200, response.content[:2000]
    assert "no-store" in response["Cache-Control"]
    hook = Webhook.objects.get()
    secret = webhooks.webhook_secret(hook)
    assert secret.startswith("whsec_") and secret.encode() in response.content
    assert secret not in hook.secret_encrypted
    assert crypto.decrypt(hook.secret_encrypted) == secret
    page = client.get(f"/admin/integrations/webhook/{hook.pk}/change/")
    assert secret.encode() not in page.content


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8080/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "http://[::ffff:192.168.0.1]/hook",
        "http://localhost/hook",
        "ftp://example.com/hook",
    ],
)
def test_internal_targets_are_refused_when_saved(settings, client, url):
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    setup = make_setup()
    admin = get_user_model().objects.create_superuser("boss", "boss@shop.test", "pw")
    client.force_login(admin)
    response = client.post(
        "/admin/integrations/webhook/add/",
        {"project": setup.project.pk, "url": url, "events": ["lead.created"], "active": "on"},
    )
    assert response.status_code == 200
    assert not Webhook.objects.exists()
    assert b"cannot receive webhooks" in response.content or b"Enter a valid URL" in response.content


def test_a_loopback_target_is_refused_at_delivery_unless_the_setting_allows_it(eager, settings, receiver):
    setup = make_setup()
    make_webhook(setup.project, receiver.url)  # saved while allowed, then the setting changes
    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    lead_to_main_address(setup)
    delivery = WebhookDelivery.objects.get()
    assert receiver.requests == []
    assert delivery.status == OutboundStatus.FAILED
    assert "loopback" in delivery.last_error
    assert delivery.attempt_log.get().status_code is None


def test_every_address_a_name_resolves_to_is_checked_and_the_connection_is_pinned(
    eager, settings, receiver, monkeypatch
):
    import socket

    from integrations import http

    lookups = []
    real = socket.getaddrinfo

    def fake_getaddrinfo(host, port, *args, **kwargs):
        lookups.append(host)
        if host == "crm.example":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port)),
            ]
        if host == "mixed.example":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(http.socket, "getaddrinfo", fake_getaddrinfo)

    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = False
    with pytest.raises(http.RequestFailed, match="10.0.0.7 is a private"):
        http.post("http://mixed.example/hook", b"{}", {}, guard=True)

    settings.WEBHOOK_ALLOW_PRIVATE_TARGETS = True
    answer = http.post(f"http://crm.example:{receiver.port}/hook", b"{}", {}, guard=True, allow_private=True)
    assert answer.status == 200
    assert receiver.requests[-1].headers["host"] == f"crm.example:{receiver.port}"
    # Each name was resolved once: the connection went to the checked address, not to a second lookup.
    assert [host for host in lookups if host.endswith(".example")] == ["mixed.example", "crm.example"]


@pytest.mark.parametrize(
    ("address", "refused"),
    [
        ("8.8.8.8", ""),
        ("2a00:1450:4010:c05::64", ""),
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("169.254.169.254", "link-local"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("::ffff:127.0.0.1", "loopback"),
        ("2002:7f00:1::", "loopback"),
        ("0.0.0.0", "not a unicast"),
        ("224.0.0.1", "not a unicast"),
    ],
)
def test_which_addresses_a_webhook_may_reach(address, refused):
    from integrations.http import refusal

    reason = refusal(address, allow_private=False)
    assert (refused in reason) if refused else reason == ""
    if refused not in ("", "not a unicast"):
        assert refusal(address, allow_private=True) == ""


def test_a_slow_receiver_is_a_failed_attempt_not_a_hung_worker(eager, settings, receiver):
    import threading

    release = threading.Event()

    def slow(request):
        release.wait(5)
        return Reply(200)

    settings.WEBHOOK_TIMEOUT_SECONDS = 0.2
    setup = make_setup()
    make_webhook(setup.project, receiver.url)
    receiver.check = slow
    try:
        lead_to_main_address(setup)
    finally:
        release.set()
    delivery = WebhookDelivery.objects.get()
    assert delivery.status == OutboundStatus.PENDING
    assert "did not answer" in delivery.last_error


def test_payload_is_the_api_lead_object(eager, receiver, client):
    from integrations.keys import api_key_create

    setup = make_setup()
    make_webhook(setup.project, receiver.url)
    lead = lead_to_main_address(setup)
    _row, key = api_key_create(project=setup.project, name="crm")
    from_api = client.get("/api/v1/leads", HTTP_AUTHORIZATION=f"Bearer {key}").json()["results"][0]
    assert json.loads(receiver.requests[0].body)["lead"] == from_api
    assert from_api["id"] == lead.pk
