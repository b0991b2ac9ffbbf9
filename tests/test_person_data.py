"""A person's data on request: `person_export EMAIL` gives every item of a
project that is about one address (letters they sent or are named in, leads,
the sessions that led to them, tracked messages with their opens and clicks,
replies from Sent, relay copies, webhook deliveries) and nothing of anyone
else; `person_erase EMAIL --yes` erases what identifies them, leaves everyone
else as they were, keeps every report figure, and keeps the keyed digest that
makes them a returning customer when they write again."""

import base64
import json
import logging
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from attribution import retention
from attribution.models import ErasedSender, Lead
from engagement import recording
from engagement.models import EngagementSettings, Event, MessageRecipient, OptOut
from integrations import message_webhooks, webhooks
from integrations.models import OutboundStatus, Webhook, WebhookDelivery
from mailbox_sync.models import Letter, LetterSource, Reply
from mailbox_sync.services import ingest_raw
from privacy import services
from relay.models import QueuedLetter
from tests.engagement_fixtures import CHROME_UA, PERSON_IP, empty_stream, fetch, track, trusted_proxy  # noqa: F401
from tests.factories import letter_bytes, make_setup
from tests.test_journal_retention import report_numbers
from tests.test_journal_support import member, visit_and_write
from tracker.models import Channel, Session

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("empty_stream", "trusted_proxy")]

NOW = timezone.now().replace(microsecond=0)
IVAN = "ivan@client.test"
OLGA = "olga@client.test"


class World:
    """Ivan (the person) and Olga in one project, Ivan again in another."""

    def __init__(self, client):
        self.setup = make_setup()
        self.other = make_setup(name="Other", original="info@other.test", domains=("other.test",))
        project = self.setup.project
        EngagementSettings.objects.create(project=project, tracking_enabled=True)
        self.hook = Webhook(project=project, url="https://crm.test/hook", events=["lead.created", "message.opened"])
        webhooks.webhook_set_secret(self.hook, "s" * 32)
        self.hook.save()

        at = NOW - timedelta(days=3)
        self.lead = visit_and_write(
            self.setup,
            at,
            "visitor-ivan",
            sender="Ivan Petrov <Ivan@Client.test>",
            subject="Bricks for the dacha",
            body="Call me at +7 900 000-00-00",
            channel=Channel.PAID,
            source="google",
            utm_campaign="spring",
            user_agent="Mozilla/5.0 (Ivan's laptop)",
            ip_truncated="198.51.100.0",
            ga_client_id="GA1.1.111.222",
            click_ids={"gclid": "ivan-click"},
            last_urls=["https://shop.test/?email=ivan@client.test"],
        )
        self.session = self.lead.session
        self.olga_lead = visit_and_write(
            self.setup,
            at + timedelta(hours=1),
            "visitor-olga",
            sender="Olga <olga@client.test>",
            subject="Tiles",
            body="Olga's own words",
            channel=Channel.ORGANIC,
            source="yandex",
            user_agent="Mozilla/5.0 (Olga's phone)",
            ga_client_id="GA1.1.333.444",
        )
        # Olga writes with Ivan in Cc: her letter stays hers, only his address goes.
        raw = letter_bytes(
            to="info@shop.test",
            sender="Olga <olga@client.test>",
            subject="Tiles for Ivan too",
            body="Olga again",
            headers={"Cc": "Ivan Petrov <ivan@client.test>, Boris <boris@client.test>"},
        )
        self.olga_cc = ingest_raw(mailbox=self.setup.mailbox, raw=raw, received_at=at + timedelta(hours=2))
        # The manager's answers read from Sent: one to Ivan and Boris, one to Olga.
        self.reply = Reply.objects.create(
            mailbox=self.setup.mailbox,
            folder="Sent",
            uidvalidity=1,
            uid=1,
            dedupe_key="r1",
            sent_at=at + timedelta(hours=3),
            recipients=[IVAN, "boris@client.test"],
            lead=self.lead,
        )
        self.olga_reply = Reply.objects.create(
            mailbox=self.setup.mailbox,
            folder="Sent",
            uidvalidity=1,
            uid=2,
            dedupe_key="r2",
            sent_at=at + timedelta(hours=3),
            recipients=[OLGA],
            lead=self.olga_lead,
        )
        # A tracked message to Ivan and Olga; each opens it, Ivan clicks.
        tracked = track(project, recipients=["Ivan@Client.test", OLGA], subject="Our offer")
        self.ivan_copy, self.olga_copy = tracked.copies
        fetch(client, self.ivan_copy.pixel_url, ua=CHROME_UA, ip=PERSON_IP)
        fetch(client, self.ivan_copy.links[0][1], ua=CHROME_UA, ip=PERSON_IP)
        fetch(client, self.olga_copy.pixel_url, ua="Mozilla/5.0 (Olga's phone)", ip="192.0.2.10")
        recording.drain()
        OptOut.objects.create(project=project, email=IVAN)
        # The relay's copy of a letter to Ivan, sent.
        self.relay_copy = QueuedLetter.objects.create(
            project=project,
            mail_from="sales@shop.test",
            recipients=[],
            delivered=[IVAN],
            raw=b"From: sales@shop.test\r\nTo: Ivan Petrov <IVAN@client.test>\r\n\r\nHello Ivan",
            size=60,
            status=OutboundStatus.SENT,
            give_up_at=NOW + timedelta(days=1),
        )
        self.shared_copy = QueuedLetter.objects.create(
            project=project,
            mail_from="sales@shop.test",
            delivered=[IVAN, OLGA],
            raw=b"From: sales@shop.test\r\nTo: Ivan Petrov <ivan@client.test>, Olga <olga@client.test>\r\n\r\nHi all",
            size=80,
            status=OutboundStatus.SENT,
            give_up_at=NOW + timedelta(days=1),
        )
        # Webhook deliveries: Ivan's lead, Olga's lead, and the opens (naming their recipient).
        webhooks.deliveries_for_lead_event("lead.created", self.lead.pk)
        webhooks.deliveries_for_lead_event("lead.created", self.olga_lead.pk)
        message_webhooks.deliveries_for_message_events(
            list(Event.objects.filter(kind="open").values_list("pk", flat=True))
        )
        # Ivan in the other project.
        self.other_lead = visit_and_write(
            self.other, at, "visitor-ivan-other", sender="Ivan <ivan@client.test>", subject="Other shop"
        )

    @property
    def project(self):
        return self.setup.project


