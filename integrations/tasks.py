"""Celery tasks: thin wrappers around the services. Each send task claims its
row in the database, so a duplicate message or a beat sweep never sends twice;
a failed attempt is scheduled in the database and re-enqueued here."""

from celery import shared_task
from django.db import transaction
from django.utils import timezone

from . import alerts, analytics, dispatch, message_webhooks, notifications, outbox, webhooks
from .models import AlertNotification, Conversion, Notification, WebhookDelivery

# Longer countdowns are left to the beat sweep: a broker may redeliver a
# message whose ETA lies beyond its visibility timeout.
MAX_COUNTDOWN_SECONDS = 30 * 60


def _again(task, pk: int, outcome):
    if outcome is not None and outcome.retry_at is not None:
        countdown = (outcome.retry_at - timezone.now()).total_seconds()
        if countdown <= MAX_COUNTDOWN_SECONDS:
            task.apply_async((pk,), countdown=max(countdown, 0))


@shared_task
def on_lead_event(event: str, lead_id: int) -> None:
    made = dispatch.lead_event(event, lead_id)

    def enqueue():
        for pk in made["deliveries"]:
            send_webhook_delivery.delay(pk)
        for pk in made["notifications"]:
            send_notification.delay(pk)
        for pk in made["conversions"]:
            send_conversion.delay(pk)

    transaction.on_commit(enqueue)


@shared_task
def on_engagement_events(event_ids: list[int]) -> None:
    made = message_webhooks.deliveries_for_message_events(event_ids)
    due = dict(WebhookDelivery.objects.filter(pk__in=made).values_list("pk", "next_attempt_at"))

    def enqueue():
        # A click or an inferred open waits for its verdict to settle (the beat's send_due would send it too).
        now = timezone.now()
        for pk, at in due.items():
            send_webhook_delivery.apply_async((pk,), countdown=max((at - now).total_seconds(), 0))

    transaction.on_commit(enqueue)


@shared_task
def send_webhook_delivery(delivery_id: int) -> None:
    _again(send_webhook_delivery, delivery_id, webhooks.delivery_attempt(delivery_id))


@shared_task
def send_notification(notification_id: int) -> None:
    _again(send_notification, notification_id, notifications.notification_send(notification_id))


@shared_task
def send_alert_notification(notification_id: int) -> None:
    _again(send_alert_notification, notification_id, alerts.alert_notification_send(notification_id))


def enqueue_alert(made: dict[str, list[int]]) -> None:
    """Send an alert's deliveries and notifications once the transaction that made them commits."""

    def enqueue():
        for pk in made["deliveries"]:
            send_webhook_delivery.delay(pk)
        for pk in made["notifications"]:
            send_alert_notification.delay(pk)

    transaction.on_commit(enqueue)


@shared_task
def send_conversion(conversion_id: int) -> None:
    _again(send_conversion, conversion_id, analytics.conversion_send(conversion_id))


@shared_task
def send_due() -> int:
    """Beat (every minute): enqueue every delivery, notification and
    conversion whose next attempt is due: the retries, and anything whose
    first message was lost."""
    now = timezone.now()
    count = 0
    for model, task in (
        (WebhookDelivery, send_webhook_delivery),
        (Notification, send_notification),
        (Conversion, send_conversion),
        (AlertNotification, send_alert_notification),
    ):
        for pk in outbox.due_ids(model, now):
            task.delay(pk)
            count += 1
    return count
