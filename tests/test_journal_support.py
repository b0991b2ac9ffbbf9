"""Builders shared by the journal tests (tests/test_journal_*.py); no tests here."""

from datetime import timedelta

from django.contrib.auth import get_user_model
from django.utils import timezone

from attribution.models import Lead, MatchKind, Tag
from mailbox_sync.services import ingest_raw
from projects.models import Membership
from substitution.services import lease_acquire
from tests.factories import letter_bytes
from tracker.models import Channel, Session, Visitor


def member(username, project=None, role=Membership.Role.MARKETER, **fields):
    fields.setdefault("is_staff", True)
    user = get_user_model().objects.create_user(username, password="pw-" + username, **fields)
    if project is not None:
        Membership.objects.create(project=project, user=user, role=role)
    return user


def make_lead(project, subject="Enquiry", at=None, minutes_ago=0, tags=(), **fields):
    """A lead row as attribution writes it (for list and report tests that
    need many leads with chosen fields; the pipeline has its own tests)."""
    at = at or timezone.now() - timedelta(minutes=minutes_ago)
    fields.setdefault("sender_email", "c@client.test")
    fields.setdefault("match_kind", MatchKind.LIVE_LEASE)
    lead = Lead.objects.create(project=project, created_at=at, last_letter_at=at, subject=subject, **fields)
    if tags:
        lead.tags.set([Tag.objects.get_or_create(project=project, name=name)[0] for name in tags])
    return lead


def visit_and_write(
    setup, at, vid, *, sender="Ivan Petrov <ivan@client.test>", subject="Price list", body="Hello!", **session
):
    """A visitor with one session gets an address at `at` and writes to it ten
    minutes later: a lead made by the real pipeline (store → attribute)."""
    session.setdefault("channel", Channel.DIRECT)
    visitor = Visitor.objects.create(site=setup.site, vid=vid, created_at=at, last_seen_at=at)
    Session.objects.create(visitor=visitor, started_at=at, last_seen_at=at, **session)
    allocation = lease_acquire(pool=setup.pool, visitor=visitor, now=at)
    raw = letter_bytes(to=allocation.email, sender=sender, subject=subject, body=body)
    letter = ingest_raw(mailbox=setup.mailbox, raw=raw, received_at=at + timedelta(minutes=10))
    return letter.lead
