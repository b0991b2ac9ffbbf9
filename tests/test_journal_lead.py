"""The lead page: its letters as escaped text, recipients, the visitor's
session, how it was matched, response time; and the edit form, which goes
through attribution.leads.lead_update."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from attribution import events
from attribution.leads import lead_update
from attribution.models import Lead, MatchKind
from mailbox_sync.models import Reply
from mailbox_sync.services import ingest_raw
from projects.models import Membership
from tests.factories import letter_bytes, make_setup
from tests.test_journal_support import make_lead, member, visit_and_write
from tracker.models import Channel

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 7, 31, 9, 0, tzinfo=UTC)


@pytest.fixture
def setup():
    setup = make_setup()
    setup.project.time_zone = "Europe/Moscow"
    setup.project.save()
    return setup


@pytest.fixture
def paid_lead(setup):
    return visit_and_write(
        setup,
        T0,
        "visitor-0001",
        channel=Channel.PAID,
        source="google",
        utm_source="google",
        utm_medium="cpc",
        utm_campaign="autumn",
        keyword="buy bricks",
        landing_url="https://shop.test/bricks?utm_source=google",
        referrer="https://www.google.com/",
        device_type="mobile",
        os="Android",
        browser="Chrome",
        country="RU",
        city="Kazan",
        page_views=7,
        last_urls=["https://shop.test/bricks", "https://shop.test/contacts"],
    )


def test_the_lead_page_shows_the_visitors_session_and_how_it_was_matched(client, setup, paid_lead):
    client.force_login(member("mark", setup.project))
    response = client.get(f"/journal/leads/{paid_lead.pk}/")
    assert response.status_code == 200
    page = response.content.decode()
    assert paid_lead.match_kind == MatchKind.LIVE_LEASE
    for text in (
        "Live lease",
        "leased to this visitor when the letter arrived",
        'href="https://shop.test/bricks?utm_source=google"',
        "https://www.google.com/",
        "source google · medium cpc · campaign autumn",
        "buy bricks",
        "Mobile · Android",
        "Kazan, RU",
        '<dd id="page-views">7</dd>',
        "<li>https://shop.test/contacts</li>",
        "Ivan Petrov &lt;ivan@client.test&gt;",
        # 09:10 UTC is 12:10 in Moscow.
        "2025-07-31 12:10",
    ):
        assert text in page, text
    assert paid_lead.recipient in page


def test_letters_are_shown_as_escaped_text_with_their_recipients(client, setup):
    raw = letter_bytes(
        to="info@shop.test, sales@partner.test",
        subject="<b>Order</b>",
        body='<script>alert("x")</script>\n<img src=x onerror=alert(1)> Two lines\nthe second',
        headers={"Cc": "boss@client.test", "Delivered-To": "info@shop.test"},
    )
    letter = ingest_raw(mailbox=setup.mailbox, raw=raw, received_at=T0)
    client.force_login(member("mark", setup.project))
    page = client.get(f"/journal/leads/{letter.lead_id}/").content.decode()
    assert "<script>alert" not in page and "<img src=x" not in page and "<b>Order</b>" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert "&lt;img src=x onerror=alert(1)&gt; Two lines\nthe second" in page
    assert "&lt;b&gt;Order&lt;/b&gt;" in page
    assert "info@shop.test, sales@partner.test" in page
    assert "boss@client.test" in page


def test_a_javascript_url_from_the_visitors_page_is_never_a_link(client, setup):
    lead = visit_and_write(setup, T0, "visitor-0002", landing_url="javascript:alert(1)")
    client.force_login(member("mark", setup.project))
    page = client.get(f"/journal/leads/{lead.pk}/").content.decode()
    assert "javascript:alert(1)" in page
    assert 'href="javascript:' not in page


def test_a_low_confidence_match_is_marked_on_the_lead_page(client, setup):
    lead = make_lead(setup.project, "Maybe", match_kind=MatchKind.REUSED_SINCE)
    client.force_login(member("mark", setup.project))
    page = client.get(f"/journal/leads/{lead.pk}/").content.decode()
    assert '<span class="low">Reused since (low confidence)</span>' in page
    assert "the letter may come from either" in page
    assert 'id="no-session"' in page


def test_the_response_time_comes_from_the_first_reply(client, setup, paid_lead):
    client.force_login(member("mark", setup.project))
    assert "not known" in client.get(f"/journal/leads/{paid_lead.pk}/").content.decode()
    for n, minutes in enumerate((95, 300)):
        Reply.objects.create(
            mailbox=setup.mailbox,
            folder="Sent",
            uidvalidity=1,
            uid=n + 1,
            dedupe_key=f"reply-{n}",
            sent_at=paid_lead.created_at + timedelta(minutes=minutes),
            lead=paid_lead,
        )
    page = client.get(f"/journal/leads/{paid_lead.pk}/").content.decode()
    assert '<dd id="response-time">1 h 35 min</dd>' in page


# --- Editing ------------------------------------------------------------------------


def form_data(lead, **changes):
    data = {
        "status": lead.status,
        "tags": "",
        "comment": lead.comment,
        "deal_amount": "",
        "seen": lead.updated_at.isoformat(),
    }
    return {**data, **changes}


@pytest.fixture
def heard():
    calls = []
    events.subscribe(events.LEAD_UPDATED, calls.append)
    yield calls
    events._listeners[events.LEAD_UPDATED].remove(calls.append)


@pytest.mark.parametrize("role", [Membership.Role.MARKETER, Membership.Role.MANAGER])
def test_a_member_edits_status_tags_comment_and_deal_amount(
    client, setup, role, heard, django_capture_on_commit_callbacks
):
    lead = make_lead(setup.project, "Bricks")
    client.force_login(member("mark", setup.project, role=role))
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            f"/journal/leads/{lead.pk}/",
            form_data(lead, status="won", tags="wholesale, VIP,  vip ", comment="Called back", deal_amount="1 500,50"),
        )
    assert response.status_code == 302
    assert response["Location"] == f"/journal/leads/{lead.pk}/"
    lead.refresh_from_db()
    assert (lead.status, lead.comment, lead.deal_amount) == ("won", "Called back", Decimal("1500.50"))
    assert sorted(lead.tags.values_list("name", flat=True)) == ["VIP", "wholesale"]
    # Through lead_update: its event, once.
    assert heard == [lead.pk]
    page = client.get(response["Location"]).content.decode()
    assert "Lead saved." in page
    assert 'value="VIP, wholesale"' in page or 'value="wholesale, VIP"' in page


def test_an_invalid_change_is_refused_with_the_reason_and_nothing_changes(client, setup):
    lead = make_lead(setup.project, "Bricks")
    client.force_login(member("mark", setup.project))
    response = client.post(f"/journal/leads/{lead.pk}/", form_data(lead, status="won", deal_amount="a lot"))
    assert response.status_code == 400
    assert "The deal amount must be a number." in response.content.decode()
    lead.refresh_from_db()
    assert lead.status == "new"
    response = client.post(f"/journal/leads/{lead.pk}/", form_data(lead, status="archived"))
    assert response.status_code == 400
    assert Lead.objects.get(pk=lead.pk).status == "new"


def test_a_save_over_someone_elses_newer_change_is_stopped_then_allowed(client, setup):
    lead = make_lead(setup.project, "Bricks")
    client.force_login(member("mark", setup.project))
    opened = form_data(lead, comment="My note")
    lead_update(lead=lead, status="won")  # someone else, after the page was opened
    response = client.post(f"/journal/leads/{lead.pk}/", opened)
    assert response.status_code == 409
    assert "Someone changed this lead" in response.content.decode()
    lead.refresh_from_db()
    assert (lead.status, lead.comment) == ("won", "")
    again = response.context["form"].data
    assert again["comment"] == "My note" and again["seen"] == lead.updated_at.isoformat()
    response = client.post(f"/journal/leads/{lead.pk}/", {**again.dict(), "status": "won"})
    assert response.status_code == 302
    lead.refresh_from_db()
    assert (lead.status, lead.comment) == ("won", "My note")


def test_get_and_post_only(client, setup):
    lead = make_lead(setup.project, "Bricks")
    client.force_login(member("mark", setup.project))
    assert client.put(f"/journal/leads/{lead.pk}/").status_code == 405
    assert client.post("/journal/").status_code == 405
