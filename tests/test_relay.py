"""The SMTP relay as a mail client sees it: a real relay (the controller
`relay_smtp` runs) on loopback, smtplib as the client, aiosmtpd as the
project's upstream."""

import base64
import datetime
import os
import signal
import smtplib
import socket
import ssl
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.conf import global_settings
from django.db import connection

from integrations.models import OutboundStatus
from relay import credentials, server
from relay.models import QueuedLetter
from tests.test_relay_support import client, free_port, letter, make_account

pytest_plugins = ["tests.test_relay_support"]
pytestmark = pytest.mark.django_db(transaction=True)


def test_it_relays_a_logged_in_clients_letter_to_the_projects_upstream(relay_server, upstream_server, relay_account):
    raw = letter()
    with client(relay_server, relay_account) as conn:
        conn.sendmail("anna@shop.test", ["ivan@client.test"], raw)
        code, reply = conn.noop()
    assert code == 250
    [received] = upstream_server.letters
    assert received.mail_from == "anna@shop.test"
    assert received.rcpt_tos == ["ivan@client.test"]
    assert received.content == raw
    [row] = QueuedLetter.objects.all()
    assert row.status == OutboundStatus.SENT
    assert row.delivered == ["ivan@client.test"] and row.recipients == []
    assert row.message_id == "<letter-1@shop.test>"
    assert row.client_ip == "127.0.0.1"


def test_it_answers_the_client_after_the_upstream_accepted(relay_server, upstream_server, relay_account):
    with client(relay_server, relay_account) as conn:
        conn.mail("anna@shop.test")
        conn.rcpt("ivan@client.test")
        code, reply = conn.data(letter())
    assert code == 250
    assert b"Delivered to the upstream server" in reply
    assert len(upstream_server.letters) == 1


def test_it_is_not_an_open_relay(relay_server, upstream_server, relay_account):
    with client(relay_server) as conn:
        code, reply = conn.mail("anna@shop.test")
        assert code == 530
        code, _ = conn.rcpt("ivan@client.test")
        assert code == 530
        code, _ = conn.docmd("DATA")
        assert code == 530
    assert upstream_server.letters == []
    assert not QueuedLetter.objects.exists()


def test_it_refuses_a_wrong_password_and_an_unknown_username(relay_server, relay_account):
    with client(relay_server) as conn:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            conn.login(relay_account.username, relay_account.password + "x")
        assert refused.value.smtp_code == 535
    with client(relay_server) as conn:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            conn.login("relay-nobody", relay_account.password)
        assert refused.value.smtp_code == 535


def test_it_refuses_logins_from_an_address_after_repeated_failures(relay_server, relay_account, settings):
    settings.RELAY_AUTH_FAILURES_PER_IP = 3
    for _ in range(3):
        with client(relay_server) as conn, pytest.raises(smtplib.SMTPAuthenticationError):
            conn.login(relay_account.username, "wrong")
    with client(relay_server) as conn:
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            conn.login(relay_account.username, relay_account.password)
        assert refused.value.smtp_code == 454


def test_it_refuses_a_revoked_credential(relay_server, upstream_server, relay_account):
    credentials.credential_revoke(relay_account.credential)
    with client(relay_server) as conn, pytest.raises(smtplib.SMTPAuthenticationError):
        conn.login(relay_account.username, relay_account.password)
    assert upstream_server.letters == []


def test_it_logs_in_with_auth_login_too(relay_server, upstream_server, relay_account):
    with client(relay_server) as conn:
        conn.user, conn.password = relay_account.username, relay_account.password
        code, _ = conn.auth("LOGIN", conn.auth_login, initial_response_ok=False)
        assert code == 235
        conn.sendmail("anna@shop.test", ["ivan@client.test"], letter())
    assert len(upstream_server.letters) == 1


