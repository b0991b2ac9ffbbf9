"""Mailboxes connected with OAuth2, against Dovecot's oauth2 passdb and a
local provider: XOAUTH2 logins, refreshing before expiry and after the
server refused a token, a revoked grant ("reconnect needed", alerted, no
other mailbox held up), two workers refreshing at once, a token endpoint
down or answering garbage, the consent flow through admin (PKCE, state, the
address from the token), and the refresh token never shown."""

import logging
import threading
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import connection
from django.utils import timezone

from mailbox_sync import events, grants, oauth
from mailbox_sync.models import Letter, Listening, Mailbox, OAuthGrant
from mailbox_sync.providers import Provider
from mailbox_sync.services import check_connection, due_mailbox_ids, sync_mailbox
from tests import oauth_fixtures
from tests.factories import letter_bytes, make_setup
from tests.oauth_fixtures import CLIENT_ID
from tests.test_mailbox_listener_support import FAST, running_listener, wait_until

pytestmark = [pytest.mark.imap, pytest.mark.django_db]

# The fixtures of the local provider and its Dovecot.
oauth_mail = oauth_fixtures.oauth_mail
provider = oauth_fixtures.provider


def connected(oauth_mail, provider, **setup):
    """A mailbox of a fresh account, connected with a grant of the local provider."""
    user = oauth_mail.account()
    mailbox = make_setup(imap_port=oauth_mail.port, imap_user=user, **setup).mailbox
    Mailbox.objects.filter(pk=mailbox.pk).update(provider=Provider.OTHER)
    mailbox.refresh_from_db()
    issued = provider.issue(user)
    tokens = oauth.Tokens(issued["access_token"], issued["expires_in"], issued["refresh_token"], issued["id_token"])
    grants.connect(mailbox, oauth.client_for(Provider.OTHER), tokens, user)
    mailbox.refresh_from_db()
    return user, mailbox


@pytest.fixture
def box(oauth_mail, provider):
    return connected(oauth_mail, provider)


def deliver(oauth_mail, user, subject):
    oauth_mail.append(user, letter_bytes(to="info@shop.test", subject=subject), when=timezone.now())


def test_it_logs_in_with_xoauth2_and_reads_the_letters(oauth_mail, provider, box):
    user, mailbox = box
    deliver(oauth_mail, user, "Over OAuth2")
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.stored) == ("", 1)
    assert Letter.objects.get(mailbox=mailbox).lead is not None
    assert provider.refreshes == 0  # the token from the consent was still good
    assert check_connection(mailbox).ok


def test_it_refreshes_the_access_token_before_it_expires(oauth_mail, provider, box):
    user, mailbox = box
    OAuthGrant.objects.filter(pk=mailbox.pk).update(access_expires_at=timezone.now() + timedelta(seconds=30))
    before = OAuthGrant.objects.get(pk=mailbox.pk).access_token_encrypted
    deliver(oauth_mail, user, "Fresh token")
    assert sync_mailbox(mailbox.pk).stored == 1
    assert provider.refreshes == 1
    grant = OAuthGrant.objects.get(pk=mailbox.pk)
    assert grant.access_token_encrypted != before
    assert grant.access_expires_at > timezone.now() + timedelta(minutes=50)


def test_it_refreshes_once_after_the_server_refused_the_access_token(oauth_mail, provider, box):
    user, mailbox = box
    provider.invalidate_access(user)  # AUTHENTICATIONFAILED for the cached token
    deliver(oauth_mail, user, "After a refused token")
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.stored) == ("", 1)
    assert provider.refreshes == 1


