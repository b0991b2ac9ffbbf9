"""The listener (IMAP IDLE) against a real Dovecot: a letter becomes a lead
without waiting for the poll, a burst is one sync, nothing is stored twice
when the poll races it, mailboxes changed in admin are heard, several
listeners share the mailboxes; and the faults: a dropped connection, BYE, a
server that goes silent or sends garbage, no IDLE, a UIDVALIDITY change, a
mailbox deleted while listened to."""

import asyncio
import threading
from datetime import timedelta

import pytest
from django.utils import timezone
from imapclient.exceptions import IMAPClientError

from attribution.models import Lead
from mailbox_sync import conf, idle
from mailbox_sync.listening import refresh
from mailbox_sync.models import Letter, ListenerProcess, Listening, Mailbox, Reply
from mailbox_sync.services import sync_mailbox
from tests.factories import letter_bytes, make_setup
from tests.test_mailbox_listener_support import FAST, FaultyRelay, run_coroutine, running_listener, wait_until

pytestmark = [pytest.mark.imap, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def fast(settings):
    for name, value in FAST.items():
        setattr(settings, name, value)


def letter(subject: str) -> bytes:
    """A letter from a sender of its own (letters of one sender join one lead)."""
    sender = "".join(c for c in subject.lower() if c.isalnum()) + "@client.test"
    return letter_bytes(to="info@shop.test", subject=subject, sender=sender)


def append(server, user, subject):
    return server.append(user, letter(subject), when=timezone.now())


def appended(server, user, raw: bytes) -> bool:
    try:
        server.append(user, raw, when=timezone.now())
    except IMAPClientError:
        return False
    return True


def subjects(mailbox) -> list[str]:
    return sorted(Letter.objects.filter(mailbox=mailbox).values_list("subject", flat=True))


def listening(mailbox) -> Listening | None:
    return Listening.objects.filter(pk=mailbox.pk).first()


def state_is(mailbox, state, why=""):
    row = listening(mailbox)
    return row is not None and row.state == state and why in row.last_error and row


def lead_for(mailbox, subject):
    return Lead.objects.filter(letters__mailbox=mailbox, letters__subject=subject).first()


@pytest.fixture
def relayed(mail_server, account):
    """An account reached through a relay that can fail."""
    user, _password, mailbox = account
    relay = FaultyRelay(mail_server.port)
    Mailbox.objects.filter(pk=mailbox.pk).update(port=relay.port)
    mailbox.refresh_from_db()
    sync_mailbox(mailbox.pk)  # the first sync: the folder's high-water mark is known
    yield user, mailbox, relay
    relay.close()


def test_it_makes_a_lead_of_a_letter_as_it_arrives_and_shows_it_listening(mail_server, account):
    user, _password, mailbox = account
    sync_mailbox(mailbox.pk)
    with running_listener():
        row = wait_until(lambda: state_is(mailbox, Listening.State.LISTENING), message="listening")
        assert row.state_since is not None and row.last_letter_at is None
        append(mail_server, user, "Heard at once")
        lead = wait_until(lambda: lead_for(mailbox, "Heard at once"), message="the lead")
        assert lead.sender_email == "heardatonce@client.test"
        wait_until(lambda: listening(mailbox).last_letter_at is not None, message="last letter seen")
    assert subjects(mailbox) == ["Heard at once"]


def test_it_stores_a_burst_of_letters_each_once(mail_server, account):
    user, _password, mailbox = account
    sync_mailbox(mailbox.pk)
    with running_listener():
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
        names = [f"Burst {n}" for n in range(6)]
        for name in names:
            append(mail_server, user, name)
        wait_until(lambda: Lead.objects.filter(letters__mailbox=mailbox).count() == 6, message="six leads")
    assert subjects(mailbox) == sorted(names)


def test_it_reads_at_once_the_letters_that_came_before_it_listened(mail_server, account):
    user, _password, mailbox = account
    sync_mailbox(mailbox.pk)
    append(mail_server, user, "While nobody listened")
    with running_listener():
        wait_until(lambda: lead_for(mailbox, "While nobody listened"), message="the lead")


def test_the_poll_racing_the_listener_stores_no_letter_twice(mail_server, account):
    user, _password, mailbox = account
    sync_mailbox(mailbox.pk)
    stop = threading.Event()

    def poll():
        while not stop.is_set():
            Mailbox.objects.filter(pk=mailbox.pk).update(next_sync_at=None)
            sync_mailbox(mailbox.pk)

    with running_listener():
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        try:
            for n in range(5):
                append(mail_server, user, f"Raced {n}")
            wait_until(lambda: Letter.objects.filter(mailbox=mailbox).count() == 5, message="five letters")
        finally:
            stop.set()
            poller.join(30)
    assert subjects(mailbox) == [f"Raced {n}" for n in range(5)]
    assert Lead.objects.filter(letters__mailbox=mailbox).distinct().count() == 5
    assert not Letter.objects.filter(mailbox=mailbox, copies__isnull=False).exists()


# --- Faults -------------------------------------------------------------------


def test_a_dropped_connection_shows_why_reconnects_and_loses_no_letter(mail_server, relayed):
    user, mailbox, relay = relayed
    with running_listener():
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
        relay.refusing.set()
        relay.cut()
        row = wait_until(lambda: state_is(mailbox, Listening.State.RECONNECTING), message="reconnecting")
        assert "closed the connection" in row.last_error
        append(mail_server, user, "During the outage")
        relay.refusing.clear()  # the network is back
        wait_until(lambda: lead_for(mailbox, "During the outage"), message="the letter of the outage")
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING), message="listening again")
    assert subjects(mailbox) == ["During the outage"]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"* BYE Server shutting down\r\n", "BYE Server shutting down"),
        (b"\x00\x17garbage that is not IMAP\r\n", "not IMAP"),
        (b"L999 OK what command?\r\n", "a command not sent"),
    ],
    ids=["bye", "garbage", "stray-answer"],
)
def test_a_server_that_says_bye_or_garbage_shows_why_and_is_listened_to_again(mail_server, relayed, line, why):
    user, mailbox, relay = relayed
    with running_listener():
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
        # The line comes while the server idles, not before it has said so.
        wait_until(relay.idling.is_set, message="the server idling")
        connections = relay.accepted
        relay.say(line)
        wait_until(lambda: relay.accepted > connections, message="a new connection")
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING), message="listening again")
        append(mail_server, user, "After the fault")
        wait_until(lambda: lead_for(mailbox, "After the fault"), message="the lead")
    history = Listening.objects.get(pk=mailbox.pk)
    assert history.state == Listening.State.LISTENING
    assert subjects(mailbox) == ["After the fault"]


