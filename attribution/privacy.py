"""A person's data among the leads: the leads whose sender they are, and (as
the owner of the digest that keeps a returning customer known) the letters
they sent.

Erasure goes through retention's own functions (`retention.erase_letters`,
`retention.erase_leads`), so a person's erasure and the time-based one erase
exactly the same fields and keep the same things: every lead with its source,
times, status and amount (report counts and sums do not change), and the
sender's keyed digest (`ErasedSender`), so the person writing again is still a
returning customer.

The privacy app composes every app's part (sessions, engagement, relay,
integrations live above attribution). It hands its entry points over here when
it starts (`provide`), as listeners subscribe to lead events, so that the lead
admin's actions reach them without attribution importing the apps above it.
"""

from django.core.exceptions import ImproperlyConfigured

from lib.privacy import row
from mailbox_sync import privacy as letter_privacy

from . import retention
from .models import ErasedSender, Lead


def leads_of(project_id: int, email: str):
    """The leads whose sender is the person (`email` normalised: lower case, as letters store it)."""
    return Lead.objects.filter(project_id=project_id, sender_email=email)


def session_ids(project_id: int, email: str) -> list[int]:
    """The visits that led to the person's leads."""
    return list(leads_of(project_id, email).exclude(session=None).values_list("session_id", flat=True).distinct())


def export_person(project_id: int, email: str) -> dict:
    leads = leads_of(project_id, email).prefetch_related("tags").order_by("created_at", "pk")
    digest = ErasedSender.objects.filter(
        project_id=project_id, digest=retention.sender_digest(project_id, email)
    ).first()
    return {
        "leads": [{**row(lead), "tags": [tag.name for tag in lead.tags.all()]} for lead in leads],
        "erased_earlier": {"first_letter_at": digest.first_letter_at.isoformat()} if digest else None,
    }


def erase_person(project_id: int, email: str) -> dict:
    """Erase the letters the person sent and their leads, as retention does:
    the digest of the sender is kept before the letters lose the address."""
    letters = retention.in_batches(letter_privacy.letters_from(project_id, email), retention.erase_letters)
    leads = retention.in_batches(leads_of(project_id, email), retention.erase_leads)
    return {"letters": letters, "leads": leads}


_composer = None


def provide(composer) -> None:
    """The privacy app's module with `export_people(pairs)` and
    `erase_people(pairs, by=...)` (pairs of project id and address)."""
    global _composer
    _composer = composer


def composer():
    if _composer is None:
        raise ImproperlyConfigured("A person's data needs the privacy app in INSTALLED_APPS.")
    return _composer
