# ruff: noqa: F811 - pytest fixtures imported from tests.engagement_fixtures
"""What the SMTP relay hands upstream: one copy per tracked recipient with
only its HTML parts rewritten (in their own transfer encoding), every other
byte of the letter unchanged; an untracked copy for everyone else."""

import email
import quopri
from email import policy
from email.message import EmailMessage

import pytest
from django.utils import timezone

from engagement.models import EngagementSettings, Message, MessageRecipient, OptOut, Origin
from engagement.relaying import TrackedCopy, find_html_parts, recipients_delivered, track_relayed_letter
from tests.engagement_fixtures import make_project

pytestmark = pytest.mark.django_db

HTML = '<html><body><p>Привет! <a href="https://shop.test/price">Цены</a></p></body></html>'
TEXT = "Привет! Цены: https://shop.test/price\n"


def letter(cte_html="quoted-printable", *, attachment=True) -> bytes:
    message = EmailMessage()
    message["From"] = "Manager <manager@shop.test>"
    message["To"] = "anna@client.test, boris@client.test"
    message["Subject"] = "Предложение"
    message["Message-ID"] = "<offer-1@shop.test>"
    message.set_content(TEXT, cte="quoted-printable")
    message.add_alternative(HTML, subtype="html", cte=cte_html)
    if attachment:
        message.add_attachment(b"%PDF-1.4 price list", maintype="application", subtype="pdf", filename="price.pdf")
    return message.as_bytes(policy=policy.SMTP)


def relay(project, raw, recipients=("anna@client.test", "boris@client.test"), client_ip="198.51.100.5"):
    return track_relayed_letter(
        project_id=project.pk, raw=raw, mail_from="manager@shop.test", recipients=list(recipients), client_ip=client_ip
    )


def html_of(raw: bytes) -> str:
    parsed = email.message_from_bytes(raw, policy=policy.default)
    return parsed.get_body(("html",)).get_content()


def plain_of(raw: bytes) -> str:
    return email.message_from_bytes(raw, policy=policy.default).get_body(("plain",)).get_content()


def without_html_bodies(raw: bytes) -> bytes:
    pieces, position = [], 0
    for part in find_html_parts(raw):
        pieces.append(raw[position : part.start])
        position = part.end
    return b"".join(pieces) + raw[position:]


@pytest.mark.parametrize("cte", ["quoted-printable", "base64", "8bit"])
def test_each_recipient_gets_their_own_copy_and_every_other_byte_is_unchanged(cte):
    project, _key = make_project()
    raw = letter(cte)
    copies = relay(project, raw)
    assert [c.recipients for c in copies] == [["anna@client.test"], ["boris@client.test"]]
    message = Message.objects.get()
    assert message.origin == Origin.RELAY and message.message_id == "<offer-1@shop.test>"
    assert message.subject == "Предложение" and message.sender_network == "198.51.100.0"
    recipients = {r.pk: r.email for r in MessageRecipient.objects.all()}
    pixels = set()
    for copy in copies:
        assert [recipients[i] for i in copy.recipient_ids] == copy.recipients
        assert without_html_bodies(copy.raw) == without_html_bodies(raw)  # headers, text, attachment, boundaries
        body = html_of(copy.raw)
        assert "Привет!" in body and "https://shop.test/price" not in body and "/t/c/" in body
        pixels.add(body.split("/t/o/")[1].split(".gif")[0])
        assert plain_of(copy.raw) == plain_of(raw) and plain_of(raw).strip() == TEXT.strip()
        part = [p for p in email.message_from_bytes(copy.raw).walk() if p.get_content_type() == "text/html"][0]
        assert part["Content-Transfer-Encoding"] == cte
    assert len(pixels) == 2


def test_a_quoted_printable_part_stays_within_line_limits():
    project, _key = make_project()
    long_html = (
        "<html><body>"
        + "".join(f'<a href="https://shop.test/p{i}">Товар {i}</a> ' for i in range(60))
        + "</body></html>"
    )
    message = EmailMessage()
    message["Subject"] = "Long"
    message.set_content(long_html, subtype="html", cte="quoted-printable")
    copy = relay(project, message.as_bytes(policy=policy.SMTP), ["anna@client.test"])[0]
    assert all(len(line) <= 78 for line in copy.raw.split(b"\r\n"))
    assert html_of(copy.raw).count("/t/c/") == 61  # 60 links and the hidden one