@pytest.fixture
def world(client):
    return World(client)


def export(*args) -> list[dict]:
    out = StringIO()
    call_command("person_export", *args, stdout=out)
    return json.loads(out.getvalue())


def test_the_export_holds_exactly_the_persons_items_of_each_project(world):
    documents = export("  IVAN@client.TEST ")
    assert [d["project"]["id"] for d in documents] == [world.project.pk, world.other.project.pk]
    doc, other = documents
    assert doc["email"] == IVAN and doc["format"] == services.FORMAT
    assert [lead["id"] for lead in doc["leads"]] == [world.lead.pk]
    assert doc["leads"][0]["subject"] == "Bricks for the dacha" and doc["leads"][0]["source"] == "google"
    letters = {letter["id"]: letter for letter in doc["letters"]}
    ivan_letter = Letter.objects.get(lead=world.lead)
    assert set(letters) == {ivan_letter.pk, world.olga_cc.pk}
    assert letters[ivan_letter.pk]["role"] == "sender" and letters[world.olga_cc.pk]["role"] == "recipient"
    assert "+7 900" in letters[ivan_letter.pk]["text"]
    assert "Call me at +7 900" in letters[ivan_letter.pk]["source"]["text"]
    assert [reply["id"] for reply in doc["replies"]] == [world.reply.pk]
    [session] = doc["sessions"]
    assert session["id"] == world.session.pk and session["visitor_vid"] == "visitor-ivan"
    assert session["ga_client_id"] == "GA1.1.111.222" and session["ip_truncated"] == "198.51.100.0"
    [message] = doc["messages"]
    assert message["recipient"]["id"] == world.ivan_copy.recipient.pk
    assert message["message"]["subject"] == "Our offer"
    assert sorted(e["kind"] for e in message["events"] if not e["inferred"]) == ["click", "open"]
    assert all(e["ip_truncated"] and e["user_agent"] == CHROME_UA for e in message["events"])
    assert [o["email"] for o in doc["opt_outs"]] == [IVAN]
    copy, shared = doc["relay_copies"]
    assert copy["id"] == world.relay_copy.pk and "Hello Ivan" in copy["raw"]["text"]
    assert shared["id"] == world.shared_copy.pk
    deliveries = doc["webhook_deliveries"]
    assert {d["event"] for d in deliveries} == {"lead.created", "message.opened"}
    assert all(d["lead_id"] in (world.lead.pk, None) for d in deliveries)
    # Nothing of Olga's own items.
    assert world.olga_lead.pk not in [lead["id"] for lead in doc["leads"]]
    assert world.olga_reply.pk not in [reply["id"] for reply in doc["replies"]]
    assert "Olga's phone" not in json.dumps(doc)
    # The other project: only Ivan's lead there.
    assert [lead["id"] for lead in other["leads"]] == [world.other_lead.pk]
    assert other["messages"] == [] and other["webhook_deliveries"] == []


