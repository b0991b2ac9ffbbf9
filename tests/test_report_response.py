"""Manager response time: from a lead's first letter to the first reply read
from the Sent folder; the median and the shares answered within 1 h and
1 day (of all leads, those without a reply counted), per mailbox (the
replying address) and per group, in the report, its CSV, the API summary,
the lead and the webhook payload."""

import csv
import io
from datetime import UTC, datetime, timedelta

import pytest

from attribution.models import Lead
from costs.response import figures
from integrations.keys import api_key_create
from integrations.webhooks import lead_payload
from mailbox_sync.models import Reply
from mailbox_sync.services import ingest_raw
from tests.factories import letter_bytes, make_setup
from tests.test_journal_support import member

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 7, 1, 9, 0, tzinfo=UTC)
PERIOD = {"date_from": "2025-07-01", "date_to": "2025-07-02"}


def reply(lead, after, uid):
    return Reply.objects.create(
        mailbox=lead.letters.first().mailbox,
        folder="Sent",
        uidvalidity=1,
        uid=uid,
        dedupe_key=f"r{uid}",
        sent_at=lead.created_at + after,
        lead=lead,
    )


@pytest.fixture
def shop(client):
    """Three leads reach the mailbox; one is answered after 30 min (and again
    later), one after 5 h, one not at all: median 2 h 45 min, 33.3% within
    an hour, 66.7% within a day, one with no reply."""
    setup = make_setup(original="info@shop.test")
    leads = []
    for i, sender in enumerate(["a@client.test", "b@client.test", "c@client.test"]):
        letter = ingest_raw(
            mailbox=setup.mailbox,
            raw=letter_bytes(to="info@shop.test", sender=sender),
            received_at=T0 + timedelta(minutes=i),
        )
        leads.append(letter.lead)
    reply(leads[0], timedelta(minutes=30), 1)
    reply(leads[0], timedelta(hours=8), 2)
    reply(leads[1], timedelta(hours=5), 3)
    client.force_login(member("mark", setup.project))
    return setup, leads


def test_the_figures_of_a_list_of_response_times():
    result = figures([timedelta(minutes=30), timedelta(hours=5), None, timedelta(days=2)])
    assert result.median_seconds == 5 * 3600
    assert (result.within_hour, result.within_day, result.unanswered) == (25.0, 50.0, 1)
    assert figures([None]).median_seconds is None and figures([]).within_hour is None


def test_the_report_by_mailbox_shows_the_median_and_shares_and_its_csv_agrees(client, shop):
    setup, _leads = shop
    query = {"project": setup.project.pk, **PERIOD, "group": "mailbox"}
    html = client.get("/journal/reports/", query).content.decode()
    assert 'data-grouping="mailbox"' in html and setup.mailbox.username in html
    answer = client.get("/journal/reports/", {**query, "format": "csv"})
    rows = list(csv.reader(io.StringIO(b"".join(answer.streaming_content).decode("utf-8-sig"))))
    assert rows[0][-4:] == ["Median response", "Answered within 1 h", "Answered within 1 day", "No reply yet"]
    box = next(row for row in rows if setup.mailbox.username in row[0])
    assert box[-4:] == ["2 h 45 min", "33.3%", "66.7%", "1"]
    assert rows[-1][-4:] == ["2 h 45 min", "33.3%", "66.7%", "1"]
    assert "2 h 45 min" in html and "33.3%" in html


def test_the_api_summary_and_the_lead_carry_the_response_time(client, shop):
    setup, leads = shop
    _row, key = api_key_create(project=setup.project, name="BI")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {key}"}
    summary = client.get("/api/v1/summary", {**PERIOD, "group_by": "mailbox"}, **auth).json()
    row = summary["rows"][0]
    assert row["mailbox"] == setup.mailbox.pk
    assert (row["response_median_seconds"], row["answered_within_1h"], row["answered_within_1d"]) == (9900, 33.3, 66.7)
    assert row["unanswered"] == 1 and summary["total"]["unanswered"] == 1
    detail = client.get(f"/api/v1/leads/{leads[0].pk}", **auth).json()
    assert detail["response_seconds"] == 1800
    listed = {lead["id"]: lead["response_seconds"] for lead in client.get("/api/v1/leads", **auth).json()["results"]}
    assert listed == {leads[0].pk: 1800, leads[1].pk: 5 * 3600, leads[2].pk: None}


def test_the_lead_webhook_payload_carries_the_response_time(shop):
    _setup, leads = shop
    lead = Lead.objects.select_related("project").get(pk=leads[1].pk)
    payload = lead_payload(event="lead.updated", event_id="x", lead=lead, occurred_at=T0)
    assert payload["lead"]["response_seconds"] == 5 * 3600
