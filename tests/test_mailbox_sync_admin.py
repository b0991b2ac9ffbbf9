"""mailbox_sync in admin: provider presets, connecting a mailbox only once,
the "test connection" action and button, and the mailbox list."""

from datetime import timedelta

import pytest
from django.contrib.auth import get_user_model
from django.contrib.messages import get_messages
from django.utils import timezone

from mailbox_sync.models import Letter, Mailbox
from mailbox_sync.services import mailbox_password, store_letter
from projects.models import Membership
from tests.factories import letter_bytes, make_setup
from tests.test_mailbox_sync_connect import closed_port

pytestmark = pytest.mark.django_db

ADD = "/admin/mailbox_sync/mailbox/add/"


def form(project, **fields):
    data = {
        "project": project.pk,
        "name": "Sales inbox",
        "provider": "other",
        "host": "",
        "port": "",
        "security": "ssl",
        "username": "Sales@Shop.test",
        "password": "app-password-1",
        "folder_mode": "listed",
        "folders": "INBOX",
        "active": "on",
        "repeat_period": "1 00:00:00",
        "sync_interval_minutes": 10,
        "text_limit": 1000,
        "folder_states-TOTAL_FORMS": 0,
        "folder_states-INITIAL_FORMS": 0,
    }
    data.update(fields)
    return data


def messages_of(response) -> list[str]:
    return [str(message) for message in get_messages(response.wsgi_request)]


@pytest.mark.parametrize(
    ("provider", "host", "port"),
    [
        ("gmail", "imap.gmail.com", 993),
        ("yandex", "imap.yandex.ru", 993),
        ("mailru", "imap.mail.ru", 993),
        ("icloud", "imap.mail.me.com", 993),
    ],
)
def test_a_provider_preset_sets_host_port_and_tls(admin_client, provider, host, port):
    project = make_setup().project
    response = admin_client.post(ADD, form(project, provider=provider, host="typed.example", port=143))
    assert response.status_code == 302, response.content[-2000:]
    mailbox = Mailbox.objects.get(name="Sales inbox")
    assert (mailbox.provider, mailbox.host, mailbox.port, mailbox.security) == (provider, host, port, "ssl")
    assert mailbox.username == "sales@shop.test"
    assert mailbox_password(mailbox) == "app-password-1"


def test_outlook_is_refused_until_oauth2_comes(admin_client):
    project = make_setup().project
    response = admin_client.post(ADD, form(project, provider="outlook"))
    assert response.status_code == 200
    assert b"OAuth2" in response.content
    assert not Mailbox.objects.filter(name="Sales inbox").exists()


def test_other_needs_a_host_and_a_port(admin_client):
    project = make_setup().project
    response = admin_client.post(ADD, form(project))
    assert response.status_code == 200
    assert b"Enter the IMAP server" in response.content and b"Enter the port" in response.content
    response = admin_client.post(ADD, form(project, host="Mail.Shop.TEST.", port=993))
    assert response.status_code == 302
    assert Mailbox.objects.get(name="Sales inbox").host == "mail.shop.test"


def test_the_same_mailbox_cannot_be_connected_again_in_any_project(admin_client):
    first, second = make_setup(name="One"), make_setup(name="Two")
    assert admin_client.post(ADD, form(first.project, provider="gmail")).status_code == 302
    again = admin_client.post(ADD, form(second.project, provider="gmail", username=" SALES@shop.test "))
    assert again.status_code == 200
    assert again.content.count(b"This mailbox is already connected (possibly in another project).") == 1
    assert Mailbox.objects.filter(username="sales@shop.test").count() == 1


def test_the_mailbox_list_shows_last_sync_letters_state_and_error(admin_client):
    setup = make_setup()
    at = timezone.now() - timedelta(minutes=3)
    for n in range(3):
        store_letter(mailbox=setup.mailbox, raw=letter_bytes(to="info@shop.test", subject=f"L{n}"), received_at=at)
    store_letter(mailbox=setup.mailbox, raw=b"\xff\xfe not a letter", received_at=at)
    Mailbox.objects.filter(pk=setup.mailbox.pk).update(
        state=Mailbox.State.FAILING, last_error="Authentication failed: check the password", last_error_at=at,
        last_sync_at=at,
    )  # fmt: skip
    page = admin_client.get("/admin/mailbox_sync/mailbox/").content.decode()
    row = page[page.index("Shop inbox") :]
    assert "Failing" in row
    assert "Authentication failed: check the password" in row
    assert '<td class="field-letters">4</td>' in row
    assert '<td class="field-unreadable">1</td>' in row
    assert Letter.objects.filter(mailbox=setup.mailbox).count() == 4


@pytest.mark.imap
def test_the_test_connection_action_gives_a_verdict_per_mailbox(admin_client, mail_server, account):
    _user, _password, good = account
    bad = make_setup(name="Bad", imap_port=mail_server.port, imap_user="nobody@example.com", imap_password="wrong")
    response = admin_client.post(
        "/admin/mailbox_sync/mailbox/",
        {"action": "test_connection", "_selected_action": [good.pk, bad.mailbox.pk]},
        follow=True,
    )
    said = messages_of(response)
    assert any(m.startswith("Shop inbox: Connected: INBOX (0 letters)") for m in said), said
    assert any(m.startswith("Bad inbox: Authentication failed") for m in said), said
    assert not any("wrong" in m for m in said)