def test_the_export_goes_to_a_file_and_one_project_and_the_address_is_checked(world, tmp_path):
    target = tmp_path / "ivan.json"
    call_command("person_export", IVAN, "--project", str(world.other.project.pk), "--output", str(target))
    [doc] = json.loads(target.read_text(encoding="utf-8"))
    assert doc["project"]["id"] == world.other.project.pk
    assert [d["project"]["id"] for d in export("nobody@client.test")] == []
    with pytest.raises(CommandError, match="not an email address"):
        call_command("person_export", "not-an-address")
    with pytest.raises(CommandError, match="no project"):
        call_command("person_export", IVAN, "--project", "999999")


def test_a_binary_source_is_exported_as_base64(world):
    letter = Letter.objects.get(lead=world.lead)
    LetterSource.objects.filter(letter=letter).update(raw=b"\xff\xfe Ivan")
    [doc, _other] = export(IVAN)
    [exported] = [item for item in doc["letters"] if item["id"] == letter.pk]
    assert base64.b64decode(exported["source"]["base64"]) == b"\xff\xfe Ivan"


def snapshot_of_others(world) -> dict:
    """Everything of Olga's and of the other project, to compare before and after."""
    olga_letters = Letter.objects.filter(lead=world.olga_lead).values()
    return {
        "olga_lead": Lead.objects.filter(pk=world.olga_lead.pk).values().get(),
        "olga_letters": list(olga_letters),
        "olga_source": bytes(LetterSource.objects.get(letter__lead=world.olga_lead).raw),
        "olga_session": Session.objects.filter(pk=world.olga_lead.session_id).values().get(),
        "olga_recipient": MessageRecipient.objects.filter(pk=world.olga_copy.recipient.pk).values().get(),
        "olga_events": list(Event.objects.filter(recipient=world.olga_copy.recipient).values()),
        "olga_reply": Reply.objects.filter(pk=world.olga_reply.pk).values().get(),
        "olga_delivery": WebhookDelivery.objects.filter(lead=world.olga_lead).values().get(),
        "other_project": list(Lead.objects.filter(project=world.other.project).values()),
        "other_letters": list(Letter.objects.filter(mailbox=world.other.mailbox).values()),
    }


def test_a_dry_run_erases_nothing(world):
    before = export(IVAN)
    out = StringIO()
    call_command("person_erase", IVAN, stdout=out)
    assert "Dry run" in out.getvalue() and f"Project {world.project.pk}" in out.getvalue()
    assert "leads=1" in out.getvalue()
    after = export(IVAN)
    for document in before + after:
        document.pop("exported_at")
    assert after == before


