"""Leads over the API: the journal's filters, cursor pagination, incremental
pulls, the detail with letters and session, changes; pools with their health
and the summary by channel / source."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from attribution import events
from attribution.leads import lead_update
from attribution.models import Lead
from integrations.keys import api_key_create
from substitution.services import lease_acquire
from tests.factories import make_setup
from tests.test_api_support import lead_from_visitor, lead_to_main_address, visitor_with_session
from tracker.models import Channel

pytestmark = pytest.mark.django_db


def bearer(key):
    return {"HTTP_AUTHORIZATION": f"Bearer {key}"}


@pytest.fixture
def shop():
    setup = make_setup()
    _row, key = api_key_create(project=setup.project, name="CRM")
    return setup, key


def ids(client, key, query=""):
    response = client.get(f"/api/v1/leads{query}", **bearer(key))
    assert response.status_code == 200, response.content
    return [lead["id"] for lead in response.json()["results"]]


def at(day, hour=12):
    return datetime(2025, 7, day, hour, tzinfo=UTC)


def test_the_journals_filters_narrow_the_list(client, shop):
    setup, key = shop
    paid = lead_from_visitor(
        setup,
        visitor_with_session(
            setup,
            vid="p",
            channel=Channel.PAID,
            source="google",
            utm_source="google",
            utm_medium="cpc",
            utm_campaign="bricks",
        ),
        subject="Bricks price",
        sender="Ivan <ivan@client.test>",
    )
    organic = lead_from_visitor(
        setup,
        visitor_with_session(setup, vid="o", channel=Channel.ORGANIC, source="yandex"),
        subject="Delivery?",
        sender="Olga <olga@buyer.test>",
    )
    unknown = lead_to_main_address(setup, subject="Hello", sender="Petr <petr@client.test>")
    Lead.objects.filter(pk=paid.pk).update(created_at=at(1))
    Lead.objects.filter(pk=organic.pk).update(created_at=at(2))
    Lead.objects.filter(pk=unknown.pk).update(created_at=at(3), first_contact=False)
    lead_update(lead=organic, status="won", tags=["VIP"])

    assert ids(client, key) == [unknown.pk, organic.pk, paid.pk]
    assert ids(client, key, "?ordering=created_at") == [paid.pk, organic.pk, unknown.pk]
    assert ids(client, key, "?channel=paid") == [paid.pk]
    assert ids(client, key, "?source=yandex") == [organic.pk]
    assert ids(client, key, "?medium=cpc&campaign=bricks") == [paid.pk]
    assert ids(client, key, "?status=won") == [organic.pk]
    assert ids(client, key, "?tag=vip") == [organic.pk]
    assert ids(client, key, "?match_kind=unknown") == [unknown.pk]
    assert ids(client, key, "?first_contact=false") == [unknown.pk]
    assert ids(client, key, "?first_contact=true") == [organic.pk, paid.pk]
    assert ids(client, key, f"?site={setup.site.pk}") == [organic.pk, paid.pk]
    assert ids(client, key, "?q=BRICKS") == [paid.pk]
    assert ids(client, key, "?q=buyer.test") == [organic.pk]
    assert ids(client, key, "?created_after=2025-07-02T00:00:00Z&created_before=2025-07-03T00:00:00Z") == [organic.pk]


def test_cursor_pages_cover_every_lead_once_even_when_new_ones_arrive(client, shop):
    setup, key = shop
    made = [lead_to_main_address(setup, sender=f"c{n} <c{n}@client.test>") for n in range(5)]
    for n, lead in enumerate(made):
        Lead.objects.filter(pk=lead.pk).update(created_at=at(1) + timedelta(minutes=n))
    seen, url = [], "/api/v1/leads?limit=2"
    page = client.get(url, **bearer(key)).json()
    seen += [lead["id"] for lead in page["results"]]
    lead_to_main_address(setup, sender="late <late@client.test>")  # arrives while the CRM pages
    while page["next"]:
        page = client.get(page["next"], **bearer(key)).json()
        assert len(page["results"]) <= 2
        seen += [lead["id"] for lead in page["results"]]
    assert seen == [lead.pk for lead in reversed(made)]


def test_updated_since_pulls_only_what_changed(client, shop):
    setup, key = shop
    first, second = (
        lead_to_main_address(setup, sender="a <a@c.test>"),
        lead_to_main_address(setup, sender="b <b@c.test>"),
    )
    pulled = client.get("/api/v1/leads?ordering=updated_at", **bearer(key)).json()["results"]
    watermark = pulled[-1]["updated_at"]
    assert [lead["id"] for lead in pulled] == [first.pk, second.pk]
    lead_update(lead=first, comment="Called back")
    changed = client.get(f"/api/v1/leads?ordering=updated_at&updated_since={watermark}", **bearer(key)).json()
    assert [lead["id"] for lead in changed["results"]][-1] == first.pk
    assert changed["results"][-1]["comment"] == "Called back"


def test_the_detail_has_the_letters_and_the_visitors_session(client, shop):
    setup, key = shop
    person = visitor_with_session(
        setup,
        source="google",
        utm_source="google",
        utm_medium="cpc",
        utm_campaign="autumn",
        keyword="red bricks",
        landing_url="https://shop.test/?utm_source=google",
        ga_client_id="11.22",
        page_views=3,
    )
    lead = lead_from_visitor(setup, person, subject="First")
    allocation = lease_acquire(pool=setup.pool, visitor=person, now=timezone.now())
    from mailbox_sync.services import ingest_raw
    from tests.factories import letter_bytes

    ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to=allocation.email, subject="Re: First", body="<b>x</b>"))
    body = client.get(f"/api/v1/leads/{lead.pk}", **bearer(key)).json()
    assert [letter["subject"] for letter in body["letters"]] == ["First", "Re: First"]
    assert body["letters"][1]["text"] == "<b>x</b>"  # text as text; a client must escape it
    assert body["letters"][0]["recipients"]["to"] == [allocation.email]
    assert body["session"]["utm_campaign"] == "autumn"
    assert body["session"]["keyword"] == "red bricks"
    assert body["session"]["ga_client_id"] == "11.22"
    assert body["session"]["page_views"] == 3
    assert body["campaign"] == "autumn" and body["match_kind"] == "live_lease"
    assert client.get(f"/api/v1/leads/{lead_to_main_address(setup).pk}", **bearer(key)).json()["session"] is None


def test_a_patch_changes_the_lead_through_the_service_and_announces_it(
    client, shop, django_capture_on_commit_callbacks
):
    setup, key = shop
    lead = lead_to_main_address(setup)
    heard = []
    events.subscribe(events.LEAD_UPDATED, heard.append)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            response = client.patch(
                f"/api/v1/leads/{lead.pk}",
                {"status": "won", "tags": ["VIP", "vip", "repeat"], "comment": "Paid", "deal_amount": "1500.5"},
                content_type="application/json",
                **bearer(key),
            )
    finally:
        events._listeners[events.LEAD_UPDATED].remove(heard.append)
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["status"], body["tags"], body["comment"], body["deal_amount"]) == (
        "won",
        ["VIP", "repeat"],
        "Paid",
        "1500.50",
    )
    lead.refresh_from_db()
    assert (lead.status, lead.deal_amount) == ("won", Decimal("1500.50"))
    assert heard == [lead.pk]
    # Only the fields sent change; null clears the amount.
    client.patch(f"/api/v1/leads/{lead.pk}", {"deal_amount": None}, content_type="application/json", **bearer(key))
    lead.refresh_from_db()
    assert (lead.status, lead.deal_amount, lead.comment) == ("won", None, "Paid")


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"status": "maybe"}, "status"),
        ({"deal_amount": "lots"}, "deal_amount"),
        ({"deal_amount": -1}, "deal_amount"),
        ({"tags": "vip"}, "tags"),
        ({"tags": ["x" * 51]}, "tags"),
        ({"tags": [" "]}, "tags"),
        ({"comment": "x" * 5001}, "comment"),
        ({"comment": "bad \ud800 text"}, "comment"),
    ],
)
def test_an_invalid_change_is_400_with_the_field_and_changes_nothing(client, shop, change, field):
    setup, key = shop
    lead = lead_to_main_address(setup)
    response = client.patch(f"/api/v1/leads/{lead.pk}", change, content_type="application/json", **bearer(key))
    assert response.status_code == 400, response.content
    assert field in response.json()["fields"]
    after = Lead.objects.get(pk=lead.pk)
    assert (after.status, after.deal_amount, after.comment, after.tags.count()) == ("new", None, "", 0)


def test_pools_come_with_their_health(client, shop):
    setup, key = shop
    lease_acquire(pool=setup.pool, visitor=visitor_with_session(setup), now=timezone.now())
    [pool] = client.get("/api/v1/pools", **bearer(key)).json()["results"]
    assert pool["id"] == setup.pool.pk
    health = pool["health"]
    assert (health["size"], health["live"]) == (5, 1)
    assert len(health["peaks"]) == 7 and health["peaks"][-1]["peak"] == 1
    assert health["exhaustions"] == 0 and health["too_small"] is False
    assert client.get(f"/api/v1/pools/{setup.pool.pk}", **bearer(key)).json()["health"]["live"] == 1


def test_sites_static_addresses_and_mailboxes(client, shop):
    setup, key = shop
    from substitution.models import StaticAddress

    StaticAddress.objects.create(project=setup.project, name="Billboard", email="board@shop.test", source="billboard")
    [site] = client.get("/api/v1/sites", **bearer(key)).json()["results"]
    assert (site["site_key"], site["domains"]) == (setup.site.site_key, ["127.0.0.1", "shop.test"])
    [static] = client.get("/api/v1/static-addresses", **bearer(key)).json()["results"]
    assert (static["email"], static["source"]) == ("board@shop.test", "billboard")
    [mailbox] = client.get("/api/v1/mailboxes", **bearer(key)).json()["results"]
    assert (mailbox["username"], mailbox["state"], mailbox["last_error"]) == (setup.mailbox.username, "new", "")


def test_the_summary_counts_leads_by_channel_or_source_for_days_in_the_projects_time_zone(client, shop):
    setup, key = shop
    setup.project.time_zone = "Europe/Moscow"  # UTC+3
    setup.project.save()
    google = visitor_with_session(setup, vid="g", channel=Channel.PAID, source="google", utm_medium="cpc")
    yandex = visitor_with_session(setup, vid="y", channel=Channel.ORGANIC, source="yandex")
    a = lead_from_visitor(setup, google, sender="a <a@c.test>")
    b = lead_from_visitor(setup, yandex, sender="b <b@c.test>")
    c = lead_to_main_address(setup, sender="c <c@c.test>")
    Lead.objects.filter(pk=a.pk).update(created_at=datetime(2025, 7, 1, 21, 30, tzinfo=UTC))  # 2 Jul in Moscow
    Lead.objects.filter(pk=b.pk).update(created_at=datetime(2025, 7, 2, 9, 0, tzinfo=UTC), deal_amount=100)
    Lead.objects.filter(pk=c.pk).update(created_at=datetime(2025, 7, 3, 9, 0, tzinfo=UTC))
    lead_update(lead=b, status="won")

    summary = client.get("/api/v1/summary?date_from=2025-07-02&date_to=2025-07-02", **bearer(key)).json()
    assert summary["time_zone"] == "Europe/Moscow" and summary["group_by"] == "channel"
    assert (
        summary["total"]["leads"] == 2 and summary["total"]["won"] == 1 and summary["total"]["deal_amount"] == "100.00"
    )
    assert sorted((row["channel"], row["leads"]) for row in summary["rows"]) == [("organic", 1), ("paid", 1)]
    by_source = client.get(
        "/api/v1/summary?date_from=2025-07-01&date_to=2025-07-03&group_by=source", **bearer(key)
    ).json()
    assert {(row["source"], row["medium"]): row["leads"] for row in by_source["rows"]} == {
        ("google", "cpc"): 1,
        ("yandex", ""): 1,
        ("", ""): 1,
    }
    assert all(row["channel"] is None for row in by_source["rows"])
    bad = client.get("/api/v1/summary?date_from=2025-07-03&date_to=2025-07-01", **bearer(key))
    assert bad.status_code == 400 and "date_from" in bad.json()["fields"]
