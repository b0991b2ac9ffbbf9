"""mailbox_sync: connecting to a mailbox. TLS, STARTTLS, the "test connection"
verdicts, and every kind of failure (wrong password, unreachable host, TLS
error, missing folder, timeout, dropped connection): the mailbox shows why,
backs off, never holds up another mailbox, and a later success clears it.

This module also starts the mail server the mailbox_sync tests share: a
second Dovecot (the pattern of tests/conftest.py) that serves IMAPS and
STARTTLS with a certificate made here, marks folders with special-use flags,
and, like it, does not slow every login after a failed one (Dovecot's auth
penalty is off), so tests that use wrong passwords stay fast.
"""

import datetime as dt
import io
import logging
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.core.management import call_command
from django.utils import timezone
from imapclient import IMAPClient

from mailbox_sync.imap import Failure
from mailbox_sync.models import FolderState, Letter, Mailbox
from mailbox_sync.services import check_connection, mailbox_set_password, sync_mailbox
from tests.conftest import DOVECOT_CONF, Dovecot, free_port
from tests.factories import letter_bytes, make_setup

# --- The shared mail server -----------------------------------------------------

SERVER_CONF = """
ssl = yes
ssl_cert = <{dir}/cert.pem
ssl_key = <{dir}/key.pem
service imap-login {{
  inet_listener imaps {{
    address = 127.0.0.1
    port = {imaps_port}
  }}
}}
# Any name logs in with "secret" (accounts cost nothing); names with another
# password are in the users file, which is asked first.
passdb {{
  driver = static
  args = password=secret
}}
namespace inbox {{
  inbox = yes
  separator = /
  mailbox Gesendet {{
    special_use = \\Sent
  }}
  mailbox Papierkorb {{
    special_use = \\Trash
  }}
  mailbox Unerwünscht {{
    special_use = \\Junk
  }}
}}
"""


class MailServer(Dovecot):
    """Dovecot with IMAPS on `imaps_port`, STARTTLS on `port`, and helpers to
    look at a mailbox without changing it."""

    def __init__(self, root: Path, port: int, imaps_port: int):
        super().__init__(root, port)
        self.imaps_port = imaps_port
        self.ca_file = str(root / "cert.pem")

    def account(self, password="secret"):
        if password != "secret":
            return super().account(password)
        return f"inbox-{uuid.uuid4().hex[:10]}@example.com", password

    def client(self, user, password="secret") -> IMAPClient:
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        if password.isascii():
            client.login(user, password)
        else:
            client.plain_login(user, password)
        return client

    def append_many(self, user, raws, when, folder="INBOX", password="secret"):
        """Many letters in one MULTIAPPEND; `when` is one INTERNALDATE or one per letter."""
        dates = when if isinstance(when, list) else [when] * len(raws)
        client = self.client(user, password)
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for start in range(0, len(raws), 200):
                client.multiappend(
                    folder,
                    [
                        {"msg": raw, "date": date}
                        for raw, date in zip(raws[start : start + 200], dates[start : start + 200], strict=True)
                    ],
                )
        finally:
            client.logout()

    def snapshot(self, user, password="secret") -> dict:
        """Every folder's UIDVALIDITY, UIDNEXT, count, and each letter's flags
        (\\Recent included: a read-write SELECT would clear it), read-only."""
        client = self.client(user, password)
        try:
            state = {}
            for _flags, _delimiter, name in client.list_folders():
                info = client.select_folder(name, readonly=True)
                uids = client.search("ALL")
                state[name] = {
                    "uidvalidity": info[b"UIDVALIDITY"],
                    "uidnext": info[b"UIDNEXT"],
                    "exists": info[b"EXISTS"],
                    "flags": {uid: sorted(flags) for uid, flags in client.get_flags(uids).items()} if uids else {},
                }
            return state
        finally:
            client.logout()

    def recreate_folder(self, user, folder, password="secret"):
        """Delete and create the folder again: Dovecot gives it a new UIDVALIDITY."""
        client = self.client(user, password)
        try:
            client.delete_folder(folder)
            client.create_folder(folder)
        finally:
            client.logout()


def _certificate(root: Path) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    (root / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (root / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )


def start_mail_server() -> tuple[MailServer, subprocess.Popen]:
    if not shutil.which("dovecot"):
        pytest.fail("dovecot is not installed: run `make test`, which installs dovecot-imapd")
    root = Path(tempfile.mkdtemp(prefix="emailtrack-mailserver-"))
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    (root / "users").write_text("")
    root.chmod(0o755)
    (root / "users").chmod(0o644)
    _certificate(root)
    port, imaps_port = free_port(), free_port()
    conf = root / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(dir=root, port=port) + SERVER_CONF.format(dir=root, imaps_port=imaps_port))
    shutil.chown(root / "mail", "nobody", "nogroup")
    process = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            socket.create_connection(("127.0.0.1", imaps_port), timeout=0.2).close()
            return MailServer(root, port, imaps_port), process
        except OSError:
            time.sleep(0.05)
    process.kill()
    pytest.fail("Dovecot did not start: " + (root / "dovecot.log").read_text(errors="replace")[-2000:])


