"""New-lead notifications: email through a real SMTP server (aiosmtpd on
loopback) and Telegram through a local HTTP receiver standing in for its API."""

import json
import re
import socket
from email import message_from_bytes, policy
from email.header import decode_header, make_header

import pytest
from aiosmtpd.controller import Controller
from django.contrib.auth import get_user_model
from django.utils import timezone

from integrations import notifications
from integrations.models import Notification, NotificationSetting, OutboundStatus
from projects.models import Membership
from tests.factories import make_setup
from tests.test_api_support import Receiver, Reply, lead_from_visitor, lead_to_main_address, visitor_with_session

pytestmark = pytest.mark.django_db(transaction=True)

BOT_TOKEN = "123456:test-bot-token"


class Inbox:
    def __init__(self):
        self.letters = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd's hook name
        self.letters.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def smtp(settings):
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=_free_port())
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", controller.port
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_TIMEOUT = 5
    settings.DEFAULT_FROM_EMAIL = "emailtrack@service.test"
    yield inbox
    controller.stop()


@pytest.fixture
def telegram(settings):
    server = Receiver()
    settings.TELEGRAM_API_BASE_URL = server.url
    settings.TELEGRAM_BOT_TOKEN = BOT_TOKEN
    server.check = lambda request: None
    yield server
    server.close()