@pytest.mark.imap
def test_the_change_page_has_a_test_connection_button_that_only_managers_may_press(client, mail_server, account):
    _user, _password, mailbox = account
    url = f"/admin/mailbox_sync/mailbox/{mailbox.pk}/test-connection/"
    manager = get_user_model().objects.create_user("anna", password="pw-anna", is_staff=True)
    Membership.objects.create(project=mailbox.project, user=manager, role=Membership.Role.MANAGER)
    marketer = get_user_model().objects.create_user("mark", password="pw-mark", is_staff=True)
    Membership.objects.create(project=mailbox.project, user=marketer, role=Membership.Role.MARKETER)

    client.force_login(manager)
    page = client.get(f"/admin/mailbox_sync/mailbox/{mailbox.pk}/change/").content.decode()
    assert url in page and "Test connection" in page
    assert client.get(url).status_code == 405  # a POST, with the CSRF token, from the button
    response = client.post(url, follow=True)
    assert response.redirect_chain[-1][0].endswith(f"/admin/mailbox_sync/mailbox/{mailbox.pk}/change/")
    assert any(m.startswith("Shop inbox: Connected") for m in messages_of(response))

    client.force_login(marketer)
    assert client.post(url).status_code == 403


def test_another_projects_mailbox_cannot_be_tested(client):
    mine, theirs = make_setup(name="Mine"), make_setup(name="Theirs")
    user = get_user_model().objects.create_user("anna", password="pw-anna", is_staff=True)
    Membership.objects.create(project=mine.project, user=user, role=Membership.Role.MANAGER)
    client.force_login(user)
    assert client.post(f"/admin/mailbox_sync/mailbox/{theirs.mailbox.pk}/test-connection/").status_code == 404


# --- Test connection before saving ---------------------------------------------


def submitted_for_a_test(client, project, **fields):
    """The add form posted with its "test connection" button."""
    response = client.post(ADD, {**form(project, **fields), "_test_connection": "1"})
    assert response.status_code == 200, response.status_code
    return response, messages_of(response)


@pytest.mark.imap
def test_the_add_form_tests_the_entered_connection_without_saving_or_showing_the_password(admin_client, mail_server):
    project = make_setup().project
    page = admin_client.get(ADD).content.decode()
    assert 'name="_test_connection"' in page
    fields = {"host": "127.0.0.1", "port": mail_server.port, "security": "none", "password": "secret"}
    response, said = submitted_for_a_test(admin_client, project, username="new-box@example.com", **fields)
    assert said == ["Connection test: Connected: INBOX (0 letters). To save, enter the password again."], said
    assert not Mailbox.objects.filter(name="Sales inbox").exists()
    page = response.content.decode()
    assert "secret" not in page
    assert 'value="new-box@example.com"' in page  # the rest of the form is kept
    assert "Please correct" not in page
    # Saved with the same values: the usual add.
    assert admin_client.post(ADD, form(project, username="new-box@example.com", **fields)).status_code == 302
    assert mailbox_password(Mailbox.objects.get(name="Sales inbox")) == "secret"


@pytest.mark.imap
@pytest.mark.parametrize(
    ("fields", "verdict"),
    [
        ({"security": "none", "password": "not-the-password-7"}, "Authentication failed"),
        ({"security": "ssl"}, "TLS error"),
        ({"security": "none", "folders": "INBOX, Orders"}, "'Orders' is missing"),
        ({"security": "none", "port": "closed"}, "unreachable"),
    ],
)
def test_the_add_form_says_what_is_wrong_with_the_entered_connection(
    admin_client, mail_server, settings, fields, verdict
):
    settings.IMAP_TIMEOUT_SECONDS = 3
    user, _password = mail_server.account(password="the-real-one")
    project = make_setup().project
    entered = {"host": "127.0.0.1", "port": mail_server.port, "username": user, "password": "the-real-one", **fields}
    if entered["port"] == "closed":
        entered["port"] = closed_port()
    response, said = submitted_for_a_test(admin_client, project, **entered)
    assert len(said) == 1 and said[0].startswith("Connection test: ") and verdict in said[0], said
    assert entered["password"] not in response.content.decode()
    assert not Mailbox.objects.filter(name="Sales inbox").exists()


@pytest.mark.imap
def test_the_change_form_tests_edited_values_with_the_stored_password(admin_client, mail_server, account):
    _user, _password, mailbox = account
    url = f"/admin/mailbox_sync/mailbox/{mailbox.pk}/change/"
    entered = form(
        mailbox.project,
        name=mailbox.name,
        host="127.0.0.1",
        port=mailbox.port,
        security="none",
        username=mailbox.username,
        password="",
        folders="INBOX, Archive",
    )
    response = admin_client.post(url, {**entered, "_test_connection": "1"})
    said = messages_of(response)
    assert len(said) == 1 and "'Archive' is missing" in said[0], said
    assert "enter the password again" not in said[0]
    mailbox.refresh_from_db()
    assert mailbox.folders == "INBOX"  # nothing saved
    response = admin_client.post(url, {**entered, "folders": "INBOX", "_test_connection": "1"})
    assert messages_of(response) == ["Connection test: Connected: INBOX (0 letters)"]


def test_a_form_with_mistakes_is_not_tested(admin_client):
    project = make_setup().project
    response = admin_client.post(ADD, {**form(project, password=""), "_test_connection": "1"})
    assert response.status_code == 200
    assert messages_of(response) == []
    assert b"A new mailbox needs its password." in response.content
