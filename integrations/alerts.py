"""Health alerts to the outside: when a condition begins or ends (the
`monitoring` app decides), the project's managers are told by email and
Telegram as they chose for new leads, and webhooks subscribed to
`alert.started` / `alert.ended` receive it. Each alert goes out once per
manager and channel (its key), and is retried like every outbound message."""

import uuid
from dataclasses import dataclass
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from projects.models import Membership

from . import conf, outbox
from .models import AlertNotification, Notification, NotificationSetting, WebhookDelivery
from .notifications import RETRY_WINDOW, send_email, send_telegram
from .webhooks import RETRY_WINDOW as WEBHOOK_RETRY_WINDOW
from .webhooks import subscribed

STARTED, ENDED = "alert.started", "alert.ended"


@dataclass
class Alert:
    key: str  # unique per condition and event, e.g. "17:started"
    event: str  # STARTED or ENDED
    project_id: int
    subject: str
    text: str
    data: dict  # the webhook's "alert" object


def alert_announce(alert: Alert, now: datetime | None = None) -> dict[str, list[int]]:
    """Make the webhook deliveries and manager notifications of one alert."""
    now = now or timezone.now()
    made = {"deliveries": [], "notifications": []}
    for hook in subscribed(alert.project_id, alert.event):
        event_id = uuid.uuid4()
        payload = {
            "id": str(event_id),
            "event": alert.event,
            "occurred_at": now.isoformat().replace("+00:00", "Z"),
            "project": {"id": alert.project_id},
            "alert": alert.data,
        }
        delivery = WebhookDelivery.objects.create(
            webhook=hook,
            event_id=event_id,
            event=alert.event,
            payload=payload,
            next_attempt_at=now,
            give_up_at=now + WEBHOOK_RETRY_WINDOW,
        )
        made["deliveries"].append(delivery.pk)
    settings = NotificationSetting.objects.filter(
        membership__project_id=alert.project_id, membership__role=Membership.Role.MANAGER
    ).select_related("membership__user")
    for setting in settings:
        channels = []
        if setting.email_enabled and setting.email_address:
            channels.append(Notification.Channel.EMAIL)
        if setting.telegram_enabled and setting.telegram_chat_id and conf.telegram_bot_token():
            channels.append(Notification.Channel.TELEGRAM)
        for channel in channels:
            try:
                with transaction.atomic():
                    row = AlertNotification.objects.create(
                        membership=setting.membership,
                        channel=channel,
                        alert_key=alert.key,
                        subject=alert.subject[:200],
                        text=alert.text,
                        next_attempt_at=now,
                        give_up_at=now + RETRY_WINDOW,
                    )
            except IntegrityError:  # made before
                continue
            made["notifications"].append(row.pk)
    return made


def alert_notification_send(notification_id: int, now: datetime | None = None) -> outbox.Outcome | None:
    """Send one alert notification if it is due and no one else is sending it."""
    now = now or timezone.now()
    if not outbox.claim(AlertNotification, notification_id, now):
        return None
    row = AlertNotification.objects.select_related("membership__user").get(pk=notification_id)
    setting = NotificationSetting.objects.filter(membership=row.membership).first()
    if setting is None:
        return outbox.skipped(row, now, "The member's notification settings were removed.")
    try:
        if row.channel == Notification.Channel.EMAIL:
            if not (setting.email_enabled and setting.email_address):
                return outbox.skipped(row, now, "Email notifications were switched off.")
            send_email(setting, row.subject, row.text)
        else:
            if not (setting.telegram_enabled and setting.telegram_chat_id):
                return outbox.skipped(row, now, "Telegram notifications were switched off.")
            send_telegram(setting, row.text)
    except outbox.SendError as error:
        return outbox.failed(row, now, error)
    return outbox.succeeded(row, now)
