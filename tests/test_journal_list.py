"""The journal's list: columns, filters, search, keyset pages that keep the
filters, and the project switcher."""

import html
from datetime import UTC, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from attribution.models import Lead, MatchKind
from journal.filters import LeadFilterForm, filter_leads, search
from journal.selectors import after_cursor, journal_page
from projects.models import Membership
from tests.factories import make_setup
from tests.test_journal_support import make_lead, member
from tracker.models import Channel, Site

pytestmark = pytest.mark.django_db


def lead(project, subject, minutes_ago, **fields):
    return make_lead(project, subject, minutes_ago=minutes_ago, **fields)


def staff(username, project=None, role=Membership.Role.MANAGER):
    return member(username, project, role=role)


def subjects(response) -> list[str]:
    return [lead.subject for lead in response.context["leads"]]


# --- Moved from tests/test_admin_and_journal.py, every assertion kept -----------


def test_the_journal_needs_a_login(client):
    response = client.get("/journal/")
    assert response.status_code == 302
    assert response["Location"].startswith("/journal/login/")


def test_the_journal_lists_the_users_leads_newest_first(client):
    mine, theirs = make_setup(name="Mine"), make_setup(name="Theirs")
    mine.project.time_zone = "Europe/Moscow"
    mine.project.save()
    older = lead(mine.project, "Older enquiry", 120, source="google", campaign="spring")
    lead(mine.project, "Newer enquiry", 5, source="newsletter", campaign="autumn")
    lead(theirs.project, "Secret enquiry", 1)
    client.force_login(staff("mark", mine.project, role=Membership.Role.MARKETER))
    page = client.get("/journal/").content.decode()
    assert "Secret enquiry" not in page
    assert page.index("Newer enquiry") < page.index("Older enquiry")
    assert "autumn" in page and "newsletter" in page
    moscow = older.created_at.astimezone(ZoneInfo("Europe/Moscow"))
    assert f'{moscow:%Y-%m-%d %H:%M} <span class="muted">Europe/Moscow</span>' in page


def test_the_journal_escapes_letter_content(client):
    setup = make_setup(name="Mine")
    lead(setup.project, "<script>alert(1)</script>", 1)
    client.force_login(staff("anna", setup.project))
    page = client.get("/journal/").content.decode()
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_the_journal_pages_with_a_cursor(client, settings):
    setup = make_setup(name="Mine")
    for n in range(55):
        lead(setup.project, f"Enquiry {n:02d}", n)
    client.force_login(staff("anna", setup.project))
    first = client.get("/journal/")
    assert first.content.decode().count('class="lead"') == 50
    cursor = first.context["cursor"]
    second = client.get("/journal/", {"before": cursor}).content.decode()
    assert second.count('class="lead"') == 5
    assert "Enquiry 54" in second and "Enquiry 00" not in second
    assert client.get("/journal/", {"before": "garbage"}).status_code == 200


# --- Columns ------------------------------------------------------------------


def test_every_column_of_a_lead_is_shown(client):
    setup = make_setup()
    make_lead(
        setup.project,
        "Bricks wholesale",
        sender_name="Ivan Petrov",
        sender_email="ivan@client.test",
        channel=Channel.PAID,
        source="google",
        campaign="autumn-bricks",
        keyword="buy bricks",
        first_contact=False,
        match_kind=MatchKind.REUSED_SINCE,
        status=Lead.Status.WON,
        deal_amount=Decimal("1500.50"),
        tags=["wholesale", "vip"],
    )
    client.force_login(member("mark", setup.project))
    row = client.get("/journal/").content.decode().split('class="lead"')[1].split("</tr>")[0]
    for text in (
        "Ivan Petrov",
        "ivan@client.test",
        "Bricks wholesale",
        "Paid search / ads",
        "google",
        "autumn-bricks",
        "buy bricks",
        "Returning",
        "Won",
        '<span class="tag">wholesale</span>',
        '<span class="tag">vip</span>',
        "1500.50",
    ):
        assert text in row, text
    # A low-confidence match is marked, not only named.
    assert 'class="match low"' in row


