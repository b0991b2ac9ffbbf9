"""A person's data in what the integrations keep: the webhook deliveries
whose payload is about one of their leads or names them (message events name
the recipient), with the log of each attempt.

Erasure redacts those copies: a lead's payload loses the fields retention
erases on the lead itself (sender's name and address, subject, comment), and
the person's address is replaced wherever else it appears (recipient, the
receiver's answer). Ids, events and statuses stay, so the delivery log still
counts. Notifications and conversions keep no copy of the lead: they are
rendered from it when sent.
"""

from django.db.models import Q

from attribution.privacy import leads_of
from lib.privacy import mentions, redact, row

from .models import WebhookAttempt, WebhookDelivery

# The lead fields retention erases (attribution.retention.erase_leads).
LEAD_FIELDS = ("sender_email", "sender_name", "subject", "comment")


def deliveries_for(project_id: int, email: str) -> list[int]:
    """Ids of the deliveries about the person's leads or naming them."""
    lead_ids = set(leads_of(project_id, email).values_list("pk", flat=True))
    rough = WebhookDelivery.objects.filter(webhook__project_id=project_id).filter(
        Q(lead_id__in=lead_ids) | Q(payload__icontains=email)
    )
    return [
        pk
        for pk, lead_id, payload in rough.values_list("pk", "lead_id", "payload")
        if lead_id in lead_ids or mentions(payload, email)
    ]


def export_person(project_id: int, email: str) -> dict:
    deliveries = WebhookDelivery.objects.filter(pk__in=deliveries_for(project_id, email)).order_by("created_at", "pk")
    return {"webhook_deliveries": [row(delivery) for delivery in deliveries]}


def _redacted(payload, email: str, *, their_lead: bool):
    payload = redact(payload, email)
    lead = payload.get("lead") if isinstance(payload, dict) else None
    if their_lead and isinstance(lead, dict):
        payload["lead"] = {**lead, **{name: "" for name in LEAD_FIELDS if name in lead}}
    return payload


def erase_person(project_id: int, email: str) -> dict:
    ids = deliveries_for(project_id, email)
    lead_ids = set(leads_of(project_id, email).values_list("pk", flat=True))
    for delivery in WebhookDelivery.objects.filter(pk__in=ids).only("pk", "lead_id", "payload"):
        payload = _redacted(delivery.payload, email, their_lead=delivery.lead_id in lead_ids)
        WebhookDelivery.objects.filter(pk=delivery.pk).update(payload=payload)
    attempts = WebhookAttempt.objects.filter(delivery_id__in=ids, response_excerpt__icontains=email)
    for attempt in attempts.only("pk", "response_excerpt"):
        WebhookAttempt.objects.filter(pk=attempt.pk).update(response_excerpt=redact(attempt.response_excerpt, email))
    return {"webhook_deliveries": len(ids)}
