"""Retention of personal data: letters' text and sender details past
PERSONAL_DATA_DAYS are erased by a periodic task; leads stay, and every
number in reports stays the same."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from attribution import retention, tasks
from attribution.leads import lead_update
from attribution.models import Lead
from mailbox_sync.models import Letter, LetterSource, Reply
from mailbox_sync.services import ingest_raw
from tests.factories import letter_bytes, make_setup
from tests.test_journal_support import member, visit_and_write
from tracker.models import Channel

pytestmark = pytest.mark.django_db

NOW = timezone.now().replace(microsecond=0)


@pytest.fixture
def setup():
    return make_setup()


def write(setup, days_ago, sender, subject="Bricks", body="Call me at +7 900 000-00-00", **session):
    return visit_and_write(
        setup,
        NOW - timedelta(days=days_ago, minutes=10),
        f"visitor-{sender[:5]}-{days_ago}",
        sender=sender,
        subject=subject,
        body=body,
        **session,
    )


def report_numbers(client, project) -> tuple:
    report = client.get(
        "/journal/reports/",
        {"project": project.pk, "date_from": (NOW - timedelta(days=360)).date(), "date_to": NOW.date()},
    ).context["report"]
    rows = [(r.source, r.medium, r.campaign, r.leads, r.first_contacts, r.amount) for r in report.rows]
    return report.total.leads, report.total.first_contacts, report.total.amount, report.channels, rows


def test_old_letters_and_leads_lose_their_personal_data_and_reports_stay_the_same(client, setup, settings):
    settings.PERSONAL_DATA_DAYS = 300
    old = write(setup, 330, "Ivan Petrov <ivan@client.test>", channel=Channel.PAID, source="google", utm_campaign="a")
    recent = write(setup, 30, "Olga Sidorova <olga@client.test>", channel=Channel.ORGANIC, source="yandex")
    lead_update(lead=old, status="won", deal_amount="1000", tags=["vip"])
    client.force_login(member("mark", setup.project))
    before = report_numbers(client, setup.project)
    assert before[0] == 2

    erased = retention.erase_personal_data(NOW)

    assert erased.as_dict() == {"letters": 1, "leads": 1, "replies": 0}
    letter = Letter.objects.get(lead=old)
    assert (letter.text, letter.sender_name, letter.sender_email, letter.headers) == ("", "", "", {})
    assert not LetterSource.objects.filter(letter=letter).exists()
    old.refresh_from_db()
    assert (old.sender_name, old.sender_email) == ("", "")
    # What reports and the journal need stays.
    assert (old.status, old.deal_amount, old.channel, old.source, old.first_contact) == (
        "won",
        Decimal("1000.00"),
        "paid",
        "google",
        True,
    )
    assert list(old.tags.values_list("name", flat=True)) == ["vip"]
    kept = Letter.objects.get(lead=recent)
    assert kept.text.startswith("Call me") and kept.sender_email == "olga@client.test"
    assert LetterSource.objects.filter(letter=kept).exists()
    recent.refresh_from_db()
    assert recent.sender_email == "olga@client.test"
    assert report_numbers(client, setup.project) == before

    page = client.get(f"/journal/leads/{old.pk}/").content.decode()
    assert "ivan@client.test" not in page and "Ivan Petrov" not in page and "+7 900" not in page
    assert "erased" in page


def test_a_lead_keeps_its_sender_while_any_of_its_letters_is_recent(setup, settings):
    settings.PERSONAL_DATA_DAYS = 365
    lead = write(setup, 366, "Ivan <ivan@client.test>")
    # A reply in the same thread a year later joins the lead.
    first = Letter.objects.get(lead=lead)
    raw = letter_bytes(
        to=first.recipients["to"][0],
        sender="Ivan <ivan@client.test>",
        subject="Re: Bricks",
        headers={"In-Reply-To": first.message_id},
    )
    ingest_raw(mailbox=setup.mailbox, raw=raw, received_at=NOW - timedelta(days=2))
    assert Letter.objects.filter(lead=lead).count() == 2

    assert retention.erase_personal_data(NOW).as_dict() == {"letters": 1, "leads": 0, "replies": 0}
    lead.refresh_from_db()
    assert lead.sender_email == "ivan@client.test"
    assert sorted(Letter.objects.filter(lead=lead).values_list("sender_email", flat=True)) == ["", "ivan@client.test"]


def test_letters_that_are_not_leads_and_replies_are_erased_too(setup, settings):
    settings.PERSONAL_DATA_DAYS = 30
    raw = letter_bytes(to="info@shop.test", sender="robot@list.test", headers={"List-Id": "<news.list.test>"})
    letter = ingest_raw(mailbox=setup.mailbox, raw=raw, received_at=NOW - timedelta(days=31))
    assert letter.lead_id is None and letter.not_lead_reason
    Reply.objects.create(
        mailbox=setup.mailbox,
        folder="Sent",
        uidvalidity=1,
        uid=1,
        dedupe_key="r1",
        sent_at=NOW - timedelta(days=31),
        recipients=["ivan@client.test"],
    )
    assert retention.erase_personal_data(NOW).as_dict() == {"letters": 1, "leads": 0, "replies": 1}
    letter.refresh_from_db()
    assert (letter.sender_email, letter.text) == ("", "")
    assert Reply.objects.get().recipients == []


def test_erasing_is_idempotent_works_in_batches_and_zero_days_turns_it_off(setup, settings, monkeypatch):
    settings.PERSONAL_DATA_DAYS = 0
    for n in range(5):
        write(setup, 400 + n, f"Client {n} <c{n}@client.test>")
    assert retention.erase_personal_data(NOW).as_dict() == {"letters": 0, "leads": 0, "replies": 0}
    assert Lead.objects.exclude(sender_email="").count() == 5

    settings.PERSONAL_DATA_DAYS = 365
    monkeypatch.setattr(retention, "BATCH", 2)
    assert retention.erase_personal_data(NOW).as_dict() == {"letters": 5, "leads": 5, "replies": 0}
    assert retention.erase_personal_data(NOW).as_dict() == {"letters": 0, "leads": 0, "replies": 0}
    assert not LetterSource.objects.exists()


def test_the_periodic_task_runs_the_erasure_with_the_setting(setup, settings):
    settings.PERSONAL_DATA_DAYS = 365
    write(setup, 400, "Ivan <ivan@client.test>")
    write(setup, 10, "Olga <olga@client.test>")
    assert tasks.erase_personal_data.apply().get() == {"letters": 1, "leads": 1, "replies": 0}
    assert sorted(Lead.objects.values_list("sender_email", flat=True)) == ["", "olga@client.test"]