def test_a_lead_without_a_visitor_is_marked_as_having_no_source(client):
    setup = make_setup()
    make_lead(setup.project, "To the main address", match_kind=MatchKind.UNKNOWN)
    make_lead(setup.project, "Live", match_kind=MatchKind.LIVE_LEASE)
    client.force_login(member("mark", setup.project))
    page = client.get("/journal/").content.decode()
    assert page.count('class="match none"') == 1
    assert page.count('class="match "') == 1


def test_the_list_costs_the_same_queries_for_5_leads_as_for_50(client, django_assert_num_queries):
    setup = make_setup()
    client.force_login(member("mark", setup.project))
    for n in range(5):
        make_lead(setup.project, f"Lead {n}", minutes_ago=n, tags=["a", "b"])
    client.get("/journal/")  # the first visit also remembers the project in the session
    with CaptureQueriesContext(connection) as few:
        client.get("/journal/")
    for n in range(5, 50):
        make_lead(setup.project, f"Lead {n}", minutes_ago=n, tags=["a", "b"])
    with django_assert_num_queries(len(few.captured_queries)):
        response = client.get("/journal/")
    assert len(response.context["leads"]) == 50


# --- Filters --------------------------------------------------------------------


@pytest.fixture
def varied(client):
    """Four leads that differ in every filtered field, and a marketer who sees them."""
    setup = make_setup()
    other_site = Site.objects.create(project=setup.project, name="Second site", original_email="b@shop.test")
    make_lead(
        setup.project,
        "Alpha",
        minutes_ago=1,
        site=setup.site,
        channel=Channel.PAID,
        source="google",
        medium="cpc",
        campaign="spring",
        first_contact=True,
        match_kind=MatchKind.LIVE_LEASE,
        status=Lead.Status.NEW,
        sender_email="anna@alpha.test",
        sender_name="Anna Alpha",
        tags=["vip"],
    )
    make_lead(
        setup.project,
        "Beta",
        minutes_ago=2,
        site=other_site,
        channel=Channel.ORGANIC,
        source="yandex",
        medium="organic",
        campaign="",
        first_contact=False,
        match_kind=MatchKind.AMBIGUOUS,
        status=Lead.Status.WON,
        sender_email="boris@beta.test",
    )
    make_lead(
        setup.project,
        "Gamma order",
        minutes_ago=3,
        site=setup.site,
        channel=Channel.PAID,
        source="google",
        medium="display",
        campaign="autumn",
        first_contact=False,
        match_kind=MatchKind.TAKEN_OVER,
        status=Lead.Status.SPAM,
        sender_email="gleb@gamma.test",
        tags=["vip", "wholesale"],
    )
    make_lead(
        setup.project,
        "Delta",
        minutes_ago=4,
        channel=Channel.STATIC,
        source="billboard",
        match_kind=MatchKind.STATIC,
        status=Lead.Status.LOST,
        sender_email="dina@delta.test",
    )
    client.force_login(member("mark", setup.project))
    return setup, other_site


@pytest.mark.parametrize(
    "query, expected",
    [
        ({}, ["Alpha", "Beta", "Gamma order", "Delta"]),
        ({"channel": "paid"}, ["Alpha", "Gamma order"]),
        ({"source": "google"}, ["Alpha", "Gamma order"]),
        ({"medium": "organic"}, ["Beta"]),
        ({"campaign": "autumn"}, ["Gamma order"]),
        ({"contact": "first"}, ["Alpha", "Delta"]),
        ({"contact": "returning"}, ["Beta", "Gamma order"]),
        ({"match": "ambiguous"}, ["Beta"]),
        ({"match": "low"}, ["Beta", "Gamma order"]),
        ({"status": "won"}, ["Beta"]),
        ({"q": "GAMMA"}, ["Gamma order"]),
        ({"q": "boris@"}, ["Beta"]),
        ({"q": "anna alpha"}, ["Alpha"]),
        ({"q": "Boris@Beta.test"}, ["Beta"]),
        ({"q": "beta.test"}, ["Beta"]),
        ({"channel": "paid", "campaign": "spring"}, ["Alpha"]),
        ({"channel": "paid", "status": "won"}, []),
    ],
)
def test_each_filter_narrows_the_list(client, varied, query, expected):
    setup, _ = varied
    response = client.get("/journal/", {"project": setup.project.pk, **query})
    assert response.status_code == 200
    assert subjects(response) == expected