def test_a_revoked_grant_needs_a_reconnect_says_why_and_holds_up_no_other(oauth_mail, provider, box):
    user, mailbox = box
    other_user, other = connected(oauth_mail, provider, name="Other")
    provider.revoke_all(user)
    deliver(oauth_mail, other_user, "Still read")
    result = sync_mailbox(mailbox.pk)
    other_result = sync_mailbox(other.pk)
    mailbox.refresh_from_db()
    assert result.error_kind == "reconnect"
    assert mailbox.state == Mailbox.State.RECONNECT_NEEDED
    assert "invalid_grant (Token has been expired or revoked.)" in mailbox.last_error
    assert (other_result.error, other_result.stored) == ("", 1)
    # No more syncs until someone connects it again; the poll skips it.
    calls = len(provider.token_calls)
    assert sync_mailbox(mailbox.pk).error_kind == "reconnect"
    assert len(provider.token_calls) == calls
    assert mailbox.pk not in due_mailbox_ids(timezone.now() + timedelta(days=1))


@pytest.mark.django_db(transaction=True)
def test_a_revoked_grant_is_announced_to_the_managers_once_committed(oauth_mail, provider):
    user, mailbox = connected(oauth_mail, provider)
    heard = []

    def listener(mailbox_id, reason):
        heard.append((mailbox_id, reason))

    events.subscribe_reconnect_needed(listener)
    try:
        provider.revoke_all(user)
        sync_mailbox(mailbox.pk)
        sync_mailbox(mailbox.pk)
    finally:
        events.unsubscribe(listener)  # the app's own listeners (monitoring) stay
    assert heard == [(mailbox.pk, "Local Mail refused: invalid_grant (Token has been expired or revoked.)")]


@pytest.mark.django_db(transaction=True)
def test_two_workers_refreshing_at_once_ask_the_provider_once(oauth_mail, provider):
    _user, mailbox = connected(oauth_mail, provider)
    OAuthGrant.objects.filter(pk=mailbox.pk).update(access_expires_at=timezone.now())
    provider.refresh_delay = 0.5
    tokens, start = [], threading.Barrier(4)

    def worker():
        start.wait()
        try:
            tokens.append(grants.access_token(mailbox.pk)[1])
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert provider.refreshes == 1
    assert len(tokens) == 4 and len(set(tokens)) == 1


@pytest.mark.parametrize(
    ("mode", "why"),
    [
        ("down", "did not answer"),
        ("garbage", "answered 200 with something that is not JSON"),
        ("error", "refused: temporarily_unavailable"),
    ],
)
def test_a_token_endpoint_down_or_answering_garbage_shows_why_and_recovers(oauth_mail, provider, box, mode, why):
    user, mailbox = box
    OAuthGrant.objects.filter(pk=mailbox.pk).update(access_expires_at=timezone.now())
    provider.mode = mode
    result = sync_mailbox(mailbox.pk)
    mailbox.refresh_from_db()
    assert why in result.error
    assert mailbox.state == Mailbox.State.FAILING  # passing: retried, not "reconnect needed"
    assert not OAuthGrant.objects.get(pk=mailbox.pk).refreshing_claim  # the claim was given back
    provider.mode = "ok"
    deliver(oauth_mail, user, "After the outage")
    assert sync_mailbox(mailbox.pk).stored == 1


def test_the_refresh_token_is_kept_encrypted_and_never_shown_or_logged(
    oauth_mail,
    provider,
    box,
    admin_client,
    caplog,
):
    caplog.set_level(logging.DEBUG)
    _user, mailbox = box
    refresh = next(token for token, grant in provider.grants.items() if grant.email == mailbox.username)
    OAuthGrant.objects.filter(pk=mailbox.pk).update(access_expires_at=timezone.now())
    sync_mailbox(mailbox.pk)
    grant = OAuthGrant.objects.get(pk=mailbox.pk)
    assert refresh not in grant.refresh_token_encrypted
    access = list(provider.access)[-1]
    page = admin_client.get(f"/admin/mailbox_sync/mailbox/{mailbox.pk}/change/").content.decode()
    listing = admin_client.get("/admin/mailbox_sync/mailbox/").content.decode()
    for secret in (refresh, access, grant.refresh_token_encrypted):
        assert secret not in page and secret not in listing and secret not in caplog.text


# --- The consent flow through admin ------------------------------------------------


