"""Health alerts: each condition begins once and ends once (a frozen clock:
every evaluation is given its `now`), is announced to the project's managers
by email and to webhooks subscribed to alert.started / alert.ended, and is
listed with its history on the admin Health page."""

from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from django.core import mail

from frontend_js.models import MissingBlockReport, SnippetSettings
from integrations import alerts
from integrations.models import AlertNotification, Notification, NotificationSetting, WebhookAttempt, WebhookDelivery
from mailbox_sync.models import Mailbox
from monitoring.models import Condition, Kind
from monitoring.services import project_health_evaluate
from projects.models import Membership
from substitution.models import PoolExhaustion
from tests.factories import make_setup
from tests.test_webhooks import make_webhook
from tracker.models import Session, Visitor

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 7, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def shop(db):
    setup = make_setup()
    manager = get_user_model().objects.create_user("boss", "boss@shop.test", "pw", is_staff=True)
    membership = Membership.objects.create(project=setup.project, user=manager, role=Membership.Role.MANAGER)
    NotificationSetting.objects.create(membership=membership, email_enabled=True)
    marketer = get_user_model().objects.create_user("mark", "mark@shop.test", "pw", is_staff=True)
    other = Membership.objects.create(project=setup.project, user=marketer, role=Membership.Role.MARKETER)
    NotificationSetting.objects.create(membership=other, email_enabled=True)
    make_webhook(setup.project, "https://crm.example/hook", events=["alert.started", "alert.ended"])
    return setup


def evaluate(setup, at):
    return project_health_evaluate(setup.project.pk, now=at)


def announced(event):
    return list(WebhookDelivery.objects.filter(event=event).values_list("payload", flat=True))


def assert_fired_once_and_cleared_once(setup, kind, start, during, end):
    """`start`: the condition holds from here; `during`: it still does; `end`: it is over."""
    first = evaluate(setup, start)
    assert len(first["started"]) == 1
    condition = Condition.objects.get(pk=first["started"][0])
    assert condition.kind == kind and condition.ended_at is None
    assert evaluate(setup, during) == {"started": [], "ended": []}
    return condition


def finish(setup, condition, end):
    result = evaluate(setup, end)
    assert result == {"started": [], "ended": [condition.pk]}
    assert evaluate(setup, end + timedelta(minutes=5)) == {"started": [], "ended": []}
    condition.refresh_from_db()
    assert condition.ended_at == end
    started, ended = announced("alert.started"), announced("alert.ended")
    assert [p["alert"]["id"] for p in started] == [condition.pk]
    assert [p["alert"]["id"] for p in ended] == [condition.pk]
    # The manager is told by email once when it began and once when it ended; the marketer is not.
    rows = AlertNotification.objects.filter(channel=Notification.Channel.EMAIL)
    assert sorted(r.alert_key for r in rows) == [f"{condition.pk}:ended", f"{condition.pk}:started"]
    assert {r.membership.user.username for r in rows} == {"boss"}


def test_a_mailbox_failing_for_30_minutes_fires_once_and_clears_once(shop):
    Mailbox.objects.filter(pk=shop.mailbox.pk).update(
        state=Mailbox.State.FAILING, last_success_at=T0, last_error="LOGIN failed", last_error_at=T0
    )
    assert evaluate(shop, T0 + timedelta(minutes=29)) == {"started": [], "ended": []}
    condition = assert_fired_once_and_cleared_once(
        shop, Kind.MAILBOX_FAILING, T0 + timedelta(minutes=30), T0 + timedelta(hours=2), None
    )
    assert condition.details["error"] == "LOGIN failed"
    Mailbox.objects.filter(pk=shop.mailbox.pk).update(state=Mailbox.State.OK, last_success_at=T0 + timedelta(hours=3))
    finish(shop, condition, T0 + timedelta(hours=3))


def test_a_pool_that_ran_dry_fires_with_the_recommended_size_and_clears_an_hour_later(shop):
    PoolExhaustion.objects.create(pool=shop.pool, at=T0, policy="original")
    condition = assert_fired_once_and_cleared_once(
        shop, Kind.POOL_EXHAUSTED, T0 + timedelta(minutes=1), T0 + timedelta(minutes=30), None
    )
    assert "recommended_size" in condition.details and "recommended size" in condition.summary
    finish(shop, condition, T0 + timedelta(hours=1, minutes=1))


def visit(setup, at, url="https://shop.test/page", n=1):
    for i in range(n):
        person = Visitor.objects.create(site=setup.site, vid=f"v{at:%d%H%M}-{i}", created_at=at, last_seen_at=at)
        Session.objects.create(visitor=person, started_at=at, last_seen_at=at, landing_url=url)