def test_a_server_that_never_answers_is_found_dead_and_left_for_a_new_connection(mail_server, relayed):
    user, mailbox, relay = relayed
    with running_listener():
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
        connections = relay.accepted
        relay.silent.set()
        row = wait_until(
            lambda: state_is(mailbox, Listening.State.RECONNECTING, "did not answer"), message="found dead"
        )
        assert "did not answer within" in row.last_error
        relay.silent.clear()
        wait_until(lambda: relay.accepted > connections and state_is(mailbox, Listening.State.LISTENING))
        append(mail_server, user, "After the silence")
        wait_until(lambda: lead_for(mailbox, "After the silence"), message="the lead")


def test_a_server_without_idle_is_left_to_the_poll(mail_server, account):
    _user, _password, mailbox = account
    relay = FaultyRelay(mail_server.port, hide_idle=True)
    try:
        Mailbox.objects.filter(pk=mailbox.pk).update(port=relay.port)
        with running_listener():
            wait_until(lambda: state_is(mailbox, Listening.State.POLLING), message="polling")
    finally:
        relay.close()


def test_a_uidvalidity_change_while_listening_rereads_the_folder_without_storing_twice(mail_server, account):
    user, _password, mailbox = account
    before = letter("Before the change")
    mail_server.append(user, before, when=timezone.now())
    sync_mailbox(mailbox.pk)
    with running_listener():
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
        maildir = mail_server.root / "mail" / user / "Maildir"
        maildir.rename(maildir.with_name("Maildir.old"))  # Dovecot makes a new maildir: a new UIDVALIDITY
        # Dovecot may refuse an APPEND while it notices ("Mailbox was deleted under us").
        wait_until(lambda: appended(mail_server, user, before), message="the same letter, renumbered")
        wait_until(lambda: appended(mail_server, user, letter("After the change")), message="a new letter")
        wait_until(lambda: lead_for(mailbox, "After the change"), message="the lead after the change")
    assert subjects(mailbox) == ["After the change", "Before the change"]
    assert Letter.objects.get(mailbox=mailbox, subject="Before the change").copies.count() == 1


def test_a_mailbox_deleted_while_listened_to_is_let_go(mail_server, account):
    _user, _password, mailbox = account
    sync_mailbox(mailbox.pk)
    with running_listener() as listener:
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
        Mailbox.objects.filter(pk=mailbox.pk).delete()
        wait_until(lambda: mailbox.pk not in listener.watches, message="let go")
    assert not Listening.objects.filter(pk=mailbox.pk).exists()


# --- Admin changes and several listeners --------------------------------------------


