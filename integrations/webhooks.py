"""Webhooks: each lead event becomes one delivery per subscribed webhook,
POSTed as JSON and signed, retried with backoff for 24 hours.

Signature: `X-Emailtrack-Signature: sha256=<hex>`, the HMAC-SHA256 with the
webhook's secret of `<X-Emailtrack-Timestamp>.<raw body>`, so a receiver can
check who sent it and refuse an old (replayed) timestamp. The README section
documents the payload and how to check it.
"""

import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from attribution.models import Lead
from engagement.models import PERSON_VERDICTS
from engagement.services import engagement_settings
from lib import crypto

from . import conf, http, outbox
from .api.serializers import LeadSerializer
from .models import OutboundStatus, Webhook, WebhookAttempt, WebhookDelivery

RETRY_WINDOW = timedelta(hours=24)
SIGNATURE_HEADER = "X-Emailtrack-Signature"
TIMESTAMP_HEADER = "X-Emailtrack-Timestamp"
EVENT_HEADER = "X-Emailtrack-Event"
DELIVERY_HEADER = "X-Emailtrack-Delivery"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def webhook_set_secret(webhook: Webhook, secret: str) -> None:
    """The secret is kept only encrypted (Fernet, ENCRYPTION_KEY)."""
    webhook.secret_encrypted = crypto.encrypt(secret)


def webhook_secret(webhook: Webhook) -> str:
    return crypto.decrypt(webhook.secret_encrypted)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def lead_payload(*, event: str, event_id: str, lead: Lead, occurred_at: datetime) -> dict:
    return {
        "id": event_id,
        "event": event,
        "occurred_at": occurred_at.isoformat().replace("+00:00", "Z"),
        "project": {"id": lead.project_id, "name": lead.project.name},
        "lead": dict(LeadSerializer(lead).data),
    }


def subscribed(project_id: int, event: str) -> list[Webhook]:
    # Filtered here rather than with a JSON lookup, which SQLite lacks.
    return [hook for hook in Webhook.objects.filter(project_id=project_id, active=True) if event in hook.events]


@transaction.atomic
def deliveries_for_lead_event(event: str, lead_id: int, now: datetime | None = None) -> list[int]:
    """One delivery per active webhook of the lead's project that subscribes to
    the event. The payload is the lead as it is now (the same object the API
    returns), fixed at this moment: a retry sends exactly the same bytes' content."""
    now = now or timezone.now()
    lead = Lead.objects.select_related("project").prefetch_related("tags").filter(pk=lead_id).first()
    if lead is None:
        return []
    ids = []
    for hook in subscribed(lead.project_id, event):
        event_id = uuid.uuid4()
        delivery = WebhookDelivery.objects.create(
            webhook=hook,
            event_id=event_id,
            event=event,
            lead=lead,
            payload=lead_payload(event=event, event_id=str(event_id), lead=lead, occurred_at=now),
            next_attempt_at=now,
            give_up_at=now + RETRY_WINDOW,
        )
        ids.append(delivery.pk)
    return ids


def _retry_after(answer: http.Answer):
    value = answer.headers.get("retry-after", "")
    return int(value) if value.isdigit() else None


def _engagement_skip_reason(delivery: WebhookDelivery) -> str | None:
    """Before a tracked letter's event is sent, read it again: the reason to
    skip it if it turned out a machine's and the project sends a person's
    events only; otherwise None, its payload brought up to date."""
    event = delivery.engagement_event
    if event is None:
        return None
    engagement = delivery.payload.get("engagement") or {}
    if event.verdict == engagement.get("verdict"):
        return None
    machines_too = engagement_settings(delivery.webhook.project_id).webhook_machine_events
    if event.verdict not in PERSON_VERDICTS and not machines_too:
        return "The event turned out a machine's."
    engagement.update(verdict=event.verdict, by_person=event.verdict in PERSON_VERDICTS, probable=event.probable)
    delivery.payload["engagement"] = engagement
    WebhookDelivery.objects.filter(pk=delivery.pk).update(payload=delivery.payload)
    return None


def delivery_attempt(delivery_id: int, now: datetime | None = None) -> outbox.Outcome | None:
    """POST the delivery once, if it is due and no one else is sending it.
    2xx is success; 410 Gone or a refused target gives up; anything else
    (other status, timeout, connection error) is retried later. Every attempt
    is logged with its status code, time and the start of the answer."""
    now = now or timezone.now()
    if not outbox.claim(WebhookDelivery, delivery_id, now):
        return None
    delivery = WebhookDelivery.objects.select_related("webhook", "engagement_event").get(pk=delivery_id)
    hook = delivery.webhook
    if not hook.active:
        return outbox.skipped(delivery, now, "The webhook was switched off.")
    if reason := _engagement_skip_reason(delivery):
        return outbox.skipped(delivery, now, reason)
    body = json.dumps(delivery.payload, ensure_ascii=False, separators=(",", ":")).encode()
    started = time.monotonic()
    answer, error = None, None
    try:
        secret = webhook_secret(hook)
    except ValueError as exc:
        error = outbox.SendError(str(exc), permanent=True)
    else:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            EVENT_HEADER: delivery.event,
            DELIVERY_HEADER: str(delivery.event_id),
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
        }
        try:
            answer = http.post(
                hook.url,
                body,
                headers,
                timeout=conf.webhook_timeout(),
                guard=True,
                allow_private=conf.allow_private_targets(),
            )
        except http.RequestFailed as exc:
            error = outbox.SendError(str(exc), permanent=exc.refused)
        else:
            if not 200 <= answer.status < 300:
                error = outbox.SendError(
                    f"HTTP {answer.status}",
                    permanent=answer.status == 410,
                    retry_after=_retry_after(answer),
                    status_code=answer.status,
                )
    WebhookAttempt.objects.create(
        delivery=delivery,
        number=delivery.attempts + 1,
        at=now,
        status_code=answer.status if answer else None,
        error=error.message if error else "",
        response_excerpt=answer.text() if answer else "",
        duration_ms=int((time.monotonic() - started) * 1000),
    )
    if error is None:
        return outbox.succeeded(delivery, now, last_status_code=answer.status)
    return outbox.failed(delivery, now, error, last_status_code=error.status_code)


def delivery_redeliver(delivery: WebhookDelivery, now: datetime | None = None) -> bool:
    """Send a delivery again now, whatever became of it (same id and payload,
    a new timestamp and signature), with a fresh 24-hour retry window. False
    while an attempt is under way."""
    now = now or timezone.now()
    return (
        WebhookDelivery.objects.filter(pk=delivery.pk)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(status=OutboundStatus.PENDING, next_attempt_at=now, give_up_at=now + RETRY_WINDOW)
        == 1
    )
