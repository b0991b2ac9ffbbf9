"""Admin: every page scoped to the user's projects. (The journal's tests are in tests/test_journal_*.py.)"""

import pytest
from django.contrib.auth import get_user_model

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
