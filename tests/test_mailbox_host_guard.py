"""mailbox_sync: a mailbox's server may not be on the service's own network.

A manager types the host and port, and "Test connection" answers at once, so
an unguarded connection would scan the internal network. Every connection
(the sync, "Test connection", the IDLE listener) resolves the host once and
refuses loopback, private, link-local, CGNAT, NAT64 and IPv4-mapped /
-compatible addresses before sending anything, with the same message whatever
the port; it connects to the checked address (pinned) while TLS checks the
certificate for the host's name. IMAP_ALLOWED_PRIVATE_HOSTS names the
installation's own servers (the test settings allow 127.0.0.1, where the
test Dovecot listens; these tests clear it)."""

import socket
import time
from datetime import timedelta

import pytest

from lib import http
from mailbox_sync import idle, imap
from mailbox_sync.hosts import refused_message
from mailbox_sync.imap import Failure
from mailbox_sync.models import Letter, Mailbox
from mailbox_sync.services import check_connection, sync_mailbox
from tests.factories import letter_bytes, make_setup
from tests.test_mailbox_listener_support import run_coroutine
from tests.test_mailbox_sync_connect import Blackhole, closed_port, now_s, refreshed

INTERNAL_HOSTS = [
    "127.0.0.1",
    "10.0.0.1",
    "169.254.169.254",  # cloud metadata
    "100.64.0.1",  # CGNAT
    "[::ffff:127.0.0.1]",  # IPv4-mapped, as typed with brackets
    "::ffff:127.0.0.1",
    "::127.0.0.1",  # IPv4-compatible
    "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "::1",
]


@pytest.fixture
def guarded(settings):
    settings.IMAP_ALLOWED_PRIVATE_HOSTS = []
    return settings


