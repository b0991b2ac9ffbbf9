"""A known visitor's lease reads its pool's hold, policy and cap from the
rules' snapshot, not from the pool's row on every allocation."""

from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from substitution.models import Lease, Pool
from substitution.rules import forget_snapshots
from substitution.visits import VisitRequest, substitute
from tests.factories import make_setup
from tracker.models import Visitor

T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)


def _visitor(site, name):
    return Visitor.objects.create(site=site, vid=f"visitor-{name}", created_at=T0, last_seen_at=T0)


def _lease(site, visitor, now):
    return substitute(VisitRequest(site_id=site.pk, now=now, visitor_id=visitor.pk))


@pytest.mark.django_db
def test_a_known_visitors_lease_reads_no_pool_row_and_keeps_the_pools_hold():
    setup = make_setup(pool_size=3, hold_minutes=20)
    _lease(setup.site, _visitor(setup.site, "first"), T0)  # the snapshot is read
    with CaptureQueriesContext(connection) as queries:
        answer = _lease(setup.site, _visitor(setup.site, "second"), T0)
    assert not [q["sql"] for q in queries if "substitution_pool" in q["sql"].split("WHERE")[0]]
    assert answer.hold_minutes == 20 and answer.expires_at == T0 + timedelta(minutes=20)
    assert Lease.objects.get(pk=answer.lease_ids[0]).expires_at == T0 + timedelta(minutes=20)


@pytest.mark.django_db
def test_a_pools_new_hold_and_policy_apply_once_the_snapshot_is_read_again():
    setup = make_setup(pool_size=1, hold_minutes=30)
    _lease(setup.site, _visitor(setup.site, "holder"), T0)
    Pool.objects.filter(pk=setup.pool.pk).update(hold_minutes=10, exhausted_policy=Pool.ExhaustedPolicy.TAKE_OVER)
    forget_snapshots()  # as every process does within SNAPSHOT_SECONDS
    answer = _lease(setup.site, _visitor(setup.site, "taker"), T0 + timedelta(minutes=1))
    assert answer.subs and answer.hold_minutes == 10
    assert Lease.objects.filter(end_reason=Lease.EndReason.TAKEN_OVER).count() == 1
