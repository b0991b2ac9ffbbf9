"""Admin and journal: every page scoped to the user's projects."""

from datetime import timedelta
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth import get_user_model
from django.utils import timezone

from attribution.models import Lead, MatchKind
from mailbox_sync.models import Mailbox
from projects.models import Membership
from tests.factories import make_setup
from tracker.models import Site

pytestmark = pytest.mark.django_db


def staff(username, project=None, role=Membership.Role.MANAGER):
    user = get_user_model().objects.create_user(username, password="pw-" + username, is_staff=True)
    if project is not None:
        Membership.objects.create(project=project, user=user, role=role)
    return user


def lead(project, subject, minutes_ago, **fields):
    at = timezone.now() - timedelta(minutes=minutes_ago)
    return Lead.objects.create(
        project=project,
        created_at=at,
        last_letter_at=at,
        sender_email="c@client.test",
        subject=subject,
        match_kind=MatchKind.LIVE_LEASE,
        **fields,
    )


def test_a_member_sees_only_their_projects_sites_in_admin(client):
    mine, theirs = make_setup(name="Mine"), make_setup(name="Theirs")
    client.force_login(staff("anna", mine.project))
    page = client.get("/admin/tracker/site/")
    assert page.status_code == 200
    assert b"Mine site" in page.content
    assert b"Theirs site" not in page.content
    assert client.get(f"/admin/tracker/site/{theirs.site.pk}/change/").status_code in (302, 403, 404)
    assert client.get(f"/admin/tracker/site/{mine.site.pk}/change/").status_code == 200


def test_a_marketer_can_read_but_not_change_configuration(client):
    setup = make_setup(name="Shop")
    client.force_login(staff("mark", setup.project, role=Membership.Role.MARKETER))
    url = f"/admin/tracker/site/{setup.site.pk}/change/"
    assert client.get(url).status_code == 200
    response = client.post(url, {"name": "Hijacked", "original_email": "x@x.test", "project": setup.project.pk})
    assert response.status_code == 403
    assert Site.objects.get(pk=setup.site.pk).name == "Shop site"


def test_a_manager_cannot_move_a_site_into_a_project_they_do_not_manage(client):
    mine, theirs = make_setup(name="Mine"), make_setup(name="Theirs")
    client.force_login(staff("anna", mine.project))
    page = client.get("/admin/tracker/site/add/")
    assert f'value="{mine.project.pk}"'.encode() in page.content
    assert f'value="{theirs.project.pk}"'.encode() not in page.content


def test_the_mailbox_password_is_write_only_and_encrypted(admin_client):
    setup = make_setup(name="Shop")
    response = admin_client.post(
        f"/admin/mailbox_sync/mailbox/{setup.mailbox.pk}/change/",
        {
            "project": setup.project.pk,
            "name": "Inbox",
            "host": "imap.shop.test",
            "port": 993,
            "security": "ssl",
            "username": "Info@Shop.test",
            "password": "s3cret-app-password",
            "folders": "INBOX",
            "active": "on",
            "repeat_period": "1 00:00:00",
            "sync_interval_minutes": 10,
            "text_limit": 1000,
            "folder_states-TOTAL_FORMS": 0,
            "folder_states-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 302, response.content[-3000:]
    mailbox = Mailbox.objects.get(pk=setup.mailbox.pk)
    assert mailbox.username == "info@shop.test"
    assert "s3cret-app-password" not in mailbox.password_encrypted
    page = admin_client.get(f"/admin/mailbox_sync/mailbox/{mailbox.pk}/change/")
    assert b"s3cret-app-password" not in page.content
    assert mailbox.password_encrypted.encode() not in page.content


def test_one_mailbox_cannot_be_connected_twice(admin_client):
    first, second = make_setup(name="One"), make_setup(name="Two")
    Mailbox.objects.filter(pk=first.mailbox.pk).update(host="imap.shop.test", username="info@shop.test")
    response = admin_client.post(
        "/admin/mailbox_sync/mailbox/add/",
        {
            "project": second.project.pk,
            "name": "Again",
            "host": "IMAP.shop.test",
            "port": 993,
            "security": "ssl",
            "username": "INFO@shop.test",
            "password": "pw",
            "folders": "INBOX",
            "repeat_period": "1 00:00:00",
            "sync_interval_minutes": 10,
            "text_limit": 1000,
            "folder_states-TOTAL_FORMS": 0,
            "folder_states-INITIAL_FORMS": 0,
        },
    )
    assert response.status_code == 200
    assert b"already connected" in response.content
    assert Mailbox.objects.filter(username="info@shop.test").count() == 1


def test_the_journal_needs_a_login(client):
    response = client.get("/journal/")
    assert response.status_code == 302
    assert "/admin/login/" in response["Location"]


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