def test_a_snippet_silent_for_24_hours_after_a_week_of_traffic_fires_and_clears(shop):
    visit(shop, T0 - timedelta(days=3), n=3)
    visit(shop, T0 - timedelta(hours=1))
    assert evaluate(shop, T0) == {"started": [], "ended": []}  # it reported an hour ago
    condition = assert_fired_once_and_cleared_once(
        shop, Kind.SNIPPET_SILENT, T0 + timedelta(hours=23, minutes=1), T0 + timedelta(hours=30), None
    )
    assert condition.details["domain"] == "shop.test"
    visit(shop, T0 + timedelta(hours=31))
    finish(shop, condition, T0 + timedelta(hours=31, minutes=5))


def test_a_site_with_no_traffic_the_week_before_is_not_silent(shop):
    assert evaluate(shop, T0) == {"started": [], "ended": []}
    assert not Condition.objects.exists()


def test_a_block_missing_on_pages_fires_only_while_the_install_check_is_on(shop):
    MissingBlockReport.objects.create(
        site=shop.site, block=shop.block, page_url="https://shop.test/contacts", first_seen_at=T0, last_seen_at=T0
    )
    assert evaluate(shop, T0 + timedelta(minutes=1)) == {"started": [], "ended": []}
    SnippetSettings.objects.create(site=shop.site, install_check=True)
    condition = assert_fired_once_and_cleared_once(
        shop, Kind.BLOCK_MISSING, T0 + timedelta(minutes=2), T0 + timedelta(hours=1), None
    )
    assert condition.details["pages"] == 1
    finish(shop, condition, T0 + timedelta(hours=25))


def test_webhooks_failing_for_an_hour_fire_and_a_success_clears_them(shop):
    crm = make_webhook(shop.project, "https://crm2.example/hook", events=["lead.created"])

    def attempt(at, status):
        delivery = WebhookDelivery.objects.create(
            webhook=crm, event="lead.created", payload={}, next_attempt_at=at, give_up_at=at + timedelta(days=1)
        )
        WebhookAttempt.objects.create(
            delivery=delivery, number=1, at=at, status_code=status, error="" if status == 200 else f"HTTP {status}"
        )

    attempt(T0, 500)
    attempt(T0 + timedelta(minutes=40), 502)
    assert evaluate(shop, T0 + timedelta(minutes=59)) == {"started": [], "ended": []}
    condition = assert_fired_once_and_cleared_once(
        shop, Kind.WEBHOOKS_FAILING, T0 + timedelta(minutes=60), T0 + timedelta(minutes=90), None
    )
    attempt(T0 + timedelta(minutes=95), 200)
    finish(shop, condition, T0 + timedelta(minutes=100))


def test_an_alert_email_is_sent_once_in_words_a_manager_reads(shop):
    PoolExhaustion.objects.create(pool=shop.pool, at=T0, policy="original")
    evaluate(shop, T0 + timedelta(minutes=1))
    row = AlertNotification.objects.get()
    assert alerts.alert_notification_send(row.pk, now=T0 + timedelta(minutes=2)).status == "sent"
    assert alerts.alert_notification_send(row.pk, now=T0 + timedelta(minutes=3)) is None  # claimed once
    assert len(mail.outbox) == 1
    assert mail.outbox[0].subject.startswith("Alert: Pool") and mail.outbox[0].to == ["boss@shop.test"]


def test_the_admin_health_page_lists_open_conditions_first_then_history(client, shop):
    PoolExhaustion.objects.create(pool=shop.pool, at=T0, policy="original")
    evaluate(shop, T0 + timedelta(minutes=1))
    evaluate(shop, T0 + timedelta(hours=2))  # ended
    PoolExhaustion.objects.create(pool=shop.pool, at=T0 + timedelta(hours=3), policy="original")
    evaluate(shop, T0 + timedelta(hours=3, minutes=1))  # began again: a new spell
    assert Condition.objects.count() == 2
    client.force_login(Membership.objects.get(role=Membership.Role.MANAGER).user)
    page = client.get("/admin/monitoring/condition/")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count('class="field-summary"') == 2
    states = [html.index('<td class="field-state">Open'), html.index('<td class="field-state">Ended')]
    assert states[0] < states[1]
    only_open = client.get("/admin/monitoring/condition/?open=yes").content.decode()
    assert only_open.count('class="field-summary"') == 1
