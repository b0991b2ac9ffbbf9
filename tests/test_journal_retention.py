"""Retention of personal data: letters' text, subjects, recipients, sender
details and comments past PERSONAL_DATA_DAYS are erased by a periodic task;
leads stay, every number in reports stays the same, and a sender who wrote
before the erasure is still known as a returning customer."""

from datetime import timedelta
from decimal import Decimal
from email.message import EmailMessage

import pytest
from django.utils import timezone

from attribution import retention, tasks
from attribution.leads import lead_update
from attribution.models import ErasedSender, Lead
from mailbox_sync.models import Letter, LetterSource, Reply
from mailbox_sync.services import ingest_raw
from substitution.services import lease_acquire
from tests.factories import letter_bytes, make_setup
from tests.test_journal_support import member, visit_and_write
from tracker.models import Channel, Session, Visitor

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
    lead_update(lead=old, status="won", deal_amount="1000", tags=["vip"], comment="Ivan's wife Anna will call back")
    client.force_login(member("mark", setup.project))
    before = report_numbers(client, setup.project)
    assert before[0] == 2

    erased = retention.erase_personal_data(NOW)

    assert erased.as_dict() == {"letters": 1, "leads": 1, "replies": 0}
    letter = Letter.objects.get(lead=old)
    assert (letter.text, letter.sender_name, letter.sender_email, letter.headers) == ("", "", "", {})
    assert (letter.subject, letter.recipients, letter.attachments) == ("", {}, [])
    assert not LetterSource.objects.filter(letter=letter).exists()
    old.refresh_from_db()
    assert (old.sender_name, old.sender_email, old.subject, old.comment) == ("", "", "", "")
    # The tracked address is the project's own: repeat periods still match by it.
    assert old.recipient.endswith("@shop.test")
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
    assert "Bricks" not in page and "Anna" not in page
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


def write_with_attachment(setup, days_ago):
    """A letter with a subject, a Cc, a header and an attachment named after the person."""
    at = NOW - timedelta(days=days_ago, minutes=10)
    visitor = Visitor.objects.create(site=setup.site, vid=f"attach-{days_ago}", created_at=at, last_seen_at=at)
    Session.objects.create(visitor=visitor, started_at=at, last_seen_at=at, channel=Channel.DIRECT)
    allocation = lease_acquire(pool=setup.pool, visitor=visitor, now=at)
    message = EmailMessage()
    message["From"] = "Ivan Petrov <ivan@client.test>"
    message["To"] = allocation.email
    message["Cc"] = "Anna Petrova <anna@client.test>"
    message["Subject"] = "Order for Petrov's dacha"
    message["Reply-To"] = "ivan.home@client.test"
    message["Message-ID"] = f"<attach-{days_ago}@client.test>"
    message.set_content("Bricks, please.")
    message.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename="passport-petrov.pdf")
    letter = ingest_raw(mailbox=setup.mailbox, raw=message.as_bytes(), received_at=at + timedelta(minutes=10))
    letter.refresh_from_db()
    return letter


def test_every_personal_field_of_a_letter_is_erased(setup, settings):
    settings.PERSONAL_DATA_DAYS = 300
    letter = write_with_attachment(setup, 330)
    # What the letter held before: each of these is personal.
    assert letter.subject == "Order for Petrov's dacha"
    assert "anna@client.test" in letter.recipients["cc"]
    assert "passport-petrov.pdf" in str(letter.attachments)
    assert letter.text and letter.sender_email and letter.sender_name
    assert LetterSource.objects.filter(letter=letter).exists()
    lead = letter.lead
    assert lead.subject == "Order for Petrov's dacha"

    retention.erase_personal_data(NOW)

    letter.refresh_from_db()
    kept = {field.attname: getattr(letter, field.attname) for field in Letter._meta.concrete_fields}
    for personal in ("petrov", "ivan", "anna", "passport", "dacha"):
        assert personal not in str(kept).lower(), (personal, kept)
    assert not LetterSource.objects.filter(letter=letter).exists()
    # The thread can still be followed by its Message-ID, which names no one here.
    assert letter.message_id == "<attach-330@client.test>"
    lead.refresh_from_db()
    kept = {field.attname: getattr(lead, field.attname) for field in Lead._meta.concrete_fields}
    for personal in ("petrov", "ivan", "anna", "dacha"):
        assert personal not in str(kept).lower(), (personal, kept)