def test_the_site_and_tag_filters_narrow_the_list(client, varied):
    setup, other_site = varied
    vip = setup.project.tags.get(name="vip")
    wholesale = setup.project.tags.get(name="wholesale")
    assert subjects(client.get("/journal/", {"site": setup.site.pk})) == ["Alpha", "Gamma order"]
    assert subjects(client.get("/journal/", {"site": other_site.pk})) == ["Beta"]
    assert subjects(client.get("/journal/", {"tag": vip.pk})) == ["Alpha", "Gamma order"]
    assert subjects(client.get("/journal/", {"tag": wholesale.pk})) == ["Gamma order"]


def test_the_date_range_is_in_the_projects_time_zone(client):
    setup = make_setup()
    setup.project.time_zone = "Europe/Moscow"  # UTC+3
    setup.project.save()
    # 20:30 UTC on 1 Mar is 23:30 on 1 Mar in Moscow; 21:30 UTC is already 2 Mar there.
    make_lead(setup.project, "Late on the 1st", at=datetime(2025, 3, 1, 20, 30, tzinfo=UTC))
    make_lead(setup.project, "Early on the 2nd", at=datetime(2025, 3, 1, 21, 30, tzinfo=UTC))
    make_lead(setup.project, "Early on the 1st", at=datetime(2025, 2, 28, 21, 30, tzinfo=UTC))
    client.force_login(member("mark", setup.project))
    first = client.get("/journal/", {"date_from": "2025-03-01", "date_to": "2025-03-01"})
    assert subjects(first) == ["Late on the 1st", "Early on the 1st"]
    assert subjects(client.get("/journal/", {"date_from": "2025-03-02"})) == ["Early on the 2nd"]
    assert subjects(client.get("/journal/", {"date_to": "2025-02-28"})) == []


def test_a_source_or_campaign_in_the_list_links_to_the_list_narrowed_to_it(client, varied):
    setup, _ = varied
    page = client.get("/journal/", {"channel": "paid"}).content.decode()
    # In double quotes: exactly that value, not every value holding it.
    link = f'href="?project={setup.project.pk}&amp;channel=paid&amp;campaign=%22autumn%22"'
    assert link in page
    assert subjects(client.get("/journal/" + html.unescape(link[6:-1]))) == ["Gamma order"]
    assert f'href="?project={setup.project.pk}&amp;channel=paid&amp;source=%22google%22"' in page


def test_a_wrong_filter_value_is_reported_and_the_others_still_apply(client, varied):
    setup, _ = varied
    theirs = make_setup(name="Theirs")
    response = client.get("/journal/", {"site": theirs.site.pk, "channel": "paid", "date_from": "someday"})
    assert response.status_code == 200
    assert subjects(response) == ["Alpha", "Gamma order"]
    assert set(response.context["form"].errors) == {"site", "date_from"}
    assert "errorlist" in response.content.decode()


def test_pages_of_a_filtered_list_keep_the_filter(client):
    setup = make_setup()
    for n in range(60):
        make_lead(setup.project, f"Paid {n:02d}", minutes_ago=2 * n, channel=Channel.PAID)
        make_lead(setup.project, f"Organic {n:02d}", minutes_ago=2 * n + 1, channel=Channel.ORGANIC)
    client.force_login(member("mark", setup.project))
    first = client.get("/journal/", {"channel": "paid"})
    assert subjects(first) == [f"Paid {n:02d}" for n in range(50)]
    next_query = first.context["next_query"]
    assert "channel=paid" in next_query and "before=" in next_query
    assert f'href="?{next_query.replace("&", "&amp;")}"' in first.content.decode()
    second = client.get(f"/journal/?{next_query}")
    assert subjects(second) == [f"Paid {n:02d}" for n in range(50, 60)]
    assert second.context["cursor"] == ""


def test_leads_in_the_same_second_are_neither_lost_nor_repeated_across_pages(client):
    setup = make_setup()
    same = timezone.now().replace(microsecond=0)
    for n in range(120):
        make_lead(setup.project, f"Same {n:03d}", at=same)
    client.force_login(member("mark", setup.project))
    seen, query = [], ""
    for _ in range(4):
        response = client.get(f"/journal/?{query}")
        seen += subjects(response)
        if not response.context["cursor"]:
            break
        query = response.context["next_query"]
    assert sorted(seen) == sorted(f"Same {n:03d}" for n in range(120))
    assert len(seen) == 120


