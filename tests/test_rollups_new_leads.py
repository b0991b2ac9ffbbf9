"""Report days: leads just created are added to their days and weeks
(`rollups.count_new_leads`) instead of counting those days again, and the
days still equal the ones counted from scratch: new groups and groups the
days had, both sides of the project's midnight and of a week's end, with a
deal, and a lead of the mailbox grouping's first letter."""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import connection

from attribution.batch import attribute_letters
from attribution.models import Lead, MatchKind
from costs import rollups
from costs.models import ReportDay
from substitution.models import Lease
from tests.factories import make_setup
from tests.test_attribution_batch import world
from tests.test_journal_support import make_lead
from tests.test_rollups import MOSCOW, PAID, assert_days_as_rebuilt, shop  # noqa: F401 - the fixture
from tracker.models import Channel

pytestmark = pytest.mark.django_db

SUNDAY_LATE = datetime(2025, 7, 6, 20, 30, tzinfo=UTC)  # Sunday 6 July, 23:30 in Moscow
MONDAY_EARLY = datetime(2025, 7, 6, 21, 30, tzinfo=UTC)  # Monday 7 July, 00:30 in Moscow: the next week


def uncounted(project, at, **fields) -> Lead:
    """A lead written as attribution writes them (no save signal): not in its days yet."""
    fields.setdefault("sender_email", "new@client.test")
    lead = Lead(
        project=project, created_at=at, last_letter_at=at, subject="Enquiry", match_kind=MatchKind.LIVE_LEASE, **fields
    )
    Lead.objects.bulk_create([lead])
    return lead


def leads_of(project, day: date, grouping: str) -> int:
    return sum(ReportDay.objects.filter(project=project, day=day, grouping=grouping).values_list("leads", flat=True))


@pytest.mark.skipif(connection.vendor != "postgresql", reason="elsewhere the days are counted again")
def test_new_leads_are_added_to_their_days_and_weeks_as_a_recount_would(shop):  # noqa: F811
    project = shop.project
    make_lead(project, at=SUNDAY_LATE, sender_email="old@client.test", **PAID)
    make_lead(project, at=MONDAY_EARLY, sender_email="old2@client.test", channel=Channel.ORGANIC, source="google")
    before = assert_days_as_rebuilt(project)
    assert leads_of(project, date(2025, 7, 6), "channel") == 1

    new = [
        uncounted(project, SUNDAY_LATE + timedelta(minutes=5), **PAID),  # a group the day has
        uncounted(project, SUNDAY_LATE + timedelta(minutes=6), first_contact=True, **PAID),
        uncounted(project, MONDAY_EARLY, channel=Channel.SOCIAL, source="vk"),  # a new group, the next week
        uncounted(
            project,
            MONDAY_EARLY + timedelta(hours=1),
            status=Lead.Status.WON,
            deal_amount=Decimal("1500.50"),
            site=shop.site,
            **PAID,
        ),
    ]
    rollups.count_new_leads([lead.pk for lead in new])

    after = assert_days_as_rebuilt(project)
    assert after != before
    assert leads_of(project, date(2025, 7, 6), "channel") == 3
    assert leads_of(project, date(2025, 6, 30), "channel/week") == 3  # the week of Monday 30 June
    assert leads_of(project, date(2025, 7, 7), "channel/week") == 3
    won = ReportDay.objects.get(project=project, day=date(2025, 7, 7), grouping="site", ref=shop.site.pk)
    assert (won.leads, won.deals, won.amount) == (1, 1, Decimal("1500.50"))


def test_no_leads_change_nothing(shop):  # noqa: F811
    make_lead(shop.project, at=SUNDAY_LATE, **PAID)
    before = assert_days_as_rebuilt(shop.project)
    rollups.count_new_leads([])
    assert assert_days_as_rebuilt(shop.project) == before


def test_a_batch_of_letters_attributed_together_leaves_the_days_as_a_rebuild_counts_them():
    """Attribution's leads of every kind (a lease shown in a block, static,
    unknown, letters joining leads from before, two mailboxes) added by
    count_new_leads in the batch's transaction."""
    setup = make_setup(original="info@shop.test", pool_size=8, hold_minutes=30)
    order, _before = world(setup)
    Lease.objects.filter(pool=setup.pool).update(block=setup.block)
    rollups.rebuild(setup.project)
    attribute_letters([letter.pk for letter in order])
    leads = Lead.objects.filter(project=setup.project)
    assert leads.filter(lease__block=setup.block).exists()
    assert leads.exclude(lease__isnull=False).exists()
    assert_days_as_rebuilt(setup.project)