@pytest.fixture
def resolver(monkeypatch):
    """Names of our own, answered by a table; every lookup is recorded."""

    class Resolver:
        def __init__(self):
            self.answers: dict[str, list[list[str]]] = {}  # name → the answers, one per lookup (the last repeats)
            self.lookups: list[str] = []

    table = Resolver()
    real = socket.getaddrinfo

    def getaddrinfo(host, port, *args, **kwargs):
        table.lookups.append(host)
        if host in table.answers:
            answers = table.answers[host]
            addresses = answers.pop(0) if len(answers) > 1 else answers[0]
            return [
                (socket.AF_INET6 if ":" in ip else socket.AF_INET, socket.SOCK_STREAM, 6, "", (ip, port))
                for ip in addresses
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return table


def point(mailbox, host, port) -> Mailbox:
    Mailbox.objects.filter(pk=mailbox.pk).update(host=host, port=port)
    return refreshed(mailbox)


# --- Refused, whatever the port ------------------------------------------------------


@pytest.mark.imap
@pytest.mark.parametrize("host", INTERNAL_HOSTS)
def test_an_internal_server_is_refused_with_one_message_whatever_the_port(guarded, mail_server, account, host):
    _user, _password, mailbox = account
    verdicts = [check_connection(point(mailbox, host, port)) for port in (mail_server.port, closed_port(), 22)]
    assert {(v.ok, v.kind, v.message) for v in verdicts} == {(False, Failure.CONFIG, refused_message(host))}
    assert "refused" in verdicts[0].message and host in verdicts[0].message
    for port in (mail_server.port, closed_port()):
        assert str(port) not in verdicts[0].message


@pytest.mark.imap
def test_the_open_port_of_dovecot_and_a_closed_port_look_the_same(guarded, mail_server, account):
    """The point of the guard: with the allow setting off, a manager cannot
    tell from the verdict (nor from the stored error) where something listens."""
    user, _password, mailbox = account
    mail_server.append(user, letter_bytes(to="info@shop.test"), when=now_s() - timedelta(hours=1))
    open_verdict = check_connection(point(mailbox, "127.0.0.1", mail_server.port))
    open_sync = sync_mailbox(mailbox.pk)
    open_error = refreshed(mailbox).last_error
    closed_verdict = check_connection(point(mailbox, "127.0.0.1", closed_port()))
    Mailbox.objects.filter(pk=mailbox.pk).update(next_sync_at=None)
    closed_sync = sync_mailbox(mailbox.pk)
    assert open_verdict == closed_verdict
    assert (open_sync.error, open_sync.error_kind) == (closed_sync.error, closed_sync.error_kind)
    assert open_sync.error_kind == Failure.CONFIG
    assert refreshed(mailbox).last_error == open_error
    assert refreshed(mailbox).state == Mailbox.State.FAILING
    assert not Letter.objects.exists()


@pytest.mark.imap
def test_nothing_is_sent_to_a_refused_server(guarded, account):
    _user, _password, mailbox = account
    listener = Blackhole()  # counts the connections it accepts
    try:
        verdict = check_connection(point(mailbox, "127.0.0.1", listener.port))
        sync_mailbox(mailbox.pk)
        time.sleep(0.2)
        assert verdict.kind == Failure.CONFIG
        assert listener.held == []
    finally:
        listener.close()
    # The allow setting is what opens the way: the same kind of server is then reached.
    guarded.IMAP_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    guarded.IMAP_TIMEOUT_SECONDS = 0.5
    probe = Blackhole()
    try:
        with pytest.raises(imap.SyncError) as raised, imap.connect(point(mailbox, "127.0.0.1", probe.port), "secret"):
            pass
        assert raised.value.kind == Failure.TIMEOUT
        assert len(probe.held) == 1
    finally:
        probe.close()


@pytest.mark.imap
def test_a_name_that_resolves_to_loopback_is_refused(settings, mail_server, account):
    """Allowing 127.0.0.1 allows that name only, not every name that leads there."""
    _user, _password, mailbox = account
    settings.IMAP_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1"]
    verdict = check_connection(point(mailbox, "localhost", mail_server.port))
    assert (verdict.ok, verdict.kind, verdict.message) == (False, Failure.CONFIG, refused_message("localhost"))
    settings.IMAP_ALLOWED_PRIVATE_HOSTS = ["LOCALHOST."]  # as the name is written, case and final dot aside
    assert check_connection(refreshed(mailbox)).ok


@pytest.mark.imap
def test_a_name_with_one_internal_address_among_public_ones_is_refused(guarded, resolver, mail_server, account):
    _user, _password, mailbox = account
    resolver.answers["imap.example"] = [["93.184.216.34", "10.0.0.7"]]
    verdict = check_connection(point(mailbox, "imap.example", mail_server.port))
    assert (verdict.kind, verdict.message) == (Failure.CONFIG, refused_message("imap.example"))


@pytest.mark.imap
def test_the_listener_refuses_an_internal_server_with_the_same_message(guarded, mail_server, account):
    async def open_at(host, port):
        with pytest.raises(idle.IdleError) as raised:
            await idle.open_connection(host, port, Mailbox.Security.NONE, idle.Timing(connect=5, answer=5))
        return raised.value

    for host in ("127.0.0.1", "64:ff9b::a00:1", "169.254.169.254"):
        errors = [run_coroutine(open_at(host, port)) for port in (mail_server.port, closed_port())]
        assert {(error.kind, str(error)) for error in errors} == {(Failure.CONFIG, refused_message(host))}


# --- Pinned ---------------------------------------------------------------------------


@pytest.mark.imap
def test_the_connection_goes_to_the_checked_address_not_to_a_second_answer(settings, resolver, mail_server, account):
    """DNS rebinding: the name is looked up once per connection; a later
    answer (here an address where nothing listens) is never used."""
    user, password, mailbox = account
    settings.IMAP_ALLOWED_PRIVATE_HOSTS = ["imap.example"]
    resolver.answers["imap.example"] = [["127.0.0.1"], ["10.255.255.1"]]
    mailbox = point(mailbox, "imap.example", mail_server.port)
    with imap.connect(mailbox, password) as client:
        assert client.socket().getpeername()[:2] == ("127.0.0.1", mail_server.port)
        assert client.host == "imap.example"
    assert resolver.lookups.count("imap.example") == 1

    resolver.answers["imap.example"] = [["127.0.0.1"], ["10.255.255.1"]]
    mail_server.append(user, letter_bytes(to="info@shop.test"), when=now_s() - timedelta(hours=1))
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.stored) == ("", 1)


