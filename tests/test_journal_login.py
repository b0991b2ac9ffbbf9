"""The journal's own sign-in: a marketer who is not staff uses the journal
and not the admin; failed attempts are limited without telling which
usernames exist; CSRF applies."""

import re

import pytest
from django.test import Client

from projects.logins import FAILURES_PER_ADDRESS, FAILURES_PER_USERNAME, TOO_MANY
from tests.factories import make_setup
from tests.test_journal_support import make_lead, member

pytestmark = pytest.mark.django_db

WRONG = "Please enter a correct username and password"


def same_page(response, username: str) -> str:
    """The page without what differs by design: the typed username and the CSRF token."""
    page = response.content.decode().replace(username, "USERNAME")
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "", page)


def sign_in(client, username, password, **extra):
    return client.post("/journal/login/", {"username": username, "password": password}, **extra)


def test_a_marketer_who_is_not_staff_signs_in_and_sees_their_projects_leads(client):
    mine, theirs = make_setup(name="Mine"), make_setup(name="Theirs")
    make_lead(mine.project, "Our enquiry")
    make_lead(theirs.project, "Their enquiry")
    member("mark", mine.project, is_staff=False)

    assert client.get("/journal/").url.startswith("/journal/login/?next=/journal/")
    page = client.get("/journal/login/")
    assert page.status_code == 200
    assert b'name="csrfmiddlewaretoken"' in page.content

    response = sign_in(client, "mark", "pw-mark")
    assert response.status_code == 302
    assert response.url == "/journal/"
    listing = client.get(response.url)
    assert listing.status_code == 200
    assert b"Our enquiry" in listing.content
    assert b"Their enquiry" not in listing.content
    assert b'href="/admin/"' not in listing.content  # no admin link for a non-staff user


def test_sign_in_returns_to_the_page_asked_for_but_never_to_another_site(client):
    setup = make_setup()
    lead = make_lead(setup.project, "Asked for")
    member("mark", setup.project, is_staff=False)
    asked = f"/journal/leads/{lead.pk}/"
    response = client.post("/journal/login/", {"username": "mark", "password": "pw-mark", "next": asked})
    assert response.url == asked
    client.logout()
    response = client.post(
        "/journal/login/", {"username": "mark", "password": "pw-mark", "next": "https://evil.test/journal/"}
    )
    assert response.url == "/journal/"


def test_a_marketer_who_is_not_staff_cannot_open_the_admin(client):
    setup = make_setup()
    member("mark", setup.project, is_staff=False)
    sign_in(client, "mark", "pw-mark")
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")
    assert client.get("/admin/tracker/site/").status_code == 302
    # The admin's own sign-in refuses a non-staff account.
    assert Client().post("/admin/login/", {"username": "mark", "password": "pw-mark"}).status_code == 200


def test_a_manager_keeps_the_admin_and_can_use_the_journal_sign_in_too(client):
    from projects.models import Membership

    setup = make_setup()
    member("anna", setup.project, role=Membership.Role.MANAGER, is_staff=True)
    assert sign_in(client, "anna", "pw-anna").url == "/journal/"
    assert client.get("/admin/").status_code == 200
    assert b'href="/admin/"' in client.get("/journal/").content


def test_a_wrong_password_and_an_unknown_username_get_the_same_answer(client):
    member("mark", make_setup().project, is_staff=False)
    wrong_password = sign_in(client, "mark", "nope")
    unknown_user = sign_in(client, "nobody-here", "nope")
    assert wrong_password.status_code == unknown_user.status_code == 200
    assert WRONG in wrong_password.content.decode()
    assert same_page(wrong_password, "mark") == same_page(unknown_user, "nobody-here")
    assert "_auth_user_id" not in client.session


def test_failed_sign_ins_are_limited_per_username_even_with_the_right_password_after(client):
    member("mark", make_setup().project, is_staff=False)
    for _ in range(FAILURES_PER_USERNAME):
        assert WRONG in sign_in(client, "mark", "guess").content.decode()
    # Now even the right password is refused, with words that say nothing of the account.
    refused = sign_in(client, "mark", "pw-mark")
    assert TOO_MANY in refused.content.decode()
    assert "_auth_user_id" not in client.session
    # An unknown username is limited just the same: the limit reveals nothing.
    for _ in range(FAILURES_PER_USERNAME):
        sign_in(client, "ghost", "guess")
    assert TOO_MANY in sign_in(client, "ghost", "guess").content.decode()
    # Another account from the same address is not locked out by them.
    member("olga", make_setup(name="Other").project, is_staff=False)
    assert sign_in(client, "olga", "pw-olga").status_code == 302


def test_failed_sign_ins_are_limited_per_client_address(client):
    member("mark", make_setup().project, is_staff=False)
    for n in range(FAILURES_PER_ADDRESS):
        sign_in(client, f"guess{n}", "guess")
    assert TOO_MANY in sign_in(client, "mark", "pw-mark").content.decode()
    # Someone at another address still signs in.
    other = Client(REMOTE_ADDR="10.9.8.7")
    assert sign_in(other, "mark", "pw-mark").status_code == 302


def test_a_successful_sign_in_clears_the_usernames_failures(client):
    member("mark", make_setup().project, is_staff=False)
    for _ in range(FAILURES_PER_USERNAME - 1):
        sign_in(client, "mark", "guess")
    assert sign_in(client, "mark", "pw-mark").status_code == 302
    client.logout()
    for _ in range(FAILURES_PER_USERNAME - 1):
        sign_in(client, "mark", "guess")
    assert sign_in(client, "mark", "pw-mark").status_code == 302


def test_sign_in_without_the_csrf_token_is_refused():
    member("mark", make_setup().project, is_staff=False)
    client = Client(enforce_csrf_checks=True)
    assert sign_in(client, "mark", "pw-mark").status_code == 403
    assert "_auth_user_id" not in client.session


def test_odd_input_on_the_sign_in_page_never_answers_500(client):
    for data in ({}, {"username": ["a", "b"], "password": "x"}, {"username": "\x00", "password": "\x00"}):
        assert client.post("/journal/login/", data).status_code == 200


def test_sign_out_is_a_post_and_ends_the_session(client):
    setup = make_setup()
    member("mark", setup.project, is_staff=False)
    sign_in(client, "mark", "pw-mark")
    page = client.get("/journal/").content.decode()
    assert 'action="/journal/logout/"' in page
    assert client.get("/journal/logout/").status_code == 405
    response = client.post("/journal/logout/")
    assert response.status_code == 302
    assert response.url == "/journal/login/"
    assert client.get("/journal/").status_code == 302