@pytest.fixture
def eager(settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    settings.CELERY_TASK_EAGER_PROPAGATES = True
    settings.PUBLIC_BASE_URL = "https://track.example"


def member(project, username, *, role=Membership.Role.MANAGER, **notify):
    user = get_user_model().objects.create_user(username, f"{username}@shop.test", "pw", is_staff=True)
    membership = Membership.objects.create(project=project, user=user, role=role)
    if notify:
        NotificationSetting.objects.create(membership=membership, **notify)
    return membership


def _subject(raw: bytes) -> str:
    return str(make_header(decode_header(message_from_bytes(raw, policy=policy.compat32)["Subject"])))


def _text(raw: bytes) -> str:
    message = message_from_bytes(raw, policy=policy.default)
    return message.get_body(("plain",)).get_content()


def test_a_new_lead_is_emailed_to_members_who_asked_with_sender_subject_source_and_link(eager, smtp):
    setup = make_setup()
    member(setup.project, "anna", email_enabled=True)
    member(setup.project, "boris", email_enabled=True, email="sales@shop.test")
    member(setup.project, "quiet", email_enabled=False)
    member(setup.project, "none")
    other = make_setup(name="Other", original="info@other.test")
    member(other.project, "stranger", email_enabled=True)

    person = visitor_with_session(setup, source="google", utm_source="google", utm_medium="cpc", utm_campaign="bricks")
    lead = lead_from_visitor(setup, person, subject="Кирпич: цена?", sender="Ivan Petrov <ivan@client.test>")

    assert sorted(rcpt for _sender, rcpts, _raw in smtp.letters for rcpt in rcpts) == [
        "anna@shop.test",
        "sales@shop.test",
    ]
    sender, _rcpts, raw = smtp.letters[0]
    assert sender == "emailtrack@service.test"
    assert _subject(raw) == "New lead: Кирпич: цена?"
    text = _text(raw)
    assert "From: Ivan Petrov <ivan@client.test>" in text
    assert "Subject: Кирпич: цена?" in text
    assert "Channel: Paid search / ads" in text
    assert "google" in text and "bricks" in text
    assert "First contact" in text
    assert re.search(rf"^https://track\.example/\S*/{lead.pk}/", text, re.M)  # the lead's page
    assert set(Notification.objects.values_list("status", flat=True)) == {OutboundStatus.SENT}


def test_a_new_lead_goes_to_the_members_telegram_chat(eager, telegram):
    setup = make_setup()
    member(setup.project, "anna", telegram_enabled=True, telegram_chat_id="-1001234567890")
    lead = lead_to_main_address(setup, subject="Need a quote", sender="Olga <olga@client.test>")

    assert len(telegram.requests) == 1
    request = telegram.requests[0]
    assert request.path == f"/bot{BOT_TOKEN}/sendMessage"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["chat_id"] == "-1001234567890"
    assert "parse_mode" not in body  # plain text: the sender's words are never markup
    assert "From: Olga <olga@client.test>" in body["text"]
    assert "Subject: Need a quote" in body["text"]
    assert "Channel: Unknown" in body["text"]
    assert re.search(rf"^https://track\.example/\S*/{lead.pk}/", body["text"], re.M)
    assert Notification.objects.get().status == OutboundStatus.SENT


def test_each_member_and_channel_is_told_once(eager, smtp, telegram):
    setup = make_setup()
    member(setup.project, "anna", email_enabled=True, telegram_enabled=True, telegram_chat_id="42")
    lead = lead_to_main_address(setup)
    assert notifications.notifications_for_new_lead(lead.pk) == []  # a repeated task makes nothing new
    assert len(smtp.letters) == 1 and len(telegram.requests) == 1
    # A letter joining the lead is an update, not a new lead.
    lead_to_main_address(setup, subject="Hello again")
    assert len(smtp.letters) == 1 and len(telegram.requests) == 1


def test_telegram_flood_control_is_respected_then_the_message_goes(eager, telegram):
    setup = make_setup()
    member(setup.project, "anna", telegram_enabled=True, telegram_chat_id="42")
    too_many = json.dumps({"ok": False, "error_code": 429, "parameters": {"retry_after": 120}}).encode()
    telegram.replies = [Reply(429, too_many)]
    lead_to_main_address(setup)
    row = Notification.objects.get()
    assert row.status == OutboundStatus.PENDING
    assert (row.next_attempt_at - row.last_attempt_at).total_seconds() >= 120
    assert notifications.notification_send(row.pk, now=row.next_attempt_at).status == OutboundStatus.SENT
    assert len(telegram.requests) == 2


def test_an_unknown_chat_is_recorded_and_not_retried(eager, telegram):
    setup = make_setup()
    member(setup.project, "anna", telegram_enabled=True, telegram_chat_id="42")
    telegram.replies = [Reply(400, b'{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}')]
    lead_to_main_address(setup)
    row = Notification.objects.get()
    assert row.status == OutboundStatus.FAILED
    assert "chat not found" in row.last_error
    assert BOT_TOKEN not in row.last_error


def test_a_mail_server_that_is_down_is_retried(eager, settings):
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", _free_port()  # nothing listens there
    settings.EMAIL_TIMEOUT = 2
    setup = make_setup()
    member(setup.project, "anna", email_enabled=True)
    lead_to_main_address(setup)
    row = Notification.objects.get()
    assert row.status == OutboundStatus.PENDING
    assert "Sending the email failed" in row.last_error
    assert row.next_attempt_at > timezone.now()


def test_switching_a_channel_off_before_sending_skips_it(settings, smtp):
    setup = make_setup()
    membership = member(setup.project, "anna", email_enabled=True)
    lead = lead_to_main_address(setup)  # not eager: the row waits for a worker
    [row_id] = notifications.notifications_for_new_lead(lead.pk)
    NotificationSetting.objects.filter(membership=membership).update(email_enabled=False)
    assert notifications.notification_send(row_id).status == OutboundStatus.SKIPPED
    assert smtp.letters == []


def test_a_member_may_set_up_their_own_notifications_in_admin(client):
    setup = make_setup()
    other = make_setup(name="Other", original="info@other.test")
    mine = member(setup.project, "mia", role=Membership.Role.MARKETER)
    theirs = member(other.project, "olaf", role=Membership.Role.MARKETER)
    client.force_login(mine.user)
    page = client.get("/admin/integrations/notificationsetting/add/")
    assert page.status_code == 200
    assert f'value="{mine.pk}"'.encode() in page.content
    assert f'value="{theirs.pk}"'.encode() not in page.content
    response = client.post(
        "/admin/integrations/notificationsetting/add/",
        {"membership": mine.pk, "email_enabled": "on", "telegram_chat_id": ""},
    )
    assert response.status_code == 302
    assert NotificationSetting.objects.get().email_address == "mia@shop.test"
    response = client.post(
        "/admin/integrations/notificationsetting/add/", {"membership": theirs.pk, "email_enabled": "on"}
    )
    assert response.status_code == 200 and NotificationSetting.objects.count() == 1
