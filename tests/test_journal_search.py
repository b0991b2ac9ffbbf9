"""The journal's source, medium and campaign filters (any part, any case;
in quotes, exactly), and search by a part of the sender that asks the trigram
index only for the part's rare stretch."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from attribution.models import Lead
from journal.filters import LeadFilterForm, filter_leads
from journal.search import forget_column_samples, rare_stretch, search
from tests.factories import make_setup
from tests.test_journal_support import make_lead, member
from tracker.models import Channel

pytestmark = pytest.mark.django_db


def subjects(response) -> list[str]:
    return [lead.subject for lead in response.context["leads"]]


@pytest.fixture
def campaigns(client):
    setup = make_setup()
    make_lead(setup.project, "Spring", minutes_ago=1, source="Google", medium="cpc", campaign="Spring_Sale_2024")
    make_lead(setup.project, "Spring again", minutes_ago=2, source="yandex", medium="CPC", campaign="spring")
    make_lead(setup.project, "Autumn", minutes_ago=3, source="google.com", medium="organic", campaign="autumn")
    make_lead(setup.project, "None", minutes_ago=4, channel=Channel.DIRECT)
    client.force_login(member("mark", setup.project))
    return setup


@pytest.mark.parametrize(
    "query, expected",
    [
        ({"campaign": "spring"}, ["Spring", "Spring again"]),
        ({"campaign": "SALE"}, ["Spring"]),
        ({"campaign": '"spring"'}, ["Spring again"]),
        ({"campaign": '"Spring"'}, []),
        ({"source": "GOOGLE"}, ["Spring", "Autumn"]),
        ({"source": '"google"'}, []),
        ({"source": '"Google"'}, ["Spring"]),
        ({"source": "oo"}, ["Spring", "Autumn"]),
        ({"medium": "cpc"}, ["Spring", "Spring again"]),
        ({"medium": "Organ"}, ["Autumn"]),
        ({"medium": "cpc", "campaign": "sale"}, ["Spring"]),
        ({"campaign": "50%"}, []),
        ({"campaign": "_"}, ["Spring"]),
        ({"campaign": '"'}, []),
    ],
)
def test_source_medium_and_campaign_match_any_part_in_any_case_and_exactly_in_quotes(
    client, campaigns, query, expected
):
    response = client.get("/journal/", query)
    assert response.status_code == 200
    assert subjects(response) == expected


def test_the_lists_only_this_campaign_link_shows_that_campaign_alone(client, campaigns):
    page = client.get("/journal/").content.decode()
    assert 'campaign=%22spring%22" title="Only this campaign"' in page
    assert subjects(client.get("/journal/", {"campaign": '"spring"'})) == ["Spring again"]
    assert subjects(client.get("/journal/", {"source": '"Google"'})) == ["Spring"]


def test_the_report_and_export_apply_the_same_source_filters(client, campaigns):
    report = client.get("/journal/reports/", {"campaign": "spring"})
    assert report.context["report"].total.leads == 2
    export = b"".join(client.get("/journal/export.csv", {"campaign": '"spring"'}).streaming_content).decode()
    assert "Spring again" in export
    assert "Spring_Sale_2024" not in export


def test_the_source_filters_have_trigram_indexes():
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_seqscan = off")
    for column in ("source", "medium", "campaign"):
        plan = Lead.objects.filter(**{f"{column}__icontains": "spring"}).explain()
        assert f"lead_{column}_trgm" in plan, plan


SAMPLE = [(f"CLIENT{n}@MAIL{n % 7}.TEST", 1 / 300) for n in range(300)]


@pytest.mark.parametrize(
    "text, stretch",
    [
        # CLI, LIE, IEN, ENT are in every address; NT1 in a third of them.
        ("client123@", "t123@"),
        ("CLIENT123@", "T123@"),
        # Every piece common: the whole text (the index has nothing better to go on).
        ("client", "client"),
        # Every piece rare: the whole text.
        ("petrov", "petrov"),
        ("ab", "ab"),
        # The longest rare stretch wins: "MAI", "AIL" are common; "ZZZQ@M" is shorter than "IL.XYQWV".
        ("zzzq@mail.xyqwv", "il.xyqwv"),
    ],
)
def test_the_index_is_asked_for_the_longest_rare_stretch(text, stretch):
    assert rare_stretch(text, SAMPLE) == stretch
    assert rare_stretch(text, []) == text


def test_a_part_of_an_address_full_of_common_pieces_is_found_through_its_rare_stretch(client):
    setup = make_setup()
    for n in range(300):
        make_lead(setup.project, f"Letter {n}", minutes_ago=n, sender_email=f"client{n}@mail{n % 7}.test")
    # Holds the rare stretch "t123@" but not the whole text: not a match.
    make_lead(setup.project, "Ant", sender_email="ant123@zoo.test")
    make_lead(setup.project, "In the subject: CLIENT123@ wrote", sender_email="olga@zoo.test")
    with connection.cursor() as cursor:
        # ANALYZE counts this transaction's own rows, so pg_stats holds them.
        cursor.execute("ANALYZE attribution_lead")
    forget_column_samples()
    try:
        sql = str(Lead.objects.filter(search("client123@")).query)
        assert "%t123@%" in sql and "STRPOS" in sql.upper(), sql
        client.force_login(member("mark", setup.project))
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/journal/", {"q": "client123@"})
        assert subjects(response) == ["In the subject: CLIENT123@ wrote", "Letter 123"]
        assert any("STRPOS" in query["sql"].upper() for query in queries.captured_queries)
        form = LeadFilterForm({"q": "Client12"}, project=setup.project)
        found = sorted(filter_leads(setup.project, form).values_list("subject", flat=True))
        assert found == sorted(
            ["In the subject: CLIENT123@ wrote", "Letter 12", *[f"Letter {n}" for n in range(120, 130)]]
        )
    finally:
        forget_column_samples()