# --- Project switcher -------------------------------------------------------------


def test_a_user_of_several_projects_switches_between_them(client):
    one, two = make_setup(name="One"), make_setup(name="Two")
    user = member("mark", one.project)
    Membership.objects.create(project=two.project, user=user, role=Membership.Role.MARKETER)
    make_lead(one.project, "Lead of one")
    make_lead(two.project, "Lead of two")
    client.force_login(user)
    page = client.get("/journal/").content.decode()
    assert 'id="switcher"' in page
    assert f'<option value="{one.project.pk}" selected>One</option>' in page
    assert f'<option value="{two.project.pk}">Two</option>' in page
    assert subjects(client.get("/journal/")) == ["Lead of one"]
    assert subjects(client.get("/journal/", {"project": two.project.pk})) == ["Lead of two"]
    # Chosen once, kept for the pages opened without a project in the address.
    assert subjects(client.get("/journal/")) == ["Lead of two"]
    assert client.get("/journal/reports/").context["project"] == two.project


def test_a_user_of_one_project_sees_no_switcher(client):
    setup = make_setup()
    client.force_login(member("mark", setup.project))
    page = client.get("/journal/").content.decode()
    assert 'id="switcher"' not in page
    assert 'id="project-name">Shop</strong>' in page


# --- Indexes (issue 6, "Speed"; the benchmark is bench/journal.py) ----------------


@pytest.mark.parametrize(
    "query, index",
    [
        ({}, "lead_project_created"),
        # Source, medium and campaign in double quotes are exact values.
        ({"channel": "paid"}, "lead_project_channel"),
        ({"source": '"google"'}, "lead_project_source"),
        ({"medium": '"cpc"'}, "lead_project_medium"),
        ({"campaign": '"spring"'}, "lead_project_campaign"),
        ({"status": "won"}, "lead_project_status"),
        ({"site": "SITE"}, "lead_project_site"),
    ],
)
def test_a_page_is_read_off_an_index_in_order_without_sorting(query, index):
    setup = make_setup()
    query = {name: setup.site.pk if value == "SITE" else value for name, value in query.items()}
    page = after_cursor(filter_leads(setup.project, LeadFilterForm(query, project=setup.project)), "")[:51]
    with connection.cursor() as cursor:
        # An empty table would be sorted in memory; make every plan but an ordered index walk expensive.
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_sort = off")
    plan = page.explain()
    assert index in plan, plan
    assert "Sort" not in plan, plan


def test_search_by_part_of_the_sender_or_subject_uses_the_trigram_indexes():
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    plan = Lead.objects.filter(search("bricks")).explain()
    for index in ("lead_sender_email_trgm", "lead_sender_name_trgm", "lead_subject_trgm"):
        assert index in plan, plan


def test_a_whole_address_finds_exactly_that_sender_and_a_part_finds_all_that_contain_it(client):
    setup = make_setup()
    make_lead(setup.project, "Exact", sender_email="ivan@client.test")
    make_lead(setup.project, "Longer", sender_email="big.ivan@client.test")
    make_lead(setup.project, "In the subject: ivan@client.test", sender_email="olga@client.test")
    client.force_login(member("mark", setup.project))
    assert subjects(client.get("/journal/", {"q": "IVAN@client.test"})) == ["Exact"]
    assert subjects(client.get("/journal/", {"q": "ivan@client"})) == [
        "In the subject: ivan@client.test",
        "Longer",
        "Exact",
    ]


def test_a_tagged_page_finds_its_ids_on_indexes_alone_then_reads_only_its_rows():
    setup = make_setup()
    tag = setup.project.tags.create(name="vip")
    form = LeadFilterForm({"site": setup.site.pk, "tag": tag.pk}, project=setup.project)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
        cursor.execute("SET LOCAL enable_bitmapscan = off")
    with CaptureQueriesContext(connection) as queries:
        journal_page(filter_leads(setup.project, form))
    (sql,) = [query["sql"] for query in queries.captured_queries if "attribution_lead" in query["sql"]]
    assert " IN (SELECT " in sql and "LIMIT 51" in sql, sql
    with connection.cursor() as cursor:
        cursor.execute("EXPLAIN " + sql)
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Index Only Scan using lead_project_site" in plan, plan
