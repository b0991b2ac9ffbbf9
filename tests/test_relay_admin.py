"""The relay in admin: credentials shown once and kept hashed, the upstream's
password kept encrypted and never rendered, its host passing the guard, the
queue visible (state, attempts, next attempt, last error) with "retry now",
and each manager seeing only their own projects' rows."""

import re
from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.utils import timezone

from integrations.models import OutboundStatus
from projects.models import Membership, Project
from relay import credentials
from relay.models import Credential, QueuedLetter, Upstream
from relay.upstream import upstream_password
from tests.test_relay_support import letter

pytest_plugins = ["tests.test_relay_support"]
pytestmark = pytest.mark.django_db


def manager_of(project, name="manager"):
    user = get_user_model().objects.create_user(name, f"{name}@shop.test", "pw", is_staff=True)
    Membership.objects.create(project=project, user=user, role=Membership.Role.MANAGER)
    return user


def queued(project, **fields):
    now = timezone.now()
    defaults = dict(
        project=project,
        mail_from="anna@shop.test",
        recipients=["ivan@client.test"],
        raw=letter(),
        size=len(letter()),
        message_id="<letter-1@shop.test>",
        next_attempt_at=now + timedelta(minutes=5),
        give_up_at=now + timedelta(hours=24),
        attempts=1,
        last_error="smtp.shop.test refused the connection",
    )
    return QueuedLetter.objects.create(**{**defaults, **fields})


def test_a_new_credential_shows_its_password_once_and_keeps_only_a_hash(client, relay_settings):
    project = Project.objects.create(name="Shop")
    client.force_login(manager_of(project))
    response = client.post(
        "/admin/relay/credential/add/",
        {"project": project.pk, "name": "Anna's mail client", "allowed_senders": "", "recipients_per_hour": ""},
    )
    assert response.status_code == 200 and "no-store" in response["Cache-Control"]
    page = response.content.decode()
    credential = Credential.objects.get()
    server, port, _security, username, password = re.findall(r'value="([^"]*)"[^>]*class="shown-once"', page)
    assert (server, port, username) == ("relay.test", "2525", credential.username)
    assert check_password(password, credential.password_hash)
    assert password not in credential.password_hash
    assert credentials.authenticate(credential.username, password, ip="127.0.0.1") == credential

    change = client.get(f"/admin/relay/credential/{credential.pk}/change/").content.decode()
    assert password not in change and credential.password_hash not in change


def test_the_upstreams_password_is_kept_encrypted_and_never_shown(client, relay_settings):
    project = Project.objects.create(name="Shop")
    client.force_login(manager_of(project))
    data = {
        "project": project.pk,
        "host": "127.0.0.1",
        "port": 587,
        "security": "starttls",
        "username": "mailer@shop.test",
        "password": "upstream-secret",
        "active": "on",
    }
    response = client.post("/admin/relay/upstream/add/", data)
    assert response.status_code == 302
    upstream = Upstream.objects.get()
    assert "upstream-secret" not in upstream.password_encrypted
    assert upstream_password(upstream) == "upstream-secret"
    page = client.get(f"/admin/relay/upstream/{upstream.pk}/change/").content.decode()
    assert "upstream-secret" not in page and upstream.password_encrypted not in page

    # Saving without typing a password keeps the stored one.
    client.post(f"/admin/relay/upstream/{upstream.pk}/change/", {**data, "password": "", "port": 2525})
    upstream.refresh_from_db()
    assert upstream.port == 2525 and upstream_password(upstream) == "upstream-secret"


def test_an_upstream_on_the_internal_network_is_refused_in_admin(client, settings):
    settings.RELAY_ALLOW_PRIVATE_UPSTREAMS = False
    project = Project.objects.create(name="Shop")
    client.force_login(manager_of(project))
    response = client.post(
        "/admin/relay/upstream/add/",
        {"project": project.pk, "host": "localhost", "port": 25, "security": "none", "active": "on"},
    )
    assert response.status_code == 200
    assert "cannot be used as an upstream" in response.content.decode()
    assert not Upstream.objects.exists()


def test_the_queue_shows_each_managers_own_letters_with_their_state(client):
    shop, other = Project.objects.create(name="Shop"), Project.objects.create(name="Other")
    mine = queued(shop)
    theirs = queued(other, mail_from="boss@other.test")
    client.force_login(manager_of(shop))
    page = client.get("/admin/relay/queuedletter/").content.decode()
    assert "anna@shop.test" in page and "boss@other.test" not in page
    assert "refused the connection" in page and "Pending" in page
    assert client.get(f"/admin/relay/queuedletter/{mine.pk}/change/").status_code == 200
    assert client.get(f"/admin/relay/queuedletter/{theirs.pk}/change/").status_code == 302  # not found for them


def test_retry_now_makes_the_selected_waiting_letters_due(client, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = False
    shop, other = Project.objects.create(name="Shop"), Project.objects.create(name="Other")
    waiting, done = queued(shop), queued(shop, status=OutboundStatus.SENT, next_attempt_at=None)
    theirs = queued(other)
    client.force_login(manager_of(shop))
    response = client.post(
        "/admin/relay/queuedletter/",
        {"action": "retry", "_selected_action": [waiting.pk, done.pk, theirs.pk]},
        follow=True,
    )
    assert response.status_code == 200
    waiting.refresh_from_db(), theirs.refresh_from_db()
    assert waiting.next_attempt_at <= timezone.now()
    assert theirs.next_attempt_at > timezone.now()


def test_a_manager_sees_and_makes_only_their_own_projects_upstreams_and_credentials(client, relay_settings):
    shop, other = Project.objects.create(name="Shop"), Project.objects.create(name="Other")
    their_upstream = Upstream.objects.create(project=other, host="smtp.other.test", port=587)
    their_credential, _password = credentials.credential_create(project=other, name="Boss mail client")
    client.force_login(manager_of(shop))
    assert "smtp.other.test" not in client.get("/admin/relay/upstream/").content.decode()
    assert "Boss mail client" not in client.get("/admin/relay/credential/").content.decode()
    assert client.get(f"/admin/relay/upstream/{their_upstream.pk}/change/").status_code == 302  # not found for them
    assert client.get(f"/admin/relay/credential/{their_credential.pk}/change/").status_code == 302
    response = client.post(
        "/admin/relay/credential/add/",
        {"project": other.pk, "name": "Sneaky", "allowed_senders": "", "recipients_per_hour": ""},
    )
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    response = client.post(
        "/admin/relay/upstream/add/",
        {"project": other.pk, "host": "127.0.0.1", "port": 25, "security": "none", "active": "on"},
    )
    assert response.status_code == 200 and "Select a valid choice" in response.content.decode()
    assert list(Credential.objects.values_list("project", flat=True)) == [other.pk]
    assert list(Upstream.objects.values_list("host", flat=True)) == ["smtp.other.test"]
    client.post("/admin/relay/credential/", {"action": "revoke", "_selected_action": [their_credential.pk]})
    their_credential.refresh_from_db()
    assert their_credential.revoked_at is None
