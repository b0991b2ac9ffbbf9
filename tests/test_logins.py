"""One limit for every sign-in: the admin's login is limited as the
journal's is (per username and per client address, the same words either
way, the right password refused too while locked), a lockout is recorded
and shown to superusers only, and the typed name is kept only when it is an
account's."""

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from projects.logins import FAILURES_PER_ADDRESS, FAILURES_PER_USERNAME, TOO_MANY
from projects.models import LoginLockout
from tests.test_journal_support import member

pytestmark = pytest.mark.django_db


def admin_sign_in(client, username, password, ip="203.0.113.9"):
    return client.post(
        "/admin/login/", {"username": username, "password": password}, REMOTE_ADDR=ip, HTTP_ACCEPT_LANGUAGE="en"
    )


def test_the_admin_login_is_limited_per_username_even_with_the_right_password(client):
    member("manny")
    for _ in range(FAILURES_PER_USERNAME):
        answer = admin_sign_in(client, "manny", "guess")
        assert answer.status_code == 200 and TOO_MANY not in answer.content.decode()
    refused = admin_sign_in(client, "manny", "pw-manny")
    assert refused.status_code == 200 and TOO_MANY in refused.content.decode()
    assert "_auth_user_id" not in client.session
    unknown = admin_sign_in(Client(), "nobody", "guess")
    assert TOO_MANY not in unknown.content.decode()  # another username is not locked by it
    [lockout] = LoginLockout.objects.all()
    assert (lockout.where, lockout.username, lockout.reason) == ("admin", "manny", LoginLockout.Reason.USERNAME)
    assert lockout.client_address == "203.0.113.9"


def test_a_guesser_trying_many_names_from_one_address_is_locked_and_no_name_is_written_down(client):
    for n in range(FAILURES_PER_ADDRESS):
        admin_sign_in(client, f"guess-{n}-{'secret' * 3}", "x", ip="198.51.100.7")
    locked = admin_sign_in(client, "someone-else", "x", ip="198.51.100.7")
    assert TOO_MANY in locked.content.decode()
    lockout = LoginLockout.objects.get()
    assert (lockout.reason, lockout.username) == (LoginLockout.Reason.ADDRESS, "")
    assert admin_sign_in(Client(), "someone-else", "x", ip="192.0.2.1").status_code == 200
    assert TOO_MANY not in admin_sign_in(Client(), "other", "x", ip="192.0.2.1").content.decode()


def test_the_journal_and_the_admin_share_one_count(client):
    member("mark", is_staff=True)
    for _ in range(FAILURES_PER_USERNAME - 1):
        client.post("/journal/login/", {"username": "mark", "password": "guess"})
    admin_sign_in(client, "mark", "guess", ip="127.0.0.1")
    assert TOO_MANY in client.post("/journal/login/", {"username": "mark", "password": "pw-mark"}).content.decode()


def test_lockouts_are_shown_to_superusers_only(client):
    member("manny")
    for _ in range(FAILURES_PER_USERNAME):
        admin_sign_in(Client(), "manny", "guess")
    staff = member("staffer", is_staff=True)
    client.force_login(staff)
    assert client.get("/admin/projects/loginlockout/").status_code == 403
    client.force_login(get_user_model().objects.create_superuser("boss", password="pw-boss-12345"))
    page = client.get("/admin/projects/loginlockout/")
    assert page.status_code == 200 and "manny" in page.content.decode()
