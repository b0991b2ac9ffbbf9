"""The relay's queue: a letter the upstream does not take is kept, retried
with backoff and delivered once; after the queue window it bounces to the
sender; two workers never send one letter twice; the upstream passes the
internal-network guard. A real relay, a real aiosmtpd upstream."""

import threading
from datetime import timedelta
from email import message_from_bytes

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from django.db import connection
from django.utils import timezone

from integrations.models import OutboundStatus
from relay import queue, tasks, upstream
from relay.forms import UpstreamForm
from relay.models import QueuedLetter, Upstream
from tests.test_relay_support import client, free_port, letter, make_account

pytest_plugins = ["tests.test_relay_support"]
pytestmark = pytest.mark.django_db(transaction=True)


def _send(relay_server, relay_account, recipients=("ivan@client.test",)):
    with client(relay_server, relay_account) as conn:
        conn.mail("anna@shop.test")
        for rcpt in recipients:
            assert conn.rcpt(rcpt)[0] == 250
        return conn.data(letter(to=recipients))


def test_a_letter_for_an_upstream_that_is_down_is_queued_and_later_delivered_once(
    relay_server, upstream_server, relay_account
):
    upstream_server.stop()
    code, reply = _send(relay_server, relay_account)
    assert code == 250 and b"Queued, retried for 24 hours" in reply
    [row] = QueuedLetter.objects.all()
    assert row.status == OutboundStatus.PENDING and row.attempts == 1
    assert "refused the connection" in row.last_error
    assert row.recipients == ["ivan@client.test"] and row.delivered == []
    first_retry = row.next_attempt_at - row.last_attempt_at
    assert timedelta(seconds=30) <= first_retry <= timedelta(seconds=33)  # backoff with up to 10% jitter
    assert queue.due_ids(row.last_attempt_at) == []

    upstream_server.start()
    later = row.next_attempt_at
    assert queue.due_ids(later) == [row.pk]
    assert queue.attempt(row.pk, later).status == OutboundStatus.SENT
    assert queue.attempt(row.pk, later + timedelta(hours=1)).claimed is False
    assert queue.due_ids(later + timedelta(hours=1)) == []
    [received] = upstream_server.letters
    assert received.rcpt_tos == ["ivan@client.test"] and received.content == letter()
    row.refresh_from_db()
    assert row.delivered == ["ivan@client.test"] and row.attempts == 2 and row.sent_at == later


def test_retries_back_off_exponentially_within_the_queue_window(relay_server, upstream_server, relay_account):
    upstream_server.stop()
    _send(relay_server, relay_account)
    [row] = QueuedLetter.objects.all()
    waits = []
    now = row.next_attempt_at
    for _ in range(6):
        outcome = queue.attempt(row.pk, now)
        waits.append((outcome.retry_at - now).total_seconds())
        now = outcome.retry_at
    for wait, base in zip(waits, [60, 120, 240, 480, 960, 1920], strict=True):
        assert base <= wait <= base * 1.1
    assert upstream_server.letters == []


def test_after_the_queue_window_the_letter_bounces_to_its_sender(relay_server, upstream_server, relay_account):
    upstream_server.replies["ivan@client.test"] = "451 4.3.0 Mailbox busy, try later"
    code, _ = _send(relay_server, relay_account)
    assert code == 250
    [row] = QueuedLetter.objects.all()
    assert abs((row.give_up_at - row.created_at) - timedelta(hours=24)) < timedelta(seconds=1)

    # The last retry is made at the end of the window, never after it.
    outcome = queue.attempt(row.pk, row.give_up_at - timedelta(minutes=1))
    assert outcome.status == OutboundStatus.PENDING and outcome.retry_at == row.give_up_at
    outcome = queue.attempt(row.pk, row.give_up_at)
    assert outcome.status == OutboundStatus.FAILED and outcome.bounce_id
    row.refresh_from_db()
    assert row.status == OutboundStatus.FAILED and row.next_attempt_at is None

    bounce = QueuedLetter.objects.get(pk=outcome.bounce_id)
    assert bounce.kind == QueuedLetter.Kind.BOUNCE and bounce.bounce_of == row
    assert queue.attempt(bounce.pk, row.give_up_at).status == OutboundStatus.SENT
    [received] = upstream_server.letters
    assert received.mail_from == "<>" and received.rcpt_tos == ["anna@shop.test"]
    dsn = message_from_bytes(received.content)
    assert dsn.get_content_type() == "multipart/report" and dsn.get_param("report-type") == "delivery-status"
    assert dsn["Auto-Submitted"] == "auto-replied"
    human, status, headers = dsn.get_payload()
    assert "ivan@client.test" in human.get_payload(decode=True).decode()
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; relay.test"
    assert per_recipient["Final-Recipient"] == "rfc822; ivan@client.test"
    assert per_recipient["Action"] == "failed" and per_recipient["Status"] == "4.4.7"
    assert per_recipient["Diagnostic-Code"] == "smtp; 451 4.3.0 Mailbox busy, try later"
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: Price list" in headers.get_payload()