def test_a_sender_erased_long_ago_is_still_a_returning_customer(setup, settings):
    settings.PERSONAL_DATA_DAYS = 300
    first = write(setup, 400, "Ivan Petrov <Ivan@Client.test>")
    write(setup, 330, "Ivan Petrov <ivan@client.test>")
    # A letter that is no lead (a mailing list) does not make its sender a customer.
    raw = letter_bytes(to="info@shop.test", sender="robot@list.test", headers={"List-Id": "<news.list.test>"})
    ingest_raw(mailbox=setup.mailbox, raw=raw, received_at=NOW - timedelta(days=350))
    project = setup.project.pk
    assert retention.wrote_before(project, "ivan@client.test", NOW)

    retention.erase_personal_data(NOW)

    assert not Letter.objects.filter(sender_email="ivan@client.test").exists()
    assert retention.wrote_before(project, "ivan@client.test", NOW)
    # From the time of their first lead letter on, not before it.
    assert not retention.wrote_before(project, "ivan@client.test", first.created_at)
    assert retention.wrote_before(project, "ivan@client.test", first.created_at + timedelta(seconds=1))
    assert not retention.wrote_before(project, "olga@client.test", NOW)
    assert not retention.wrote_before(project, "robot@list.test", NOW)
    assert not retention.wrote_before(project, "", NOW)
    # Another project knows nothing of this sender, and no row holds the address.
    other = make_setup(name="Other")
    assert not retention.wrote_before(other.project.pk, "ivan@client.test", NOW)
    (row,) = ErasedSender.objects.all()
    assert row.first_letter_at == first.created_at
    assert "ivan" not in row.digest and len(row.digest) == 64
    assert retention.erased_first_letters(project, ["ivan@client.test", "olga@client.test"]) == {
        "ivan@client.test": first.created_at
    }
    # Running again changes nothing, and an even older letter erased later moves the time back.
    retention.erase_personal_data(NOW)
    assert ErasedSender.objects.get().first_letter_at == first.created_at
    older = write(setup, 500, "Ivan <ivan@client.test>")
    retention.erase_personal_data(NOW)
    assert ErasedSender.objects.get().first_letter_at == older.created_at


def test_reports_count_first_contacts_the_same_before_and_after_the_erasure(client, setup, settings):
    settings.PERSONAL_DATA_DAYS = 100
    write(setup, 200, "Ivan <ivan@client.test>", channel=Channel.PAID, source="google")
    write(setup, 150, "Ivan <ivan@client.test>", channel=Channel.ORGANIC, source="yandex")
    write(setup, 120, "Olga <olga@client.test>", channel=Channel.PAID, source="google")
    write(setup, 20, "Olga <olga@client.test>", channel=Channel.PAID, source="google")
    client.force_login(member("mark", setup.project))
    before = report_numbers(client, setup.project)
    assert (before[0], before[1]) == (4, 2)
    retention.erase_personal_data(NOW)
    assert report_numbers(client, setup.project) == before
    assert sorted(Lead.objects.values_list("first_contact", flat=True)) == [False, False, True, True]


@pytest.mark.parametrize("path", ["letter by letter", "in a batch"])
def test_a_customer_whose_letters_were_erased_writes_again_as_a_returning_customer(setup, settings, path):
    from attribution.batch import attribute_letters
    from attribution.services import attribute_letter
    from mailbox_sync.services import store_letter

    settings.PERSONAL_DATA_DAYS = 300
    write(setup, 400, "Ivan Petrov <ivan@client.test>")
    retention.erase_personal_data(NOW)
    assert not Letter.objects.filter(sender_email="ivan@client.test").exists()

    def arrive(sender):
        raw = letter_bytes(to="info@shop.test", sender=sender, subject="Bricks again")
        return store_letter(mailbox=setup.mailbox, raw=raw, received_at=NOW, folder="", uidvalidity=None, uid=None)

    again, newcomer = arrive("Ivan <ivan@client.test>"), arrive("Olga <olga@client.test>")
    if path == "in a batch":
        attribute_letters([again.pk, newcomer.pk])
    else:
        attribute_letter(again.pk)
        attribute_letter(newcomer.pk)
    again.refresh_from_db()
    newcomer.refresh_from_db()
    assert again.lead.first_contact is False
    assert newcomer.lead.first_contact is True