def stop_mail_server(server: MailServer, process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
    shutil.rmtree(server.root, ignore_errors=True)


def serve_mail():
    """The body of the session's `mail_server` fixture (tests/conftest.py):
    one server for every mailbox_sync module (Dovecot takes a second to stop)."""
    server, process = start_mail_server()
    try:
        yield server
    finally:
        stop_mail_server(server, process)


def new_account(server: MailServer):
    """A fresh Dovecot account and a mailbox that reads it in plain text."""
    user, password = server.account()
    return user, password, make_setup(imap_port=server.port, imap_user=user, imap_password=password).mailbox


# --- Misbehaving servers -------------------------------------------------------------


class Relay:
    """A TCP relay to the mail server that drops the connection, or stops
    forwarding, once the server has sent `after` bytes: a network that fails
    in the middle of a sync."""

    def __init__(self, target_port: int, after: int, mode: str = "drop"):
        self.target_port, self.after, self.mode = target_port, after, mode
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.sockets: list[socket.socket] = []
        self.closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed.is_set():
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            self.sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, None), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, self.after), daemon=True).start()

    def _pump(self, source, target, budget):
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                if budget is not None and len(data) >= budget:
                    target.sendall(data[:budget])
                    if self.mode == "stall":
                        self.closed.wait()
                    break
                target.sendall(data)
                if budget is not None:
                    budget -= len(data)
        except OSError:
            pass
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.closed.set()
        self.listener.close()
        for sock in self.sockets:
            sock.close()


