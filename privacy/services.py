"""A person's data across a project, on their request: everything kept about
one email address (as a sender or a recipient) exported as one JSON document
per project, or erased.

Each app that keeps personal data answers for its own tables in its
`privacy` module; this module only composes them:
- attribution: the leads whose sender they are; the letters they sent, erased
  through retention's own functions, so the sender's keyed digest is kept and
  the person writing again is still a returning customer;
- mailbox_sync: letters of others that name them (To, Cc, Reply-To), replies
  read from Sent that went to them;
- tracker: the sessions that led to their leads;
- engagement: their recipient rows of the project's messages with the opens
  and clicks (IP address, user agent) recorded for them;
- relay: the queued copies of letters to them;
- integrations: webhook deliveries about their leads or naming them.

Erasure keeps every row that is counted (leads, letters, sessions, messages,
events, deliveries), so every report gives the same figures after it. Each
project's erasure is one transaction, and leaves one audit line that names the
person only by the keyed digest.
"""

import logging

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from attribution import privacy as lead_privacy
from attribution.retention import sender_digest
from engagement import privacy as engagement_privacy
from integrations import privacy as integration_privacy
from lib.privacy import normalize_email
from mailbox_sync import privacy as letter_privacy
from projects.models import Project
from relay import privacy as relay_privacy
from tracker import privacy as session_privacy

audit = logging.getLogger("privacy.audit")

FORMAT = "emailtrack/person-data/1"

# The kinds of items a document lists, as a person reads them.
KINDS = {
    "leads": _("Leads"),
    "letters": _("Letters"),
    "replies": _("Replies read from Sent"),
    "sessions": _("Sessions"),
    "messages": _("Tracked messages (with opens and clicks)"),
    "opt_outs": _("Opt-out entries (kept)"),
    "relay_copies": _("Relay copies"),
    "webhook_deliveries": _("Webhook deliveries"),
}


def export_person(project: Project, email: str) -> dict:
    """One document: every item of the project that is about the person, with all its fields and ids."""
    email = normalize_email(email)
    return {
        "format": FORMAT,
        "email": email,
        "exported_at": timezone.now().isoformat(),
        "project": {"id": project.pk, "name": project.name},
        **lead_privacy.export_person(project.pk, email),
        **letter_privacy.export_person(project.pk, email),
        "sessions": session_privacy.export_sessions(lead_privacy.session_ids(project.pk, email)),
        **engagement_privacy.export_person(project.pk, email),
        **relay_privacy.export_person(project.pk, email),
        **integration_privacy.export_person(project.pk, email),
    }


def counts(document: dict) -> dict[str, int]:
    """How many items of each kind a document holds."""
    return {key: len(value) for key, value in document.items() if isinstance(value, list)}


def described(document: dict) -> list[tuple[str, int]]:
    """(kind as a person reads it, how many) for each kind the document holds."""
    return [(KINDS.get(key, key), count) for key, count in counts(document).items() if count]


def found(document: dict) -> bool:
    return any(counts(document).values())


def export_people(pairs) -> list[dict]:
    """A document for each (project, address) pair that holds anything."""
    documents = (export_person(project, email) for project, email in pairs)
    return [document for document in documents if found(document)]


def erase_person(project: Project, email: str, *, by: str) -> dict[str, int]:
    """Erase what identifies the person in the project; say how many items of each kind were touched.

    Order matters: the parts that find the person through their leads
    (sessions, webhook deliveries) go before the leads lose the address."""
    email = normalize_email(email)
    with transaction.atomic():
        sessions = lead_privacy.session_ids(project.pk, email)
        erased = {
            **integration_privacy.erase_person(project.pk, email),
            **relay_privacy.erase_person(project.pk, email),
            **engagement_privacy.erase_person(project.pk, email),
            "sessions": session_privacy.erase_sessions(sessions),
            **letter_privacy.erase_person(project.pk, email),
            **lead_privacy.erase_person(project.pk, email),
        }
    audit.info(
        "person data erased: project=%s person_digest=%s by=%s at=%s %s",
        project.pk,
        sender_digest(project.pk, email),
        by,
        timezone.now().isoformat(),
        " ".join(f"{key}={value}" for key, value in erased.items()),
    )
    return erased


def erase_people(pairs, *, by: str) -> list[tuple[Project, dict[str, int]]]:
    return [(project, erase_person(project, email, by=by)) for project, email in pairs]
