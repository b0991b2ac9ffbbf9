"""Retention: sessions and visitors that no lead refers to are deleted after
RETENTION_DAYS, so the tables that grow with every page view stay bounded."""

from datetime import timedelta

import pytest
from django.utils import timezone

from attribution.models import Lead, MatchKind
from substitution.models import Lease
from tests.factories import make_setup, minutes
from tracker import services, tasks
from tracker.models import Session, Visitor


def person(setup, vid, at, *session_starts):
    visitor = Visitor.objects.create(site=setup.site, vid=vid, created_at=at, last_seen_at=max((at, *session_starts)))
    for start in session_starts:
        Session.objects.create(visitor=visitor, started_at=start, last_seen_at=start + minutes(5))
    return visitor


def lead_for(setup, **refs):
    now = timezone.now()
    return Lead.objects.create(
        project=setup.project, created_at=now, last_letter_at=now, match_kind=MatchKind.LIVE_LEASE, **refs
    )


@pytest.mark.django_db
def test_retention_deletes_old_sessions_and_emptied_visitors_but_keeps_what_a_lead_refers_to(settings):
    settings.RETENTION_DAYS = 90
    setup = make_setup()
    now = timezone.now()
    old, recent = now - timedelta(days=91), now - timedelta(days=89)
    gone = person(setup, "gone-0001", old, old)
    mixed = person(setup, "mixed-0001", old, old, recent)
    by_session = person(setup, "lead-s-0001", old, old)
    lead_for(setup, session=by_session.sessions.get())
    by_visitor = person(setup, "lead-v-0001", old, old)
    lead_for(setup, visitor=by_visitor)
    with_lease = person(setup, "lease-0001", old, old)
    Lease.objects.create(
        pool=setup.pool,
        address=setup.pool.addresses.first(),
        visitor=with_lease,
        started_at=old,
        last_activity_at=old,
        expires_at=old + minutes(30),
        released_at=old + minutes(30),
        end_reason=Lease.EndReason.EXPIRED,
    )

    assert services.purge_old_sessions(now) == (4, 1)

    assert not Visitor.objects.filter(pk=gone.pk).exists()
    assert list(mixed.sessions.values_list("started_at", flat=True)) == [recent]
    assert by_session.sessions.count() == 1
    assert Lead.objects.filter(session__isnull=False).count() == 1
    assert Visitor.objects.filter(pk=by_visitor.pk).exists()
    assert not by_visitor.sessions.exists()
    assert Visitor.objects.filter(pk=with_lease.pk).exists()
    assert services.purge_old_sessions(now) == (0, 0)


@pytest.mark.django_db
def test_retention_days_is_a_setting_and_the_work_goes_in_batches(settings, monkeypatch):
    settings.RETENTION_DAYS = 10
    monkeypatch.setattr(services, "RETENTION_BATCH", 2)
    setup = make_setup()
    now = timezone.now()
    for n in range(5):
        person(setup, f"old-visitor-{n}", now - timedelta(days=11), now - timedelta(days=11))
    person(setup, "young-visitor", now - timedelta(days=9), now - timedelta(days=9))
    assert tasks.purge_old_sessions() == {"sessions": 5, "visitors": 5}
    assert list(Visitor.objects.values_list("vid", flat=True)) == ["young-visitor"]


@pytest.mark.django_db
def test_a_batch_checks_again_under_lock_so_a_lead_written_meanwhile_keeps_its_session():
    setup = make_setup()
    now = timezone.now()
    old = now - timedelta(days=100)
    visitor = person(setup, "raced-0001", old, old, old + minutes(10))
    referenced = visitor.sessions.earliest("started_at")
    # The batch was chosen before the lead existed (a snapshot without it).
    stale_choice = Session.objects.filter(started_at__lt=now)
    lead_for(setup, session=referenced)
    assert services._purge_batch(stale_choice) == (2, 1)
    assert list(Session.objects.all()) == [referenced]
    assert Lead.objects.get().session == referenced