def test_erasure_removes_exactly_what_identifies_the_person_and_keeps_the_counts(world, client, caplog):
    client.force_login(member("mark", world.project))
    report_before = report_numbers(client, world.project)
    others_before = snapshot_of_others(world)
    letters_before = Letter.objects.count()
    events_before = Event.objects.count()

    with caplog.at_level(logging.INFO, logger="privacy.audit"):
        call_command("person_erase", "Ivan@client.test", "--project", str(world.project.pk), "--yes")

    # The audit line says who, when and how many, with the digest, never the address.
    [line] = [r.getMessage() for r in caplog.records if r.name == "privacy.audit"]
    assert retention.sender_digest(world.project.pk, IVAN) in line and "command:" in line and "leads=1" in line
    assert "ivan" not in line.lower()

    # Ivan's letter and lead: erased as retention erases them.
    letter = Letter.objects.get(lead=world.lead)
    assert (letter.text, letter.subject, letter.sender_email, letter.sender_name) == ("", "", "", "")
    assert (letter.recipients, letter.headers, letter.attachments) == ({}, {}, [])
    assert not LetterSource.objects.filter(letter=letter).exists()
    world.lead.refresh_from_db()
    assert (world.lead.sender_email, world.lead.sender_name, world.lead.subject) == ("", "", "")
    assert (world.lead.channel, world.lead.source, world.lead.campaign) == ("paid", "google", "spring")
    # Olga's letter that named him: his address gone, hers and Boris's and her words kept.
    world.olga_cc.refresh_from_db()
    assert IVAN not in json.dumps(world.olga_cc.recipients) and "boris@client.test" in world.olga_cc.recipients["cc"]
    assert "Ivan Petrov" not in json.dumps(world.olga_cc.headers)
    assert world.olga_cc.sender_email == OLGA and world.olga_cc.text.startswith("Olga again")
    raw = bytes(LetterSource.objects.get(letter=world.olga_cc).raw)
    assert b"ivan@client.test" not in raw.lower() and b"Ivan Petrov" not in raw
    assert b"Boris <boris@client.test>" in raw and b"Olga again" in raw
    # The reply from Sent: his address gone, Boris kept.
    world.reply.refresh_from_db()
    assert IVAN not in world.reply.recipients and "boris@client.test" in world.reply.recipients
    # The session that led to his lead: nothing that singles him out; its source stays.
    session = Session.objects.get(pk=world.session.pk)
    assert (session.user_agent, session.ga_client_id, session.ip_truncated) == ("", "", None)
    assert (session.click_ids, session.last_urls) == ({}, [])
    assert (session.channel, session.source, session.utm_campaign) == ("paid", "google", "spring")
    # The tracked message: the recipient row and its events stay (totals), without his address, IP or browser.
    recipient = MessageRecipient.objects.get(pk=world.ivan_copy.recipient.pk)
    assert "ivan" not in recipient.email and recipient.open_state == "person"
    assert all(e.ip_truncated is None and e.user_agent == "" for e in Event.objects.filter(recipient=recipient))
    assert Event.objects.count() == events_before
    # The relay copy and the webhook deliveries.
    world.relay_copy.refresh_from_db()
    assert bytes(world.relay_copy.raw) == b"" and len(world.relay_copy.delivered) == 1
    assert IVAN not in world.relay_copy.delivered
    world.shared_copy.refresh_from_db()
    assert world.shared_copy.delivered == ["erased@erased.invalid", OLGA]
    assert bytes(world.shared_copy.raw).endswith(b"To: <erased@erased.invalid>, Olga <olga@client.test>\r\n\r\nHi all")
    for delivery in WebhookDelivery.objects.exclude(lead=world.olga_lead):
        text = json.dumps(delivery.payload).lower()
        assert "ivan" not in text and "dacha" not in text, delivery.payload
    # His wish not to be tracked stays.
    assert OptOut.objects.filter(project=world.project, email=IVAN).exists()

    # Nothing else changed: Olga, the other project, the number of letters, the report.
    assert snapshot_of_others(world) == others_before
    assert Letter.objects.count() == letters_before
    assert report_numbers(client, world.project) == report_before
    # A second export finds only the opt-out entry.
    [doc, _other] = export(IVAN)
    assert {key: value for key, value in services.counts(doc).items() if value} == {"opt_outs": 1}


def test_the_person_writing_again_is_a_returning_customer(world):
    first_letter_at = Letter.objects.get(lead=world.lead).received_at
    call_command("person_erase", IVAN, "--project", str(world.project.pk), "--yes")
    known = ErasedSender.objects.get(project=world.project, digest=retention.sender_digest(world.project.pk, IVAN))
    assert known.first_letter_at == first_letter_at
    again = visit_and_write(world.setup, NOW - timedelta(hours=1), "visitor-ivan-2", sender="Ivan <ivan@client.test>")
    assert again.first_contact is False
    # In the other project, untouched, Ivan is no one's returning customer by this erasure.
    assert not ErasedSender.objects.filter(project=world.other.project).exists()


def test_erasing_every_project_needs_yes_and_covers_both(world):
    out = StringIO()
    call_command("person_erase", IVAN, "--yes", stdout=out)
    assert f"Project {world.project.pk}: erased" in out.getvalue()
    assert f"Project {world.other.project.pk}: erased" in out.getvalue()
    assert not Lead.objects.filter(sender_email=IVAN).exists()
    assert Lead.objects.filter(sender_email=OLGA).exists()


def test_the_time_based_retention_and_the_persons_erasure_erase_the_same_fields(world, settings):
    """Both go through retention.erase_letters: the fields one blanks are the fields the other does."""
    settings.PERSONAL_DATA_DAYS = 1
    call_command("person_erase", IVAN, "--project", str(world.project.pk), "--yes")
    by_person = Letter.objects.filter(lead=world.lead).values(*PERSONAL).get()
    retention.erase_personal_data(NOW)
    by_time = Letter.objects.filter(lead=world.olga_lead).values(*PERSONAL).get()
    assert (
        by_person
        == by_time
        == {
            "text": "",
            "subject": "",
            "sender_email": "",
            "sender_name": "",
            "recipients": {},
            "headers": {},
            "attachments": [],
        }
    )


PERSONAL = ("text", "subject", "sender_email", "sender_name", "recipients", "headers", "attachments")