def test_it_refuses_letters_over_the_size_cap(relay_settings, upstream_server, relay_account):
    relay_settings.RELAY_MAX_MESSAGE_BYTES = 10_000
    relay = server.make_controller("127.0.0.1", free_port())
    relay.start()
    try:
        with client(relay, relay_account) as conn:
            assert conn.esmtp_features["size"] == "10000"
            code, _ = conn.mail("anna@shop.test", ["SIZE=20000"])
            assert code == 552
            conn.rset()
            conn.mail("anna@shop.test")
            conn.rcpt("ivan@client.test")
            code, _ = conn.data(letter(html=("<p>" + "x" * 70 + "</p>\r\n") * 300))
            assert code == 552
            # The session goes on: a letter within the cap still passes.
            conn.sendmail("anna@shop.test", ["ivan@client.test"], letter())
    finally:
        relay.stop()
    assert len(upstream_server.letters) == 1
    assert QueuedLetter.objects.count() == 1


def _self_signed(tmp_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def test_it_offers_auth_only_after_starttls_when_a_certificate_is_configured(
    relay_settings, upstream_server, relay_account, tmp_path
):
    cert, key = _self_signed(tmp_path)
    relay_settings.RELAY_TLS_CERT, relay_settings.RELAY_TLS_KEY = str(cert), str(key)
    relay_settings.RELAY_ALLOW_PLAIN_AUTH_ON_LOOPBACK = False
    relay = server.make_controller("127.0.0.1", free_port())
    relay.start()
    try:
        with client(relay) as conn:
            assert "starttls" in conn.esmtp_features
            assert "auth" not in conn.esmtp_features
            code, _ = conn.docmd("AUTH", "PLAIN")
            assert code == 538
            assert conn.mail("anna@shop.test")[0] == 530
            conn.rset()
            context = ssl.create_default_context(cafile=str(cert))
            conn._host = "localhost"  # the name in the certificate; the socket is already on 127.0.0.1
            conn.starttls(context=context)
            conn.ehlo()
            assert "PLAIN" in conn.esmtp_features["auth"] and "LOGIN" in conn.esmtp_features["auth"]
            conn.login(relay_account.username, relay_account.password)
            conn.sendmail("anna@shop.test", ["ivan@client.test"], letter())
    finally:
        relay.stop()
    assert len(upstream_server.letters) == 1


def test_plain_auth_without_tls_is_allowed_only_from_loopback_and_only_when_switched_on(settings):
    settings.RELAY_ALLOW_PLAIN_AUTH_ON_LOOPBACK = True
    assert credentials.plain_auth_allowed("127.0.0.1", tls=False)
    assert credentials.plain_auth_allowed("::1", tls=False)
    assert not credentials.plain_auth_allowed("192.0.2.10", tls=False)
    assert not credentials.plain_auth_allowed("10.0.0.5", tls=False)
    assert credentials.plain_auth_allowed("192.0.2.10", tls=True)
    settings.RELAY_ALLOW_PLAIN_AUTH_ON_LOOPBACK = False
    assert not credentials.plain_auth_allowed("127.0.0.1", tls=False)


def test_it_limits_recipients_per_hour_for_each_credential(relay_server, upstream_server, relay_account):
    relay_account.credential.recipients_per_hour = 2
    relay_account.credential.save()
    other = make_account(upstream_server.port, name="Other shop")
    with client(relay_server, relay_account) as conn:
        conn.mail("anna@shop.test")
        assert conn.rcpt("a@client.test")[0] == 250
        assert conn.rcpt("b@client.test")[0] == 250
        code, reply = conn.rcpt("c@client.test")
        assert code == 450 and b"hourly recipient limit" in reply
        assert conn.data(letter())[0] == 250
    with client(relay_server, other) as conn:
        conn.sendmail("anna@shop.test", ["c@client.test"], letter())
    assert [r.rcpt_tos for r in upstream_server.letters] == [["a@client.test", "b@client.test"], ["c@client.test"]]


def test_it_checks_the_sender_and_the_recipients(relay_server, upstream_server, relay_settings):
    relay_account = make_account(upstream_server.port, allowed_senders="@shop.test\nboss@partner.test")
    with client(relay_server, relay_account) as conn:
        assert conn.mail("someone@elsewhere.test")[0] == 550
        conn.rset()
        assert conn.docmd("MAIL", "FROM:<>")[0] == 553  # a null sender is for bounces
        conn.rset()
        assert conn.mail("not an address")[0] in (501, 553)
        conn.rset()
        assert conn.mail("boss@partner.test")[0] == 250
        conn.rset()
        assert conn.mail("anna@shop.test")[0] == 250
        assert conn.rcpt("no-domain")[0] == 553
        assert conn.rcpt("ivan@client.test")[0] == 250
        assert conn.data(letter())[0] == 250
    assert [r.rcpt_tos for r in upstream_server.letters] == [["ivan@client.test"]]


def test_it_refuses_letters_while_the_project_has_no_upstream(relay_server, upstream_server, relay_account):
    relay_account.upstream.delete()
    with client(relay_server, relay_account) as conn:
        code, reply = conn.mail("anna@shop.test")
    assert code == 451 and b"No upstream" in reply
    assert not QueuedLetter.objects.exists()


def _raw_session(relay, relay_account):
    """A socket logged in with AUTH PLAIN, as a client that will misbehave."""

    sock = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"220")

    def say(line: bytes) -> bytes:
        sock.sendall(line + b"\r\n")
        reply = reader.readline()
        while reply[3:4] == b"-":
            reply = reader.readline()
        return reply

    assert say(b"EHLO client.test").startswith(b"250")
    token = base64.b64encode(f"\0{relay_account.username}\0{relay_account.password}".encode())
    assert say(b"AUTH PLAIN " + token).startswith(b"235")
    return sock, reader, say