def test_the_consent_flow_connects_the_mailbox_with_pkce_and_the_address_from_the_token(
    oauth_mail,
    provider,
    admin_client,
    settings,
):
    user = oauth_mail.account()
    provider.signing_in_as = user
    setup = make_setup(imap_port=oauth_mail.port, imap_user=user)
    Mailbox.objects.filter(pk=setup.mailbox.pk).delete()
    form = {
        "project": setup.project.pk,
        "name": "Sales",
        "provider": "other",
        "host": "127.0.0.1",
        "port": oauth_mail.port,
        "security": "none",
        "auth": "oauth2",
        "username": "",
        "password": "",
        "folder_mode": "listed",
        "folders": "INBOX",
        "active": "on",
        "repeat_period": "1 00:00:00",
        "sync_interval_minutes": 10,
        "text_limit": 1000,
        "folder_states-TOTAL_FORMS": 0,
        "folder_states-INITIAL_FORMS": 0,
    }
    saved = admin_client.post("/admin/mailbox_sync/mailbox/add/", form)
    mailbox = Mailbox.objects.get(name="Sales")
    assert saved.status_code == 302 and saved["Location"].endswith(f"/{mailbox.pk}/oauth/start/")
    to_provider = admin_client.get(saved["Location"])
    query = {k: v[0] for k, v in parse_qs(urlsplit(to_provider["Location"]).query).items()}
    assert to_provider["Location"].startswith(provider.url + "/authorize?")
    assert (query["client_id"], query["code_challenge_method"], query["scope"]) == (
        CLIENT_ID,
        "S256",
        "mail openid email",
    )
    back = urlsplit(provider.authorize(query))  # the account manager pressed "Allow"
    done = admin_client.get(back.path + "?" + back.query)
    assert done.status_code == 302
    mailbox.refresh_from_db()
    assert (mailbox.auth, mailbox.username) == (Mailbox.Auth.OAUTH2, user)
    assert OAuthGrant.objects.get(pk=mailbox.pk).email == user
    deliver(oauth_mail, user, "Connected by consent")
    assert sync_mailbox(mailbox.pk).stored == 1


def test_a_callback_with_a_state_this_session_did_not_send_is_refused(provider, admin_client):
    answer = admin_client.get("/admin/mailbox_sync/mailbox/oauth/callback/?code=x&state=forged")
    assert answer.status_code == 400
    assert not OAuthGrant.objects.exists()


def test_signing_in_to_another_mailbox_than_the_one_typed_connects_nothing(oauth_mail, provider, admin_client):
    user = oauth_mail.account()
    setup = make_setup(imap_port=oauth_mail.port, imap_user="typed@example.com")
    Mailbox.objects.filter(pk=setup.mailbox.pk).update(provider=Provider.OTHER, auth=Mailbox.Auth.OAUTH2)
    provider.signing_in_as = user
    to_provider = admin_client.get(f"/admin/mailbox_sync/mailbox/{setup.mailbox.pk}/oauth/start/")
    query = {k: v[0] for k, v in parse_qs(urlsplit(to_provider["Location"]).query).items()}
    assert query["login_hint"] == "typed@example.com"
    back = urlsplit(provider.authorize(query))
    page = admin_client.get(back.path + "?" + back.query, follow=True).content.decode()
    assert f"signed in to {user}, not to typed@example.com" in page
    assert not OAuthGrant.objects.exists()


def test_the_provider_presets_ask_for_their_imap_scopes(settings):
    settings.OAUTH_GOOGLE_CLIENT_ID = settings.OAUTH_MICROSOFT_CLIENT_ID = settings.OAUTH_YANDEX_CLIENT_ID = "id"
    scopes = {
        Provider.GMAIL: "https://mail.google.com/",
        Provider.OUTLOOK: "https://outlook.office.com/IMAP.AccessAsUser.All",
        Provider.YANDEX: "mail:imap_ro",
    }
    for name, scope in scopes.items():
        started = oauth.consent(oauth.client_for(name), "https://track.example/cb")
        query = parse_qs(urlsplit(started.url).query)
        assert scope in query["scope"][0].split()
        assert query["state"] == [started.state] and query["code_challenge_method"] == ["S256"]
    microsoft = parse_qs(urlsplit(oauth.consent(oauth.client_for(Provider.OUTLOOK), "x").url).query)
    assert "offline_access" in microsoft["scope"][0].split()


