"""The lead admin's actions for a person's data: "Export this person's data"
downloads the JSON of the selected leads' senders, only from the user's
projects; "Erase this person's data" asks first, and is there only for the
project's managers and superusers, never for marketers."""

import json
import logging
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse
from django.utils import timezone

from attribution.models import Lead
from mailbox_sync.models import Letter
from projects.models import Membership
from tests.factories import make_setup
from tests.test_journal_support import member, visit_and_write

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:attribution_lead_changelist")
AT = timezone.now() - timedelta(days=2)


@pytest.fixture
def two_projects():
    alpha, bravo = make_setup(name="Alpha"), make_setup(name="Bravo", original="info@bravo.test")
    ivan = visit_and_write(alpha, AT, "v-ivan", sender="Ivan <ivan@client.test>", subject="Alpha bricks")
    olga = visit_and_write(alpha, AT, "v-olga", sender="Olga <olga@client.test>", subject="Alpha tiles")
    ivan_bravo = visit_and_write(bravo, AT, "v-ivan-b", sender="Ivan <ivan@client.test>", subject="Bravo bricks")
    return alpha, bravo, ivan, olga, ivan_bravo


def run(client, action, leads, follow=False, **extra):
    data = {"action": action, "_selected_action": [lead.pk for lead in leads], **extra}
    return client.post(CHANGELIST, data, follow=follow)


def test_a_marketer_exports_the_selected_senders_of_their_own_project_only(client, two_projects):
    alpha, _bravo, ivan, _olga, ivan_bravo = two_projects
    client.force_login(member("mark", alpha.project, role=Membership.Role.MARKETER))
    answer = run(client, "export_person_data", [ivan, ivan_bravo])
    assert answer.status_code == 200 and answer["Content-Type"].startswith("application/json")
    assert "attachment" in answer["Content-Disposition"]
    [document] = json.loads(answer.content)
    assert document["project"]["id"] == alpha.project.pk and document["email"] == "ivan@client.test"
    assert [lead["id"] for lead in document["leads"]] == [ivan.pk]
    assert "Bravo" not in answer.content.decode() and "olga" not in answer.content.decode().lower()


def test_marketers_are_not_offered_the_erasure_and_cannot_run_it(client, two_projects):
    alpha, _bravo, ivan, _olga, _ivan_bravo = two_projects
    client.force_login(member("mark", alpha.project, role=Membership.Role.MARKETER))
    page = client.get(CHANGELIST).content.decode()
    assert 'value="export_person_data"' in page and 'value="erase_person_data"' not in page
    run(client, "erase_person_data", [ivan], confirmed="yes")
    ivan.refresh_from_db()
    assert ivan.sender_email == "ivan@client.test"


def test_a_manager_confirms_then_the_persons_data_is_erased_in_their_project_only(client, two_projects, caplog):
    alpha, bravo, ivan, olga, ivan_bravo = two_projects
    user = member("manager", alpha.project, role=Membership.Role.MANAGER)
    Membership.objects.create(project=bravo.project, user=user, role=Membership.Role.MARKETER)
    client.force_login(user)
    assert 'value="erase_person_data"' in client.get(CHANGELIST).content.decode()

    confirm = run(client, "erase_person_data", [ivan, ivan_bravo])
    assert confirm.status_code == 200
    page = confirm.content.decode()
    assert "ivan@client.test" in page and "Alpha" in page and "Bravo" not in page
    assert 'name="confirmed" value="yes"' in page
    ivan.refresh_from_db()
    assert ivan.sender_email == "ivan@client.test"  # nothing erased before the confirmation

    with caplog.at_level(logging.INFO, logger="privacy.audit"):
        done = run(client, "erase_person_data", [ivan, ivan_bravo], confirmed="yes")
    assert done.status_code == 302
    ivan.refresh_from_db()
    assert (ivan.sender_email, ivan.subject) == ("", "")
    assert Letter.objects.get(lead=ivan).sender_email == ""
    # Bravo, where the user only reads, and Olga are untouched.
    ivan_bravo.refresh_from_db()
    olga.refresh_from_db()
    assert ivan_bravo.sender_email == "ivan@client.test" and olga.sender_email == "olga@client.test"
    [line] = [r.getMessage() for r in caplog.records if r.name == "privacy.audit"]
    assert "by=admin:manager" in line and "ivan" not in line.lower()


def test_a_superuser_may_erase_in_any_project(client, two_projects):
    _alpha, _bravo, _ivan, _olga, ivan_bravo = two_projects
    root = get_user_model().objects.create_superuser("root", "root@example.com", "pw")
    client.force_login(root)
    run(client, "erase_person_data", [ivan_bravo], confirmed="yes")
    assert not Lead.objects.filter(sender_email="ivan@client.test", project=ivan_bravo.project).exists()


def test_leads_without_a_sender_left_get_a_warning_not_a_page(client, two_projects):
    alpha, _bravo, ivan, _olga, _ivan_bravo = two_projects
    Lead.objects.filter(pk=ivan.pk).update(sender_email="")
    client.force_login(member("manager", alpha.project, role=Membership.Role.MANAGER))
    answer = run(client, "erase_person_data", [ivan], follow=True)
    assert any("None of the selected leads" in str(m) for m in answer.context["messages"])