@pytest.mark.imap
def test_the_listener_connects_to_the_checked_address(settings, resolver, mail_server, account):
    user, password, _mailbox = account
    settings.IMAP_ALLOWED_PRIVATE_HOSTS = ["imap.example"]
    resolver.answers["imap.example"] = [["127.0.0.1"], ["10.255.255.1"]]

    async def listen():
        connection = await idle.open_connection(
            "imap.example", mail_server.port, Mailbox.Security.NONE, idle.Timing(connect=5, answer=5)
        )
        try:
            peer = connection.writer.get_extra_info("peername")
            await connection.login(user, password)
            return peer, connection.can_idle
        finally:
            await connection.logout()

    peer, can_idle = run_coroutine(listen())
    assert peer[:2] == ("127.0.0.1", mail_server.port)
    assert can_idle
    assert resolver.lookups.count("imap.example") == 1


@pytest.mark.imap
def test_tls_checks_the_certificate_for_the_name_not_for_the_pinned_address(settings, resolver, mail_server, account):
    """The test certificate is for localhost and 127.0.0.1: a name that
    resolves to 127.0.0.1 but is not on it fails, as it must; localhost passes.
    Were the certificate checked against the pinned address, both would pass."""
    _user, _password, mailbox = account
    settings.IMAP_CA_FILE = mail_server.ca_file
    settings.IMAP_ALLOWED_PRIVATE_HOSTS = ["imap.example", "localhost"]
    resolver.answers["imap.example"] = [["127.0.0.1"]]
    resolver.answers["localhost"] = [["127.0.0.1"]]
    Mailbox.objects.filter(pk=mailbox.pk).update(security=Mailbox.Security.SSL)
    wrong = check_connection(point(mailbox, "imap.example", mail_server.imaps_port))
    assert (wrong.ok, wrong.kind) == (False, Failure.TLS)
    assert "imap.example" in wrong.message or "hostname" in wrong.message.lower()
    right = check_connection(point(mailbox, "localhost", mail_server.imaps_port))
    assert right.ok, right.message
    Mailbox.objects.filter(pk=mailbox.pk).update(security=Mailbox.Security.STARTTLS, port=mail_server.port)
    assert not check_connection(point(mailbox, "imap.example", mail_server.port)).ok
    assert check_connection(point(mailbox, "localhost", mail_server.port)).ok


# --- The shared rule ----------------------------------------------------------------


def test_the_webhooks_and_the_mailboxes_share_one_address_rule():
    from integrations import http as webhook_http

    assert webhook_http.refusal is http.refusal


def test_checked_addresses_refuses_a_name_with_any_internal_address(resolver):
    resolver.answers["mixed.example"] = [["93.184.216.34", "64:ff9b::7f00:1"]]
    with pytest.raises(http.AddressRefused, match="64:ff9b::7f00:1"):
        http.checked_addresses("mixed.example", 993, allow_private=False)
    resolver.answers["public.example"] = [["93.184.216.34", "93.184.216.35"]]
    assert http.checked_addresses("public.example", 993, allow_private=False) == [
        (socket.AF_INET, "93.184.216.34"),
        (socket.AF_INET, "93.184.216.35"),
    ]
    with pytest.raises(socket.gaierror):
        http.checked_addresses("no-such-host.invalid", 993, allow_private=False)


# --- Admin ----------------------------------------------------------------------------


@pytest.mark.imap
def test_admin_refuses_to_save_or_test_an_internal_server(guarded, admin_client, mail_server):
    from tests.test_mailbox_sync_admin import ADD, form, messages_of

    project = make_setup().project
    for port in (mail_server.port, closed_port()):
        for extra in ({}, {"_test_connection": "1"}):
            entered = form(project, host="127.0.0.1", port=port, security="none", **extra)
            response = admin_client.post(ADD, entered)
            assert response.status_code == 200
            assert refused_message("127.0.0.1") in response.content.decode()
            assert not any("Connected" in message for message in messages_of(response))
    assert not Mailbox.objects.filter(name="Sales inbox").exists()
    # The "Test connection" action on a saved mailbox says the same.
    mailbox = make_setup(name="Saved").mailbox
    response = admin_client.post(
        "/admin/mailbox_sync/mailbox/", {"action": "test_connection", "_selected_action": [mailbox.pk]}, follow=True
    )
    assert f"{mailbox.name}: {refused_message('127.0.0.1')}" in messages_of(response)
