"""Changes to leads by people, and the lead events integrations listen to."""

from decimal import Decimal

import pytest
from django.utils import timezone

from attribution import events
from attribution.leads import LeadChangeError, lead_update
from attribution.models import Lead, Tag
from mailbox_sync.services import ingest_raw
from tests.factories import letter_bytes, make_setup

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def heard():
    calls = []

    def created(lead_id):
        calls.append(("created", lead_id))

    def updated(lead_id):
        calls.append(("updated", lead_id))

    events.subscribe(events.LEAD_CREATED, created)
    events.subscribe(events.LEAD_UPDATED, updated)
    yield calls
    events._listeners[events.LEAD_CREATED].remove(created)
    events._listeners[events.LEAD_UPDATED].remove(updated)


def test_a_new_lead_and_a_letter_joining_it_are_announced_after_commit(heard):
    setup = make_setup()
    first = ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to="info@shop.test", subject="One"))
    second = ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to="info@shop.test", subject="Two"))
    assert first.lead_id == second.lead_id
    assert heard == [("created", first.lead_id), ("updated", first.lead_id)]


def test_status_tags_comment_and_amount_are_validated_and_announced_once(heard):
    setup = make_setup()
    lead = Lead.objects.create(
        project=setup.project,
        created_at=timezone.now(),
        last_letter_at=timezone.now(),
        sender_email="c@x.test",
        match_kind="unknown",
    )
    lead_update(
        lead=lead, status="won", tags=["VIP", "vip", " repeat  buyer "], comment="Called back", deal_amount="1500.5"
    )
    lead.refresh_from_db()
    assert (lead.status, lead.comment, lead.deal_amount) == ("won", "Called back", Decimal("1500.50"))
    assert sorted(lead.tags.values_list("name", flat=True)) == ["VIP", "repeat buyer"]
    assert heard == [("updated", lead.pk)]
    lead_update(lead=lead, status="won")  # nothing changes: no event
    assert heard == [("updated", lead.pk)]
    for bad in (
        {"status": "maybe"},
        {"deal_amount": "lots"},
        {"deal_amount": -1},
        {"tags": "vip"},
        {"tags": ["x" * 51]},
        {"comment": "x" * 5001},
    ):
        with pytest.raises(LeadChangeError):
            lead_update(lead=lead, **bad)
    assert Tag.objects.filter(project=setup.project).count() == 2