def test_a_mailbox_switched_off_is_let_go_and_one_switched_on_is_listened_to(mail_server, account):
    user, _password, mailbox = account
    sync_mailbox(mailbox.pk)
    with running_listener() as listener:
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
        Mailbox.objects.filter(pk=mailbox.pk).update(active=False)
        wait_until(lambda: mailbox.pk not in listener.watches, message="let go")
        assert Listening.objects.get(pk=mailbox.pk).listener == ""
        Mailbox.objects.filter(pk=mailbox.pk).update(active=True)
        wait_until(lambda: mailbox.pk in listener.watches, message="listened to again")
        append(mail_server, user, "Switched on again")
        wait_until(lambda: lead_for(mailbox, "Switched on again"), message="the lead")


def test_a_changed_mailbox_is_connected_again_with_its_new_settings(mail_server, account):
    _user, _password, mailbox = account
    relay = FaultyRelay(mail_server.port)
    try:
        with running_listener():
            wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
            Mailbox.objects.filter(pk=mailbox.pk).update(port=relay.port)
            wait_until(lambda: relay.accepted >= 1, message="a connection to the new port")
            wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
    finally:
        relay.close()


def test_two_listeners_share_the_mailboxes_and_one_takes_over_when_the_other_stops(mail_server, db):
    from tests.test_mailbox_sync_connect import new_account

    boxes = [new_account(mail_server)[2] for _ in range(4)]
    with running_listener("first") as first:
        with running_listener("second") as second:

            def shared():
                held = Listening.objects.filter(pk__in=[b.pk for b in boxes], held_until__gt=timezone.now())
                owners = dict(held.values_list("pk", "listener"))
                return len(owners) == 4 and set(owners.values()) == {"first", "second"} and owners

            owners = wait_until(shared, message="both listeners holding some")
            wait_until(lambda: sorted(set(first.watches) | set(second.watches)) == sorted(owners))
            assert not set(first.watches) & set(second.watches)
        # The second stopped and gave its mailboxes back: the first takes them.
        wait_until(lambda: all(b.pk in first.watches for b in boxes), message="the first holds all")
        assert set(Listening.objects.filter(pk__in=[b.pk for b in boxes]).values_list("listener", flat=True)) == {
            "first"
        }


def test_a_lease_of_a_listener_that_died_is_taken_over_once_it_lapses(mail_server, account, settings):
    _user, _password, mailbox = account
    Listening.objects.create(
        mailbox=mailbox, listener="dead-host:1:gone", held_until=timezone.now() + timedelta(seconds=2)
    )
    with running_listener("alive") as alive:
        assert Listening.objects.get(pk=mailbox.pk).listener == "dead-host:1:gone"
        wait_until(lambda: mailbox.pk in alive.watches, message="taken over")
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
        assert Listening.objects.get(pk=mailbox.pk).listener == "alive"


def test_admin_shows_how_each_mailbox_is_heard_since_when_and_its_last_letter(mail_server, account, admin_client):
    user, _password, mailbox = account
    sync_mailbox(mailbox.pk)
    page = admin_client.get("/admin/mailbox_sync/mailbox/").content.decode()
    assert "Polling (no listener holds it)" in page
    with running_listener():
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
        append(mail_server, user, "Seen by admin")
        wait_until(lambda: listening(mailbox).last_letter_at is not None)
        row = listening(mailbox)
        page = admin_client.get("/admin/mailbox_sync/mailbox/").content.decode()
        assert f"Listening since {row.state_since:%Y-%m-%d %H:%M} UTC" in page
        change = admin_client.get(f"/admin/mailbox_sync/mailbox/{mailbox.pk}/change/").content.decode()
        assert f"{row.last_letter_at:%Y-%m-%d %H:%M:%S} UTC" in change


def test_with_response_time_on_it_also_listens_to_sent_and_reads_a_reply_as_it_is_filed(mail_server, account):
    user, _password, mailbox = account
    Mailbox.objects.filter(pk=mailbox.pk).update(watch_sent=True)
    client = mail_server.client(user)
    client.create_folder("Gesendet")
    client.logout()
    append(mail_server, user, "Question")
    sync_mailbox(mailbox.pk)
    question = Letter.objects.get(mailbox=mailbox, subject="Question")
    with running_listener() as listener:
        wait_until(lambda: listener.watches.get(mailbox.pk) and len(listener.watches[mailbox.pk].held.folders) == 2)
        assert listener.watches[mailbox.pk].held.folders == ("INBOX", "Gesendet")
        wait_until(lambda: state_is(mailbox, Listening.State.LISTENING))
        reply = letter_bytes(
            to="question@client.test",
            sender="info@shop.test",
            subject="Re: Question",
            headers={"In-Reply-To": question.message_id},
        )
        mail_server.append(user, reply, when=timezone.now(), folder="Gesendet")
        wait_until(lambda: Reply.objects.filter(mailbox=mailbox, lead=question.lead_id).exists(), message="the reply")