class Blackhole:
    """Accepts connections and never says a word."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                self.held.append(self.listener.accept()[0])
            except OSError:
                return

    def close(self):
        self.listener.close()
        for sock in self.held:
            sock.close()


@pytest.fixture
def blackhole():
    server = Blackhole()
    yield server
    server.close()


def closed_port() -> int:
    return free_port()  # bound once and released: nothing listens there


def now_s():
    return timezone.now().replace(microsecond=0)


def refreshed(mailbox) -> Mailbox:
    return Mailbox.objects.get(pk=mailbox.pk)


# --- TLS and STARTTLS ----------------------------------------------------------------


@pytest.mark.imap
def test_it_syncs_over_imaps_when_the_certificate_is_trusted(mail_server, account, settings):
    user, _password, mailbox = account
    settings.IMAP_CA_FILE = mail_server.ca_file
    Mailbox.objects.filter(pk=mailbox.pk).update(security=Mailbox.Security.SSL, port=mail_server.imaps_port)
    mail_server.append(user, letter_bytes(to="info@shop.test", subject="Over TLS"), when=now_s() - timedelta(hours=1))
    result = sync_mailbox(mailbox.pk)
    assert (result.error, result.stored) == ("", 1)
    assert Letter.objects.get(mailbox=mailbox).subject == "Over TLS"


@pytest.mark.imap
def test_it_syncs_over_starttls_on_the_plain_port(mail_server, account, settings):
    user, _password, mailbox = account
    settings.IMAP_CA_FILE = mail_server.ca_file
    Mailbox.objects.filter(pk=mailbox.pk).update(security=Mailbox.Security.STARTTLS)
    mail_server.append(user, letter_bytes(to="info@shop.test"), when=now_s() - timedelta(hours=1))
    assert sync_mailbox(mailbox.pk).stored == 1
    assert refreshed(mailbox).state == Mailbox.State.OK


@pytest.mark.imap
def test_an_untrusted_certificate_is_a_tls_error_and_nothing_is_read(mail_server, account):
    user, _password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(security=Mailbox.Security.SSL, port=mail_server.imaps_port)
    mail_server.append(user, letter_bytes(to="info@shop.test"), when=now_s() - timedelta(hours=1))
    result = sync_mailbox(mailbox.pk)
    assert result.error_kind == Failure.TLS
    assert "certificate" in result.error and "not trusted" in result.error
    assert refreshed(mailbox).state == Mailbox.State.FAILING
    assert not Letter.objects.exists()
    verdict = check_connection(refreshed(mailbox))
    assert (verdict.ok, verdict.kind) == (False, Failure.TLS)


@pytest.mark.imap
def test_tls_against_a_plain_text_port_is_a_tls_error(mail_server, account):
    _user, _password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(security=Mailbox.Security.SSL)
    verdict = check_connection(refreshed(mailbox))
    assert (verdict.ok, verdict.kind) == (False, Failure.TLS)
    assert verdict.message.startswith("TLS error")


@pytest.mark.imap
def test_starttls_against_a_server_without_it_is_a_tls_error(dovecot, db):
    # The suite's own Dovecot runs with ssl = no: it offers no STARTTLS.
    mailbox = make_setup(imap_port=dovecot.port).mailbox
    Mailbox.objects.filter(pk=mailbox.pk).update(security=Mailbox.Security.STARTTLS)
    verdict = check_connection(refreshed(mailbox))
    assert (verdict.ok, verdict.kind) == (False, Failure.TLS)
    assert "does not offer STARTTLS" in verdict.message


# --- "Test connection" verdicts ------------------------------------------------------


@pytest.mark.imap
def test_the_connection_test_counts_the_letters_of_the_folders_it_would_read(mail_server, account):
    user, _password, mailbox = account
    for hours in (1, 2):
        mail_server.append(user, letter_bytes(to="info@shop.test"), when=now_s() - timedelta(hours=hours))
    mail_server.append(user, letter_bytes(to="info@shop.test"), folder="Заявки")
    Mailbox.objects.filter(pk=mailbox.pk).update(folders="INBOX, Заявки")
    verdict = check_connection(refreshed(mailbox))
    assert verdict.ok, verdict.message
    assert verdict.folders == {"INBOX": 2, "Заявки": 1}
    assert "INBOX (2 letters)" in verdict.message
    assert mail_server.snapshot(user)["INBOX"]["exists"] == 2


@pytest.mark.imap
def test_the_connection_test_names_a_missing_folder(mail_server, account):
    _user, _password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(folders="INBOX, Leads")
    verdict = check_connection(refreshed(mailbox))
    assert (verdict.ok, verdict.kind) == (False, Failure.FOLDER_MISSING)
    assert "'Leads'" in verdict.message
    assert verdict.folders == {"INBOX": 0}


@pytest.mark.imap
def test_the_connection_test_says_when_authentication_fails(mail_server, account):
    _user, _password, mailbox = account
    verdict = check_connection(mailbox, password="wrong-password")
    assert (verdict.ok, verdict.kind) == (False, Failure.AUTH)
    assert verdict.message.startswith("Authentication failed")


@pytest.mark.imap
def test_an_authentication_failure_names_what_the_provider_needs(mail_server, account):
    _user, _password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(provider="yandex")
    verdict = check_connection(refreshed(mailbox), password="wrong-password")
    assert verdict.kind == Failure.AUTH
    assert "app password" in verdict.message and "Mail clients" in verdict.message


def test_the_connection_test_says_when_the_host_is_unreachable(db):
    port = closed_port()
    verdict = check_connection(make_setup(imap_port=port).mailbox)
    assert (verdict.ok, verdict.kind) == (False, Failure.UNREACHABLE)
    assert f"127.0.0.1:{port} unreachable" in verdict.message


def test_a_server_that_never_answers_is_a_timeout(db, blackhole, settings):
    settings.IMAP_TIMEOUT_SECONDS = 0.3
    mailbox = make_setup(imap_port=blackhole.port).mailbox
    verdict = check_connection(mailbox)
    assert (verdict.ok, verdict.kind) == (False, Failure.TIMEOUT)
    result = sync_mailbox(mailbox.pk)
    assert result.error_kind == Failure.TIMEOUT
    assert "did not answer in time" in refreshed(mailbox).last_error


@pytest.mark.imap
def test_a_password_that_is_not_ascii_logs_in(mail_server, db):
    user, password = mail_server.account(password="пароль-Ключ-42")
    mailbox = make_setup(imap_port=mail_server.port, imap_user=user, imap_password=password).mailbox
    verdict = check_connection(mailbox)
    assert verdict.ok, verdict.message


# --- Failures during a sync ----------------------------------------------------------


def big_letter(n: int) -> bytes:
    return letter_bytes(to="info@shop.test", subject=f"Letter {n:02d}", body=f"Letter {n:02d}\n" + "x" * 20_000)


@pytest.mark.imap
@pytest.mark.parametrize("mode", ["drop", "stall"])
def test_a_connection_lost_mid_sync_keeps_what_was_committed_and_the_next_sync_reads_the_rest(
    mail_server, account, settings, mode
):
    user, _password, mailbox = account
    settings.IMAP_FETCH_BATCH = 5
    # Every read that Dovecot answers must fit in it, on a loaded machine too.
    settings.IMAP_TIMEOUT_SECONDS = 5
    mail_server.append_many(user, [big_letter(n) for n in range(20)], when=now_s() - timedelta(hours=1))
    # Two batches of five 20 KB letters get through, the third is cut.
    relay = Relay(mail_server.port, after=250_000, mode=mode)
    try:
        Mailbox.objects.filter(pk=mailbox.pk).update(port=relay.port)
        result = sync_mailbox(mailbox.pk)
    finally:
        relay.close()
    failing = refreshed(mailbox)
    assert failing.state == Mailbox.State.FAILING
    if mode == "drop":
        assert result.error_kind == Failure.DROPPED and "dropped" in failing.last_error
    else:
        assert result.error_kind == Failure.TIMEOUT and "stopped answering" in failing.last_error
    assert result.stored == 10
    assert FolderState.objects.get(mailbox=mailbox).last_uid == 10
    assert Letter.objects.filter(mailbox=mailbox).count() == 10

    Mailbox.objects.filter(pk=mailbox.pk).update(port=mail_server.port, next_sync_at=None)
    again = sync_mailbox(mailbox.pk)
    assert (again.error, again.stored) == ("", 10)
    subjects = sorted(Letter.objects.filter(mailbox=mailbox).values_list("subject", flat=True))
    assert subjects == [f"Letter {n:02d}" for n in range(20)]
    recovered = refreshed(mailbox)
    assert (recovered.state, recovered.last_error, recovered.failure_count) == (Mailbox.State.OK, "", 0)


def test_the_backoff_doubles_with_each_failure_up_to_an_hour(db):
    mailbox = make_setup(imap_port=closed_port()).mailbox
    Mailbox.objects.filter(pk=mailbox.pk).update(sync_interval_minutes=10)
    waits = []
    for _ in range(5):
        sync_mailbox(mailbox.pk)
        failing = refreshed(mailbox)
        waits.append(failing.next_sync_at - failing.last_error_at)
    assert waits == [timedelta(minutes=m) for m in (10, 20, 40, 60, 60)]
    assert refreshed(mailbox).failure_count == 5


@pytest.mark.imap
def test_failing_mailboxes_hold_up_no_other(mail_server, account, blackhole, settings):
    user, _password, good = account
    settings.IMAP_TIMEOUT_SECONDS = 5  # room for Dovecot's answers on a loaded machine
    hanging = make_setup(name="Hanging", original="info@hanging.test", imap_port=blackhole.port).mailbox
    other_user, _ = mail_server.account()
    refused = make_setup(name="Refused", original="info@refused.test", imap_port=mail_server.port, imap_user=other_user)
    mailbox_set_password(refused.mailbox, "wrong")
    refused.mailbox.save()
    mail_server.append(user, letter_bytes(to="info@shop.test"), when=now_s() - timedelta(minutes=5))
    Mailbox.objects.filter(pk=good.pk).update(name="zz good")  # synced last, after both failures
    errors = io.StringIO()
    with pytest.raises(SystemExit) as exit_code:
        call_command("sync_mailboxes", stdout=io.StringIO(), stderr=errors)
    assert exit_code.value.code == 1
    assert Letter.objects.filter(mailbox=good).count() == 1
    assert refreshed(good).state == Mailbox.State.OK
    assert "did not answer in time" in refreshed(hanging).last_error
    assert "Authentication failed" in refreshed(refused.mailbox).last_error
    assert "Hanging" in errors.getvalue() and "Refused" in errors.getvalue()


@pytest.mark.imap
def test_the_password_is_never_logged_nor_returned(mail_server, db, caplog):
    secret = "Very-Secret-Pa55"
    user, _ = mail_server.account(password=secret)
    mailbox = make_setup(imap_port=mail_server.port, imap_user=user, imap_password=secret).mailbox
    mail_server.append(user, letter_bytes(to="info@shop.test"), when=now_s() - timedelta(minutes=5), password=secret)
    outputs = []
    with caplog.at_level(logging.DEBUG):
        outputs.append(repr(sync_mailbox(mailbox.pk)))
        outputs.append(repr(check_connection(mailbox)))
        mailbox_set_password(mailbox, secret + "-wrong")
        mailbox.save()
        outputs.append(repr(sync_mailbox(mailbox.pk)))
        outputs.append(repr(check_connection(mailbox)))
    assert Letter.objects.filter(mailbox=mailbox).count() == 1
    assert any("LOGIN" in record.getMessage() for record in caplog.records)  # imaplib's traffic was logged
    logged = "\n".join(record.getMessage() for record in caplog.records)
    stored = refreshed(mailbox)
    for text in [logged, stored.last_error, stored.password_encrypted, *outputs]:
        assert secret not in text
