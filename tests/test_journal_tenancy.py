"""Tenancy: every journal page tried as a user of another project, as a user
of no project, and without a login."""

import pytest

from attribution.models import Lead
from projects.models import Membership
from tests.factories import make_setup
from tests.test_journal_support import make_lead, member

pytestmark = pytest.mark.django_db

PAGES = ["/journal/", "/journal/reports/", "/journal/export.csv"]


@pytest.fixture
def victim():
    setup = make_setup(name="Victim")
    lead = make_lead(setup.project, "Victim's secret enquiry", sender_email="ceo@victim.test", source="secret-source")
    return setup, lead


@pytest.fixture
def intruder(client):
    """A manager of their own project, with a lead of their own."""
    own = make_setup(name="Intruder")
    make_lead(own.project, "Intruder's own enquiry")
    user = member("mallory", own.project, role=Membership.Role.MANAGER)
    client.force_login(user)
    return own


def body(response) -> str:
    if response.streaming:
        return b"".join(response.streaming_content).decode()
    return response.content.decode()


@pytest.mark.parametrize("path", PAGES)
def test_another_projects_id_in_the_address_is_not_found(client, victim, intruder, path):
    setup, _lead = victim
    response = client.get(path, {"project": setup.project.pk})
    assert response.status_code == 404


@pytest.mark.parametrize("path", PAGES)
def test_without_a_project_in_the_address_only_the_users_own_leads_appear(client, victim, intruder, path):
    response = client.get(path, {"date_from": "2000-01-01"})
    assert response.status_code == 200
    text = body(response)
    assert "secret" not in text and "ceo@victim.test" not in text
    if path != "/journal/reports/":
        assert "s own enquiry" in text


def test_another_projects_lead_page_is_not_found(client, victim, intruder):
    _setup, lead = victim
    assert client.get(f"/journal/leads/{lead.pk}/").status_code == 404


def test_another_projects_lead_cannot_be_edited(client, victim, intruder):
    _setup, lead = victim
    response = client.post(
        f"/journal/leads/{lead.pk}/",
        {
            "status": "spam",
            "tags": "hacked",
            "comment": "pwned",
            "deal_amount": "1",
            "seen": lead.updated_at.isoformat(),
        },
    )
    assert response.status_code == 404
    lead.refresh_from_db()
    assert (lead.status, lead.comment, lead.deal_amount, lead.tags.count()) == ("new", "", None, 0)


def test_another_projects_site_and_tag_are_refused_as_filters(client, victim, intruder):
    setup, lead = victim
    lead.tags.create(project=setup.project, name="secret-tag")
    tag = setup.project.tags.get()
    for query in ({"site": setup.site.pk}, {"tag": tag.pk}):
        response = client.get("/journal/", query)
        assert response.status_code == 200
        assert "Victim" not in response.content.decode()
        assert response.context["form"].errors
    assert "secret-tag" not in client.get("/journal/").content.decode()


@pytest.mark.parametrize("path", PAGES)
def test_a_user_of_no_project_gets_empty_pages(client, victim, path):
    client.force_login(member("nobody"))
    response = client.get(path)
    assert response.status_code == 200
    assert "secret" not in body(response) and "Victim" not in body(response)


def test_a_user_of_no_project_cannot_open_or_edit_a_lead(client, victim):
    _setup, lead = victim
    client.force_login(member("nobody"))
    assert client.get(f"/journal/leads/{lead.pk}/").status_code == 404
    assert client.post(f"/journal/leads/{lead.pk}/", {"status": "spam"}).status_code == 404
    assert Lead.objects.get(pk=lead.pk).status == "new"


@pytest.mark.parametrize("path", [*PAGES, "/journal/leads/1/"])
def test_every_page_needs_a_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"].startswith("/journal/login/")


def test_a_superuser_sees_every_project(client, victim):
    setup, lead = victim
    client.force_login(member("root", is_superuser=True))
    assert client.get("/journal/", {"project": setup.project.pk}).status_code == 200
    assert client.get(f"/journal/leads/{lead.pk}/").status_code == 200