@pytest.mark.django_db
def test_a_listener_takes_its_share_counting_only_listeners_seen_lately(db):
    boxes = [make_setup(name=f"Share {n}").mailbox for n in range(4)]
    now = timezone.now()
    ListenerProcess.objects.create(name="other", seen_at=now)
    ListenerProcess.objects.create(name="died-yesterday", seen_at=now - timedelta(days=2))
    held = refresh("me", now, {})
    assert len(held) == 2  # four mailboxes, two live listeners
    assert set(ListenerProcess.objects.values_list("name", flat=True)) == {"me", "other"}
    assert set(held) <= {box.pk for box in boxes}


@pytest.mark.django_db
def test_a_refresh_renews_every_lease_it_keeps_and_hears_a_mailbox_changed_deleted_or_switched_off(db):
    changed, deleted, switched_off, kept = (make_setup(name=f"Held {n}").mailbox for n in range(4))
    now = timezone.now()
    assert sorted(refresh("me", now, {})) == sorted(box.pk for box in (changed, deleted, switched_off, kept))
    later = now + timedelta(seconds=20)
    Mailbox.objects.filter(pk=changed.pk).update(port=10143, username="renamed@shop.test", folders="Leads, INBOX")
    Mailbox.objects.filter(pk=deleted.pk).delete()
    Mailbox.objects.filter(pk=switched_off.pk).update(active=False)
    held = refresh("me", later, {kept.pk: "Sent"})
    assert sorted(held) == sorted([changed.pk, kept.pk])
    assert (held[changed.pk].port, held[changed.pk].username) == (10143, "renamed@shop.test")
    assert held[changed.pk].folders == ("INBOX",)
    assert held[kept.pk].folders == ("INBOX", "Sent")
    leases = dict(Listening.objects.values_list("pk", "held_until"))
    assert leases == {
        changed.pk: later + conf.listener_lease(),
        switched_off.pk: None,
        kept.pk: later + conf.listener_lease(),
    }
    assert Listening.objects.get(pk=switched_off.pk).listener == ""


@pytest.mark.django_db
def test_a_listener_above_its_share_gives_back_the_mailboxes_after_its_first(db):
    boxes = sorted(make_setup(name=f"Given back {n}").mailbox.pk for n in range(4))
    now = timezone.now()
    assert sorted(refresh("me", now, {})) == boxes
    later = now + timedelta(seconds=20)
    ListenerProcess.objects.create(name="other", seen_at=later)
    assert sorted(refresh("me", later, {})) == boxes[:2]
    owners = dict(Listening.objects.values_list("pk", "listener"))
    assert owners == {boxes[0]: "me", boxes[1]: "me", boxes[2]: "", boxes[3]: ""}
    assert sorted(refresh("other", later, {})) == boxes[2:]


def test_an_idle_is_renewed_on_one_connection_hears_a_letter_after_renewals_and_stops_when_asked(mail_server, account):
    user, password, _mailbox = account
    heard = []

    async def listen():
        timing = idle.Timing(connect=5, answer=5, ping=0.1)
        connection = await idle.open_connection("127.0.0.1", mail_server.port, "none", timing)
        await connection.login(user, password)
        await connection.examine("INBOX")
        stop = asyncio.Event()
        idling = asyncio.ensure_future(
            connection.idle(on_new=lambda: heard.append("new"), on_renumbered=list, stop=stop)
        )
        while connection._tag < 12:  # LOGIN, EXAMINE, then an IDLE begun again ten times
            assert not idling.done(), idling.exception()
            await asyncio.sleep(0.05)
        await asyncio.to_thread(append, mail_server, user, "After renewals")
        while not heard:
            assert not idling.done(), idling.exception()
            await asyncio.sleep(0.05)
        # A long ping: only `stop` ends this IDLE.
        connection.timing.ping = 3600
        tag = connection._tag
        while connection._tag == tag:
            await asyncio.sleep(0.05)
        stop.set()
        await asyncio.wait_for(idling, 10)
        await connection.logout()

    run_coroutine(asyncio.wait_for(listen(), 60))  # a renewal that stalls fails here
    assert heard == ["new"]


def test_the_turns_of_idles_fall_on_a_shared_grid_never_later_than_the_ping():
    turns = {idle.turn_at(1000.0 + start / 10, 45.0) for start in range(20)}  # begun over two seconds
    assert len(turns) <= 2  # one or two batches, not twenty
    for start in range(200):
        now = 5000.0 + start * 0.37
        turn = idle.turn_at(now, 45.0)
        assert now + 45.0 - idle.TURN_GRID < turn <= now + 45.0
        assert idle.turn_at(now, 1.0) <= now + 1.0  # a short ping (the tests') gets a finer grid
        assert idle.turn_at(now, 1.0) > now + 1.0 - 1.0 / 8 - 1e-9
