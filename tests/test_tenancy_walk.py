"""Nothing of another project shows to a project's people: every admin
changelist (with its filters), add and change page, every journal page and
every API list, walked with two projects whose names mark them, so a new page
is covered as soon as it is registered. Marketers read; they do not delete
leads or run syncs and connection tests."""

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import NoReverseMatch, reverse

from attribution.models import Lead
from engagement.models import EngagementSettings
from integrations.keys import api_key_create
from integrations.models import Webhook
from integrations.webhooks import webhook_set_secret
from projects.models import Membership
from tests.engagement_fixtures import track
from tests.factories import make_setup
from tests.test_journal_support import make_lead, member

pytestmark = pytest.mark.django_db

MARK = "bravo"  # every name of the other project carries it


def project_with_data(name: str):
    setup = make_setup(name=name.title(), original=f"info@{name}.test")
    for obj in (setup.site, setup.pool, setup.block, setup.rule, setup.mailbox):
        obj.name = f"{name} {obj._meta.model_name}"
        obj.save()
    make_lead(setup.project, subject=f"{name} enquiry", sender_email=f"client@{name}.test", source=f"{name}-source")
    EngagementSettings.objects.create(project=setup.project, tracking_enabled=True)
    track(setup.project, subject=f"{name} offer", campaign=f"{name}-campaign", recipients=(f"anna@{name}.test",))
    webhook = Webhook(project=setup.project, url=f"https://{name}.example/hook")
    webhook_set_secret(webhook, "secret-12345")
    webhook.save()
    return setup


@pytest.fixture
def two_projects():
    return project_with_data("alpha"), project_with_data(MARK)


def admin_pages(objects_of) -> list[str]:
    urls = ["/admin/"]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        try:
            urls.append(reverse("admin:{}_{}_add".format(*info)))
        except NoReverseMatch:
            pass
        for obj in objects_of(model):
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
    return urls


@pytest.mark.parametrize("role", [Membership.Role.MANAGER, Membership.Role.MARKETER])
def test_no_admin_page_shows_anything_of_another_project(client, two_projects, role):
    alpha, bravo = two_projects
    client.force_login(member("alpha-person", alpha.project, role=role))
    seen, leaks = 0, {}
    for url in admin_pages(lambda model: model.objects.order_by("pk")[:50]):
        answer = client.get(url)
        if answer.status_code in (403, 404, 302):
            continue
        assert answer.status_code == 200, url
        seen += 1
        if MARK in answer.content.decode().lower():
            leaks[url] = answer.status_code
    assert seen > 30
    assert leaks == {}


def test_no_journal_page_or_api_list_shows_anything_of_another_project(client, two_projects):
    alpha, bravo = two_projects
    client.force_login(member("alpha-person", alpha.project))
    for url in ("/journal/", "/journal/reports/", "/journal/sent/", "/journal/export.csv"):
        answer = client.get(url)
        body = b"".join(answer.streaming_content) if answer.streaming else answer.content
        assert answer.status_code == 200 and MARK not in body.decode().lower(), url
    for lead in Lead.objects.filter(project=bravo.project):
        assert client.get(f"/journal/leads/{lead.pk}/").status_code == 404
    _row, key = api_key_create(project=alpha.project, name="CRM")
    api = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    schema = api.get("/api/schema/?format=json").json()
    lists = [path.replace("/api/", "/api/", 1) for path in schema["paths"] if "{" not in path]
    checked = 0
    for path in lists:
        answer = api.get(path)
        if answer.status_code != 200:
            continue
        checked += 1
        assert MARK not in answer.content.decode().lower(), path
    assert checked >= 5


def test_marketers_cannot_delete_leads_or_run_syncs_and_connection_tests(client, two_projects):
    alpha, _bravo = two_projects
    client.force_login(member("mark", alpha.project, role=Membership.Role.MARKETER))
    lead = Lead.objects.filter(project=alpha.project).first()
    assert client.get(reverse("admin:attribution_lead_delete", args=[lead.pk])).status_code == 403
    answer = client.post(
        reverse("admin:attribution_lead_changelist"), {"action": "delete_selected", "_selected_action": [lead.pk]}
    )
    assert Lead.objects.filter(pk=lead.pk).exists(), answer.status_code
    mailbox = alpha.mailbox
    test_connection = reverse("admin:mailbox_sync_mailbox_test_connection", args=[mailbox.pk])
    assert client.post(test_connection).status_code == 403
    changelist = reverse("admin:mailbox_sync_mailbox_changelist")
    for action in ("sync_now", "test_connections"):
        client.post(changelist, {"action": action, "_selected_action": [mailbox.pk]})
    mailbox.refresh_from_db()
    assert mailbox.last_sync_at is None and mailbox.last_error == ""
