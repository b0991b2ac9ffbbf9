"""A mailbox whose OAuth2 grant the provider refused (revoked, expired)
alerts the project's managers at once, through the health alerts (email,
Telegram as each manager chose, and webhooks subscribed to alert.started),
not half an hour later when the failing-sync check would; once per spell
however many syncs and listeners meet the refusal, and the alert ends when
the mailbox is connected again (a later refusal alerts again)."""

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from integrations import alerts
from integrations.models import AlertNotification, Notification, NotificationSetting, WebhookDelivery
from mailbox_sync import grants, oauth
from mailbox_sync.models import Mailbox
from mailbox_sync.providers import Provider
from mailbox_sync.services import check_connection, sync_mailbox
from monitoring.models import Condition, Kind
from projects.models import Membership
from tests import oauth_fixtures
from tests.test_mailbox_oauth import connected, deliver
from tests.test_webhooks import make_webhook

pytestmark = [pytest.mark.imap, pytest.mark.django_db(transaction=True)]

oauth_mail = oauth_fixtures.oauth_mail
provider = oauth_fixtures.provider


@pytest.fixture
def box(oauth_mail, provider):
    user, mailbox = connected(oauth_mail, provider)
    boss = get_user_model().objects.create_user("boss", "boss@shop.test", "pw", is_staff=True)
    manager = Membership.objects.create(project=mailbox.project, user=boss, role=Membership.Role.MANAGER)
    NotificationSetting.objects.create(membership=manager, email_enabled=True)
    mark = get_user_model().objects.create_user("mark", "mark@shop.test", "pw", is_staff=True)
    marketer = Membership.objects.create(project=mailbox.project, user=mark, role=Membership.Role.MARKETER)
    NotificationSetting.objects.create(membership=marketer, email_enabled=True)
    make_webhook(mailbox.project, "https://crm.example/hook", events=["alert.started", "alert.ended"])
    return user, mailbox


def alerts_to_managers() -> list[tuple[str, str]]:
    rows = AlertNotification.objects.filter(channel=Notification.Channel.EMAIL).order_by("id")
    return [(row.membership.user.username, row.alert_key.split(":")[1]) for row in rows]


def reconnect(provider, user, mailbox) -> None:
    issued = provider.issue(user)
    tokens = oauth.Tokens(issued["access_token"], issued["expires_in"], issued["refresh_token"], issued["id_token"])
    grants.connect(mailbox, oauth.client_for(Provider.OTHER), tokens, user)


def test_a_refused_grant_alerts_the_managers_at_once_and_once(oauth_mail, provider, box):
    user, mailbox = box
    assert alerts_to_managers() == []
    provider.revoke_all(user)
    deliver(oauth_mail, user, "Waiting")
    assert sync_mailbox(mailbox.pk).error_kind == "reconnect"
    # At once: no half hour of failing syncs first, no beat needed.
    condition = Condition.objects.get(project=mailbox.project, ended_at__isnull=True)
    assert (condition.kind, condition.subject) == (Kind.MAILBOX_FAILING, f"mailbox:{mailbox.pk}")
    assert "Reconnect needed" in condition.summary
    assert "invalid_grant" in condition.details["error"]
    assert alerts_to_managers() == [("boss", "started")]  # the manager, not the marketer
    # More syncs, a connection test, the listener's token: the same spell, no new alert.
    sync_mailbox(mailbox.pk)
    assert not check_connection(Mailbox.objects.get(pk=mailbox.pk)).ok
    assert alerts_to_managers() == [("boss", "started")]
    assert Condition.objects.filter(project=mailbox.project).count() == 1


def test_connecting_again_ends_the_alert_and_a_later_refusal_alerts_again(oauth_mail, provider, box):
    user, mailbox = box
    provider.revoke_all(user)
    sync_mailbox(mailbox.pk)
    reconnect(provider, user, mailbox)
    first = Condition.objects.get(project=mailbox.project)
    assert first.ended_at is not None
    assert alerts_to_managers() == [("boss", "started"), ("boss", "ended")]
    # What the manager reads (sent by the alert machinery's own sender) and what the CRM's webhook gets.
    for row in AlertNotification.objects.order_by("id"):
        assert alerts.alert_notification_send(row.pk).status == "sent"
    assert [(m.subject.split(":")[0], m.to) for m in mail.outbox] == [
        ("Alert", ["boss@shop.test"]),
        ("Resolved", ["boss@shop.test"]),
    ]
    assert all(mailbox.name in m.subject and "Reconnect needed" in m.subject for m in mail.outbox)
    payloads = WebhookDelivery.objects.order_by("id").values_list("event", "payload")
    assert [(event, p["alert"]["subject"]) for event, p in payloads] == [
        ("alert.started", f"mailbox:{mailbox.pk}"),
        ("alert.ended", f"mailbox:{mailbox.pk}"),
    ]
    deliver(oauth_mail, user, "Read again")
    assert sync_mailbox(mailbox.pk).stored == 1
    provider.revoke_all(user)
    grants.forget_access_token(mailbox.pk)  # the cached token lapses: the next connection asks the provider
    assert sync_mailbox(mailbox.pk).error_kind == "reconnect"
    assert Condition.objects.filter(project=mailbox.project, ended_at__isnull=True).exclude(pk=first.pk).count() == 1
    assert alerts_to_managers() == [("boss", "started"), ("boss", "ended"), ("boss", "started")]