def test_a_bounce_that_cannot_be_delivered_never_bounces_again(relay_server, upstream_server, relay_account):
    upstream_server.replies["ivan@client.test"] = "451 4.3.0 later"
    upstream_server.replies["anna@shop.test"] = "451 4.3.0 later"
    _send(relay_server, relay_account)
    row = QueuedLetter.objects.get()
    bounce_id = queue.attempt(row.pk, row.give_up_at).bounce_id
    bounce = QueuedLetter.objects.get(pk=bounce_id)
    outcome = queue.attempt(bounce.pk, bounce.give_up_at)
    assert outcome.status == OutboundStatus.FAILED and outcome.bounce_id is None
    assert QueuedLetter.objects.count() == 2


def test_a_letter_the_upstream_refuses_for_every_recipient_is_refused_to_the_client(
    relay_server, upstream_server, relay_account
):
    upstream_server.replies["ivan@client.test"] = "550 5.1.1 No such user"
    code, reply = _send(relay_server, relay_account)
    assert code == 554 and b"550 5.1.1 No such user" in reply
    [row] = QueuedLetter.objects.all()
    assert row.status == OutboundStatus.FAILED and row.refused == [["ivan@client.test", 550, "5.1.1 No such user"]]
    assert not row.bounces.exists()  # the client was told; no bounce
    assert upstream_server.letters == []


def test_a_refused_recipient_beside_delivered_ones_gets_a_bounce(relay_server, upstream_server, relay_account):
    upstream_server.replies["gone@client.test"] = "550 5.1.1 No such user"
    code, _ = _send(relay_server, relay_account, ("ivan@client.test", "gone@client.test"))
    assert code == 250
    row = QueuedLetter.objects.get(kind=QueuedLetter.Kind.LETTER)
    assert row.status == OutboundStatus.SENT and row.delivered == ["ivan@client.test"]
    bounce = row.bounces.get()
    assert queue.due_ids() == [bounce.pk]
    assert queue.attempt(bounce.pk).status == OutboundStatus.SENT
    delivered, dsn = upstream_server.letters
    assert delivered.rcpt_tos == ["ivan@client.test"]
    assert dsn.rcpt_tos == ["anna@shop.test"]
    [_m, per_recipient] = message_from_bytes(dsn.content).get_payload()[1].get_payload()
    assert per_recipient["Final-Recipient"] == "rfc822; gone@client.test" and per_recipient["Status"] == "5.0.0"


def test_a_temporarily_refused_recipient_is_retried_alone(relay_server, upstream_server, relay_account):
    upstream_server.replies["busy@client.test"] = "452 4.2.2 Mailbox full"
    _send(relay_server, relay_account, ("ivan@client.test", "busy@client.test"))
    row = QueuedLetter.objects.get()
    assert row.status == OutboundStatus.PENDING
    assert row.delivered == ["ivan@client.test"] and row.recipients == ["busy@client.test"]
    del upstream_server.replies["busy@client.test"]
    assert queue.attempt(row.pk, row.next_attempt_at).status == OutboundStatus.SENT
    assert [r.rcpt_tos for r in upstream_server.letters] == [["ivan@client.test"], ["busy@client.test"]]


def test_two_workers_racing_for_a_queued_letter_send_it_once(relay_server, upstream_server, relay_account):
    upstream_server.stop()
    _send(relay_server, relay_account)
    row = QueuedLetter.objects.get()
    upstream_server.hold = threading.Event()
    upstream_server.start()
    due = row.next_attempt_at
    start = threading.Barrier(2)
    outcomes = []

    def worker():
        start.wait()
        try:
            outcomes.append(queue.attempt(row.pk, due))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    # One worker holds the letter in the upstream's DATA; the other must give up without sending.
    assert upstream_server.in_data.wait(10)
    while len(outcomes) < 1:
        threads[0].join(0.05)
    assert outcomes[0].claimed is False
    upstream_server.hold.set()
    for thread in threads:
        thread.join(10)
    assert sorted(o.claimed for o in outcomes) == [False, True]
    assert len(upstream_server.letters) == 1
    row.refresh_from_db()
    assert row.status == OutboundStatus.SENT and row.attempts == 2