def test_outlook_needs_oauth2_and_a_configured_client(admin_client, settings):
    setup = make_setup()
    base = {
        "project": setup.project.pk,
        "name": "Outlook",
        "provider": "outlook",
        "username": "sales@shop.test",
        "password": "pw",
        "folder_mode": "listed",
        "folders": "INBOX",
        "repeat_period": "1 00:00:00",
        "sync_interval_minutes": 10,
        "text_limit": 1000,
        "security": "ssl",
        "folder_states-TOTAL_FORMS": 0,
        "folder_states-INITIAL_FORMS": 0,
    }
    with_password = admin_client.post("/admin/mailbox_sync/mailbox/add/", {**base, "auth": "password"})
    assert "Microsoft has switched off password sign-in" in with_password.content.decode()
    settings.OAUTH_MICROSOFT_CLIENT_ID = ""
    unconfigured = admin_client.post("/admin/mailbox_sync/mailbox/add/", {**base, "auth": "oauth2"})
    assert "No OAuth2 client is configured" in unconfigured.content.decode()
    assert not Mailbox.objects.filter(name="Outlook").exists()


# --- The listener with OAuth2 --------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_listener_logs_in_with_xoauth2_and_shows_reconnect_needed_when_revoked(oauth_mail, provider, settings):
    for name, value in FAST.items():
        setattr(settings, name, value)
    user, mailbox = connected(oauth_mail, provider)
    sync_mailbox(mailbox.pk)

    def state(wanted):
        row = Listening.objects.filter(pk=mailbox.pk).first()
        return row is not None and row.state == wanted and row

    with running_listener():
        wait_until(lambda: state(Listening.State.LISTENING), message="listening over XOAUTH2")
        deliver(oauth_mail, user, "Heard over OAuth2")
        wait_until(lambda: Letter.objects.filter(mailbox=mailbox, lead__isnull=False).exists(), message="the lead")
        provider.revoke_all(user)  # the IDLE session goes on; the next login needs a refresh
        OAuthGrant.objects.filter(pk=mailbox.pk).update(access_expires_at=timezone.now())
        deliver(oauth_mail, user, "After the revocation")
        wait_until(
            lambda: Mailbox.objects.get(pk=mailbox.pk).state == Mailbox.State.RECONNECT_NEEDED,
            message="reconnect needed",
        )
    mailbox.refresh_from_db()
    assert "invalid_grant" in mailbox.last_error


@pytest.mark.django_db(transaction=True)
def test_the_listener_waits_out_a_token_endpoint_that_is_down_holding_up_no_other_mailbox(
    oauth_mail, provider, settings
):
    for name, value in FAST.items():
        setattr(settings, name, value)
    user, mailbox = connected(oauth_mail, provider)
    other_user = oauth_mail.account()  # a password mailbox on the same server
    other = make_setup(name="Password shop", imap_port=oauth_mail.port, imap_user=other_user).mailbox
    OAuthGrant.objects.filter(pk=mailbox.pk).update(access_expires_at=timezone.now())
    provider.mode = "down"

    def state(box, wanted, why=""):
        row = Listening.objects.filter(pk=box.pk).first()
        return row is not None and row.state == wanted and why in row.last_error and row

    with running_listener():
        wait_until(lambda: state(mailbox, Listening.State.RECONNECTING, "did not answer"), message="waiting")
        wait_until(lambda: state(other, Listening.State.LISTENING), message="the other mailbox listening")
        assert Mailbox.objects.get(pk=mailbox.pk).state != Mailbox.State.RECONNECT_NEEDED  # a passing failure
        provider.mode = "ok"
        wait_until(lambda: state(mailbox, Listening.State.LISTENING), message="listening once the endpoint is back")
        deliver(oauth_mail, user, "After the token outage")
        wait_until(lambda: Letter.objects.filter(mailbox=mailbox, lead__isnull=False).exists(), message="the lead")