@pytest.mark.parametrize("cte", ["7bit", "8bit"])
def test_a_plain_8bit_part_whose_lines_would_grow_past_smtps_limit_is_sent_quoted_printable(cte):
    project, _key = make_project()
    links = "".join(f'<a href="https://shop.test/p{i}">P{i}</a>' for i in range(20))
    line = ("<p>" + links + "</p>").ljust(950)  # one line, within the limit before tracking
    message = EmailMessage()
    message["Subject"] = "Long line"
    message.set_content(f"<html><body>{line}</body></html>\n", subtype="html", cte=cte)
    raw = message.as_bytes(policy=policy.SMTP)
    assert all(len(row) <= 998 for row in raw.split(b"\r\n"))
    copy = relay(project, raw, ["anna@client.test"])[0]
    assert all(len(row) <= 998 for row in copy.raw.split(b"\r\n"))
    parsed = email.message_from_bytes(copy.raw, policy=policy.default)
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
    assert len(parsed.get_all("Content-Transfer-Encoding")) == 1
    body = html_of(copy.raw)
    assert body.count("/t/c/") == 21 and "https://shop.test/p" not in body  # 20 links and the hidden one
    assert (
        copy.raw.split(b"\r\n\r\n", 1)[0].replace(b"quoted-printable", cte.encode()) == raw.split(b"\r\n\r\n", 1)[0]
    )  # only the transfer encoding changed in the headers


def test_opted_out_recipients_share_one_untracked_copy_of_the_original_bytes():
    project, _key = make_project()
    OptOut.objects.create(project=project, email="boris@client.test")
    raw = letter()
    copies = relay(project, raw, ["anna@client.test", "Boris@Client.test", "carl@client.test"])
    assert [c.recipients for c in copies] == [["anna@client.test"], ["carl@client.test"], ["Boris@Client.test"]]
    assert copies[-1] == TrackedCopy(["Boris@Client.test"], raw, [])


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff garbage without headers",
        b'Content-Type: multipart/alternative; boundary="b"\r\n\r\n--b\r\nContent-Type: text/html\r\n\r\n<a href',
        b"Content-Type: text/html; charset=utf-16\r\n\r\n\xff\xfe<\x00a\x00",
    ],
)
def test_a_letter_it_cannot_track_goes_out_unchanged(raw):
    project, _key = make_project()
    copies = relay(project, raw, ["anna@client.test"])
    assert b"".join(c.raw for c in copies if not c.recipient_ids) in (raw, b"") or copies[0].raw.startswith(raw[:10])
    for copy in copies:
        assert copy.recipients == ["anna@client.test"]
    if copies[0].recipient_ids:  # trackable after all (the truncated multipart): its other bytes are untouched
        assert without_html_bodies(copies[0].raw) == without_html_bodies(raw)
    else:
        assert copies == [TrackedCopy(["anna@client.test"], raw, [])]


def test_tracking_off_sends_the_letter_untouched_and_stores_nothing():
    project, _key = make_project(tracking=False)
    raw = letter()
    assert relay(project, raw) == [TrackedCopy(["anna@client.test", "boris@client.test"], raw, [])]
    assert not Message.objects.exists()
    EngagementSettings.objects.filter(project=project).delete()
    assert relay(project, raw)[0].raw == raw


def test_delivery_is_recorded_once():
    project, _key = make_project()
    copies = relay(project, letter())
    first = timezone.now()
    recipients_delivered(copies[0].recipient_ids, first)
    recipients_delivered(copies[0].recipient_ids, timezone.now())
    anna = MessageRecipient.objects.get(email="anna@client.test")
    assert anna.delivered_at == first
    assert MessageRecipient.objects.get(email="boris@client.test").delivered_at is None


def test_a_quoted_printable_body_decodes_to_the_same_text_outside_our_additions():
    project, _key = make_project()
    raw = letter("quoted-printable", attachment=False)
    copy = relay(project, raw, ["anna@client.test"])[0]
    part = [p for p in email.message_from_bytes(copy.raw).walk() if p.get_content_type() == "text/html"][0]
    decoded = quopri.decodestring(part.get_payload().encode()).decode("utf-8")
    assert decoded.startswith('<html><body><p>Привет! <a href="') and decoded.endswith("</body></html>\r\n")


def test_a_plain_text_letter_goes_out_unchanged_with_its_recipients_registered():
    project, _key = make_project()
    OptOut.objects.create(project=project, email="boris@client.test")
    raw = b"Subject: plain\r\nMessage-ID: <plain-2@shop.test>\r\n\r\nJust text https://shop.test/x\r\n"
    copies = relay(project, raw, ["anna@client.test", "Carl@client.test", "boris@client.test"])
    message = Message.objects.get()
    anna, carl = MessageRecipient.objects.filter(message=message).order_by("email")
    assert copies == [
        TrackedCopy(["anna@client.test", "Carl@client.test"], raw, [anna.pk, carl.pk]),
        TrackedCopy(["boris@client.test"], raw, []),
    ]
    assert (message.has_html, message.has_text, message.origin) == (False, True, Origin.RELAY)
    assert message.message_id == "<plain-2@shop.test>" and not message.links.exists()


def test_html_it_cannot_track_is_not_registered_as_a_plain_text_letter():
    project, _key = make_project()
    raw = b"Content-Type: text/html; charset=utf-16\r\n\r\n\xff\xfe<\x00a\x00"
    assert relay(project, raw, ["anna@client.test"]) == [TrackedCopy(["anna@client.test"], raw, [])]
    assert not Message.objects.exists()