def test_a_client_that_drops_mid_data_leaves_nothing_stored_and_nothing_sent(
    relay_server, upstream_server, relay_account
):
    sock, reader, say = _raw_session(relay_server, relay_account)
    assert say(b"MAIL FROM:<anna@shop.test>").startswith(b"250")
    assert say(b"RCPT TO:<ivan@client.test>").startswith(b"250")
    assert say(b"DATA").startswith(b"354")
    sock.sendall(letter()[:200])
    reader.close()
    sock.close()
    # The relay still serves the next client, and only its letter is stored and sent.
    with client(relay_server, relay_account) as conn:
        conn.sendmail("anna@shop.test", ["next@client.test"], letter())
    assert [r.rcpt_tos for r in upstream_server.letters] == [["next@client.test"]]
    assert list(QueuedLetter.objects.values_list("delivered", flat=True)) == [["next@client.test"]]


def test_a_client_sending_garbage_gets_errors_and_nothing_is_stored_or_sent(
    relay_server, upstream_server, relay_account
):
    sock, reader, say = _raw_session(relay_server, relay_account)
    assert say(b"\xff\xfe\x00garbage \x80\x81").startswith(b"5")
    assert say(b"MAIL FROM anna").startswith(b"501")
    assert say(b"RCPT TO:<ivan@client.test>").startswith(b"503")
    assert say(b"DATA").startswith(b"503")
    sock.sendall(b"\x00" * 5000 + b"\r\n.\r\n")
    reader.close()
    sock.close()
    with client(relay_server, relay_account) as conn:
        assert conn.noop()[0] == 250
    assert upstream_server.letters == []
    assert not QueuedLetter.objects.exists()


@pytest.mark.slow
def test_the_relay_smtp_command_serves_until_it_is_stopped(upstream_server, relay_settings):
    relay_settings.PASSWORD_HASHERS = global_settings.PASSWORD_HASHERS  # the installation's own hasher
    relay_account = make_account(upstream_server.port)
    port = free_port()
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "RELAY_ALLOW_PLAIN_AUTH_ON_LOOPBACK": "1",
        "RELAY_ALLOW_PRIVATE_UPSTREAMS": "1",
        "RELAY_PORT": str(port),
    }
    process = subprocess.Popen(
        [sys.executable, "manage.py", "relay_smtp"], env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
    )
    try:
        assert process.stdout.readline().startswith(f"SMTP relay on 127.0.0.1:{port}".encode())
        conn = smtplib.SMTP("127.0.0.1", port, timeout=15)
        conn.login(relay_account.username, relay_account.password)
        conn.sendmail("anna@shop.test", ["ivan@client.test"], letter())
        conn.quit()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(15) == 0
    assert [r.rcpt_tos for r in upstream_server.letters] == [["ivan@client.test"]]