def test_the_beat_sweep_sends_what_is_due(relay_server, upstream_server, relay_account, settings):
    settings.CELERY_TASK_ALWAYS_EAGER = True
    upstream_server.stop()
    _send(relay_server, relay_account)
    row = QueuedLetter.objects.get()
    upstream_server.start()
    assert tasks.send_due() == 0  # not due yet
    QueuedLetter.objects.filter(pk=row.pk).update(next_attempt_at=timezone.now())
    assert tasks.send_due() == 1
    assert tasks.send_due() == 0
    assert len(upstream_server.letters) == 1


def test_a_letter_whose_first_attempt_was_cut_short_is_taken_by_the_sweep_when_its_claim_lapses(
    relay_settings, upstream_server, relay_account
):
    rows = queue.letter_store(
        credential=relay_account.credential,
        mail_from="anna@shop.test",
        recipients=["ivan@client.test"],
        raw=letter(),
        client_ip="127.0.0.1",
    )
    [row] = rows
    assert queue.due_ids() == []  # held for the relay's own first attempt
    assert queue.due_ids(timezone.now() + timedelta(minutes=4)) == [row.pk]
    assert queue.attempt(row.pk, timezone.now() + timedelta(minutes=4)).status == OutboundStatus.SENT
    assert len(upstream_server.letters) == 1


def test_the_upstream_on_the_internal_network_is_refused_without_the_installation_setting(
    relay_server, upstream_server, relay_account, relay_settings
):
    relay_settings.RELAY_ALLOW_PRIVATE_UPSTREAMS = False
    code, reply = _send(relay_server, relay_account)
    assert code == 250 and b"loopback" in reply
    row = QueuedLetter.objects.get()
    assert row.status == OutboundStatus.PENDING and "127.0.0.1 is a loopback address" in row.last_error
    assert upstream_server.letters == []
    form = UpstreamForm(
        data={"project": relay_account.project.pk, "host": "127.0.0.1", "port": 25, "security": "none", "active": "on"},
        instance=Upstream(),
    )
    assert not form.is_valid() and "loopback" in str(form.errors["host"])
    form = UpstreamForm(
        data={"project": relay_account.project.pk, "host": "10.1.2.3", "port": 25, "security": "none"},
        instance=Upstream(),
    )
    assert not form.is_valid() and "private" in str(form.errors["host"])


class _LoginUpstream:
    def __init__(self):
        self.logins, self.letters = [], []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.letters.append(envelope.original_content)
        return "250 OK"


def test_the_upstream_login_uses_the_password_kept_encrypted(relay_server, relay_settings):
    handler = _LoginUpstream()

    def authenticator(server, session, envelope, mechanism, auth_data):
        handler.logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=auth_data.password == b"upstream-secret")

    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=free_port(),
        authenticator=authenticator,
        auth_require_tls=False,
        auth_required=True,
    )
    controller.start()
    try:
        account = make_account(controller.port)
        account.upstream.username = "mailer@shop.test"
        upstream.upstream_set_password(account.upstream, "upstream-secret")
        account.upstream.save()
        assert "upstream-secret" not in account.upstream.password_encrypted
        code, _ = _send(relay_server, account)
        assert code == 250
        assert handler.logins == [(b"mailer@shop.test", b"upstream-secret")]
        assert handler.letters == [letter()]

        upstream.upstream_set_password(account.upstream, "changed-elsewhere")
        account.upstream.save()
        code, reply = _send(relay_server, account)
        assert code == 250 and b"Queued" in reply  # a refused login is retried: the manager may fix it
        assert QueuedLetter.objects.filter(status=OutboundStatus.PENDING).count() == 1
    finally:
        controller.stop()


def test_old_sent_and_failed_letters_are_purged_and_waiting_ones_kept(relay_server, upstream_server, relay_account):
    _send(relay_server, relay_account)
    upstream_server.stop()
    _send(relay_server, relay_account)
    sent = QueuedLetter.objects.get(status=OutboundStatus.SENT)
    waiting = QueuedLetter.objects.get(status=OutboundStatus.PENDING)
    QueuedLetter.objects.update(created_at=timezone.now() - timedelta(days=8))
    assert queue.purge() == 1
    assert list(QueuedLetter.objects.values_list("pk", flat=True)) == [waiting.pk]
    assert not QueuedLetter.objects.filter(pk=sent.pk).exists()


def test_retry_now_makes_waiting_letters_due(relay_server, upstream_server, relay_account):
    upstream_server.stop()
    _send(relay_server, relay_account)
    row = QueuedLetter.objects.get()
    now = timezone.now()
    assert queue.due_ids(now) == []
    assert queue.retry_now(QueuedLetter.objects.all(), now) == [row.pk]
    assert queue.due_ids(now) == [row.pk]
