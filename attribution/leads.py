"""Changes people make to leads (journal, API): status, tags, comment, deal amount."""

from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone

from . import events
from .models import Lead, Tag

MAX_TAGS = 20
MAX_TAG_LENGTH = 50


class LeadChangeError(ValueError):
    """A change a person asked for that cannot be made; the message says why."""


def _clean_tags(tags) -> list[str]:
    if not isinstance(tags, (list, tuple)):
        raise LeadChangeError("Tags must be a list of words.")
    names = []
    for tag in tags:
        if not isinstance(tag, str) or not tag.strip():
            raise LeadChangeError("Every tag must be a non-empty text.")
        name = " ".join(tag.split())
        if len(name) > MAX_TAG_LENGTH:
            raise LeadChangeError(f"A tag is at most {MAX_TAG_LENGTH} characters.")
        if name.lower() not in {n.lower() for n in names}:
            names.append(name)
    if len(names) > MAX_TAGS:
        raise LeadChangeError(f"At most {MAX_TAGS} tags on a lead.")
    return names


def _clean_amount(amount):
    if amount in (None, ""):
        return None
    try:
        value = Decimal(str(amount)).quantize(Decimal("0.01"))
    except (InvalidOperation, ValueError):
        raise LeadChangeError("The deal amount must be a number.") from None
    if value < 0 or value >= Decimal("1e12") or not value.is_finite():
        raise LeadChangeError("The deal amount must be between 0 and 999,999,999,999.99.")
    return value


_UNSET = object()


@transaction.atomic
def lead_update(*, lead: Lead, status=_UNSET, tags=_UNSET, comment=_UNSET, deal_amount=_UNSET) -> Lead:
    """Apply the given changes (only those passed), validated; emits
    `lead.updated` after commit when anything changed."""
    lead = Lead.objects.select_for_update().get(pk=lead.pk)
    changed = []
    if status is not _UNSET:
        if status not in Lead.Status.values:
            raise LeadChangeError(f"Status must be one of: {', '.join(Lead.Status.values)}.")
        if status != lead.status:
            lead.status = status
            changed.append("status")
    if comment is not _UNSET:
        if not isinstance(comment, str) or len(comment) > 5000:
            raise LeadChangeError("The comment must be text of at most 5,000 characters.")
        if comment != lead.comment:
            lead.comment = comment
            changed.append("comment")
    if deal_amount is not _UNSET:
        value = _clean_amount(deal_amount)
        if value != lead.deal_amount:
            lead.deal_amount = value
            changed.append("deal_amount")
    if changed:
        lead.save(update_fields=[*changed, "updated_at"])
    if tags is not _UNSET:
        names = _clean_tags(tags)
        current = sorted(lead.tags.values_list("name", flat=True))
        if sorted(names) != current:
            lead.tags.set([Tag.objects.get_or_create(project_id=lead.project_id, name=name)[0] for name in names])
            Lead.objects.filter(pk=lead.pk).update(updated_at=timezone.now())
            changed.append("tags")
    if changed:
        events.emit(events.LEAD_UPDATED, lead.pk)
    return lead
