"""Written-behind activity and the release of expired leases write a batch
in a few statements whatever its size: the flush and the release run every
minute (and a simulation runs them for every virtual minute), so one
statement per row made them the busiest part of the beat."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from substitution import activity, services
from substitution.models import Address, Lease
from tests.factories import make_setup
from tracker.models import Session, Visitor

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("fresh_redis")]


def _visitors(setup, count, now):
    """`count` visitors, each with a session and a lease of the pool."""
    made = []
    for i in range(count):
        visitor = Visitor.objects.create(site=setup.site, vid=f"batch{i:05d}", created_at=now, last_seen_at=now)
        session = Session.objects.create(visitor=visitor, started_at=now, last_seen_at=now, last_urls=["/"])
        lease = services.lease_acquire(pool=setup.pool, visitor=visitor, now=now).lease
        made.append((visitor, session, lease))
    return made


def _queue(made, at, views):
    """Pending activity as collect's fast path queues it."""
    client = activity.redis()
    for visitor, session, lease in made:
        client.hset(activity.PENDING_LEASES, lease.pk, at.timestamp())
        client.hset(activity.PENDING_SESSIONS, session.pk, at.timestamp())
        client.hset(activity.PENDING_VISITORS, visitor.pk, at.timestamp())
        for url in views:
            client.rpush(activity.PAGE_VIEWS, f"{session.pk} {url}")


@pytest.mark.parametrize("count", [2, 12])
def test_a_flush_writes_any_number_of_rows_in_the_same_few_statements(count):
    setup = make_setup(pool_size=12, hold_minutes=30)
    now = timezone.now().replace(microsecond=0)
    made = _visitors(setup, count, now)
    later = now + timedelta(minutes=7)
    _queue(made, later, ["/a", "/b"])

    with CaptureQueriesContext(connection) as queries:
        assert activity.flush() == count

    writes = [q["sql"] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))]
    assert len(writes) == 5, writes  # leases locked + written, sessions locked + written, visitors written
    for visitor, session, lease in made:
        lease.refresh_from_db()
        session.refresh_from_db()
        visitor.refresh_from_db()
        assert (lease.last_activity_at, lease.expires_at) == (later, later + timedelta(minutes=30))
        assert (session.last_seen_at, session.page_views, session.last_urls) == (later, 2, ["/", "/a", "/b"])
        assert visitor.last_seen_at == later


def test_a_flush_never_moves_a_time_back():
    setup = make_setup(pool_size=2, hold_minutes=30)
    now = timezone.now().replace(microsecond=0)
    made = _visitors(setup, 1, now)
    _queue(made, now - timedelta(minutes=5), [])

    activity.flush()

    ((visitor, session, lease),) = made
    assert Lease.objects.get(pk=lease.pk).expires_at == lease.expires_at
    assert Session.objects.get(pk=session.pk).last_seen_at == now
    assert Visitor.objects.get(pk=visitor.pk).last_seen_at == now


def test_nothing_pending_costs_no_database_work():
    with CaptureQueriesContext(connection) as queries:
        assert activity.flush() == 0
    assert len(queries) == 0


@pytest.mark.parametrize("count", [2, 10])
def test_a_release_ends_any_number_of_leases_in_the_same_few_statements(count):
    setup = make_setup(pool_size=10, hold_minutes=30)
    now = timezone.now().replace(microsecond=0)
    made = _visitors(setup, count, now)

    with CaptureQueriesContext(connection) as queries:
        assert services.release_expired_leases(setup.pool, now + timedelta(hours=1)) == count

    statements = [q["sql"] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))]
    # Any expired, then (PostgreSQL) one statement that locks, ends and frees
    # them, else three.
    assert len(statements) == (2 if connection.vendor == "postgresql" else 4), statements
    for _visitor, _session, lease in made:
        lease.refresh_from_db()
        address = Address.objects.get(pk=lease.address_id)
        assert (lease.released_at, lease.end_reason) == (lease.expires_at, Lease.EndReason.EXPIRED)
        assert (address.last_released_at, address.held) == (lease.expires_at, False)


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the statements of PostgreSQL's leasing")
def test_a_returning_visitor_after_the_hold_releases_the_pools_expired_leases_without_looking_for_them_again():
    setup = make_setup(pool_size=10, hold_minutes=30)
    now = timezone.now().replace(microsecond=0)
    made = _visitors(setup, 3, now)
    (returning, _session, own), *others = made
    later = now + timedelta(hours=1)

    with CaptureQueriesContext(connection) as queries:
        leased = services.lease_acquire(pool=setup.pool, visitor=returning, now=later)

    statements = [q["sql"] for q in queries if not q["sql"].startswith(("SAVEPOINT", "RELEASE", "BEGIN", "COMMIT"))]
    # Its own lease settled (and the pool's expired ones read), the others released, the new lease.
    assert len(statements) == 3, statements
    assert leased.lease.address_id == own.address_id and leased.lease.started_at == later
    for _visitor, _session, lease in [(None, None, own), *others]:
        lease.refresh_from_db()
        assert (lease.released_at, lease.end_reason) == (lease.expires_at, Lease.EndReason.EXPIRED)
