"""Attribution has one path, a batch of letters decided in arrival order: a
batch gives exactly what the same letters give one at a time (each a batch
of one), with a number of queries that does not grow with the batch."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from attribution import events
from attribution.batch import attribute_letters
from attribution.models import Exclusion, Lead, MatchKind
from attribution.services import attribute_letter
from mailbox_sync.models import Letter, Mailbox
from mailbox_sync.services import ingest_raw, store_letter
from substitution.models import Lease, PoolExhaustion, StaticAddress
from tests.factories import letter_bytes, make_setup, minutes
from tests.test_attribution import T0, add_session, held, visitor

pytestmark = pytest.mark.django_db

MAIN = "info@shop.test"
HOURS = timedelta(hours=1)
LEAD_FIELDS = (
    "match_kind",
    "lease_id",
    "visitor_id",
    "session_id",
    "site_id",
    "address_id",
    "recipient",
    "first_contact",
    "channel",
    "source",
    "campaign",
    "created_at",
    "last_letter_at",
    "sender_email",
    "subject",
)


@pytest.fixture
def setup():
    return make_setup(original=MAIN, pool_size=8, hold_minutes=30)


@pytest.fixture
def heard():
    """Lead ids each event was emitted for, after commit."""
    got = {events.LEAD_CREATED: [], events.LEAD_UPDATED: []}
    listeners = {event: got[event].extend for event in got}
    for event, listener in listeners.items():
        events.subscribe_many(event, listener)
    yield got
    for event, listener in listeners.items():
        events._batch_listeners[event].remove(listener)


def store(setup, at, to, mailbox=None, folder="", uid=None, **kwargs) -> Letter:
    """A letter stored, not attributed."""
    mailbox = mailbox or setup.mailbox
    raw = letter_bytes(to=to, **kwargs)
    return store_letter(
        mailbox=mailbox, raw=raw, received_at=at, folder=folder, uidvalidity=1 if uid else None, uid=uid
    )


def world(setup):
    """Leases, sessions and letters for every rule: returns the letters of
    the batch in the order to attribute them (not their arrival order), and
    the leads that existed before it."""
    a = list(setup.pool.addresses.order_by("id"))
    v1 = visitor(setup, "v1", at=T0 - HOURS, source="google", channel="paid", utm_campaign="first")
    add_session(v1, T0 + minutes(5), source="facebook.com", channel="social")
    held(a[0], v1, T0, T0 + HOURS)
    # a[1]: taken over from v2 by v3 while v2's hold still ran.
    v2, v3 = visitor(setup, "v2"), visitor(setup, "v3", utm_campaign="taker")
    Lease.objects.create(
        pool=setup.pool,
        address=a[1],
        visitor=v2,
        started_at=T0,
        last_activity_at=T0,
        expires_at=T0 + minutes(40),
        released_at=T0 + minutes(10),
        end_reason=Lease.EndReason.TAKEN_OVER,
    )
    held(a[1], v3, T0 + minutes(10), T0 + minutes(70))
    held(a[2], visitor(setup, "v4", utm_campaign="after"), T0, T0 + HOURS)
    held(a[3], visitor(setup, "v5", utm_campaign="before"), T0, T0 + minutes(40))
    held(a[3], visitor(setup, "v6", at=T0 + 2 * HOURS, utm_campaign="since"), T0 + 2 * HOURS, T0 + 3 * HOURS)
    held(a[4], visitor(setup, "v7", utm_campaign="typo"), T0, T0 + HOURS)
    held(a[6], visitor(setup, "v8", utm_campaign="repeat"), T0 + 7 * HOURS, T0 + 40 * HOURS)
    held(a[7], visitor(setup, "v9", utm_campaign="delivered"), T0, T0 + 12 * HOURS)
    PoolExhaustion.objects.create(pool=setup.pool, at=T0 + minutes(100), policy=setup.pool.exhausted_policy)
    StaticAddress.objects.create(project=setup.project, name="Billboard", email="board@shop.test", source="bb")
    Exclusion.objects.create(project=setup.project, value="supplier.test")
    strict = Mailbox.objects.create(
        project=setup.project, name="Strict", host="127.0.0.1", username="strict@example.com", tracked_only=True
    )

    # Before the batch: two leads its letters join (by thread, by repeat period).
    before = [
        ingest_raw(
            mailbox=setup.mailbox,
            raw=letter_bytes(to=a[5].email, sender="old@client.test", message_id="<p1@client.test>"),
            received_at=T0 - 2 * HOURS,
        ).lead,
        ingest_raw(
            mailbox=setup.mailbox,
            raw=letter_bytes(to=MAIN, sender="repeat@client.test"),
            received_at=T0 + 3 * HOURS,
        ).lead,
    ]
    token = a[4].token
    typo = token[:-1] + ("a" if token[-1] != "a" else "b")
    s = store
    b1 = s(setup, T0 + minutes(10), a[0].email, sender="a@client.test", message_id="<b1@client.test>")
    reply_first = s(setup, T0 + 7 * HOURS, MAIN, sender="i@client.test", headers={"In-Reply-To": "<b12@client.test>"})
    later = s(setup, T0 + 9 * HOURS, a[6].email, sender="r@client.test", subject="later")
    order = [
        b1,
        s(setup, T0 + minutes(20), a[1].email, sender="b@client.test"),
        s(setup, T0 + 3 * HOURS, a[2].email, sender="c@client.test"),
        s(setup, T0 + minutes(90), a[3].email, sender="d@client.test"),
        s(setup, T0 + minutes(30), f"info+{typo}@shop.test", sender="e@client.test"),
        s(setup, T0 + minutes(31), "info+zzzzzz@shop.test", sender="f@client.test"),
        s(setup, T0 + minutes(32), "Board@Shop.test", sender="g@client.test"),
        s(setup, T0 + minutes(120), MAIN, sender="h@client.test"),
        s(setup, T0 + 5 * HOURS, MAIN, sender="repeat@client.test"),
        s(setup, T0 + 6 * HOURS, a[5].email, sender="a@client.test", headers={"In-Reply-To": "<b1@client.test>"}),
        reply_first,
        s(setup, T0 + 6.5 * HOURS, MAIN, sender="j@client.test", message_id="<b12@client.test>"),
        s(setup, T0 + 8 * HOURS, a[2].email, sender="k@client.test", headers={"References": "<x@y> <p1@client.test>"}),
        later,
        s(setup, T0 + 8 * HOURS, a[6].email, sender="r@client.test", subject="earlier"),
        s(setup, T0 + 33 * HOURS, a[6].email, sender="r@client.test", subject="a day later"),
        s(setup, T0 + 10 * HOURS, MAIN, sender="l@client.test", headers={"Auto-Submitted": "auto-replied"}),
        s(setup, T0 + 10 * HOURS, MAIN, sender=a[2].email),
        s(setup, T0 + 10 * HOURS, MAIN, sender="anna@mail.supplier.test"),
        s(setup, T0 + 10 * HOURS, MAIN, sender="spam@client.test", folder="Junk", uid=7),
        s(setup, T0 + 10 * HOURS, MAIN, mailbox=strict, sender="n@client.test"),
        s(setup, T0 + 11 * HOURS, MAIN, sender="m@client.test", headers={"Delivered-To": a[7].email}),
        s(setup, T0 + 10 * HOURS, MAIN, sender="old@client.test", subject="returning"),
        s(setup, T0 + 10 * HOURS, MAIN, sender="", subject="nobody"),
    ]
    return order, before


def outcome(order: list[Letter]) -> list[tuple]:
    """Per letter: its not-a-lead reason, and its lead's fields with the lead
    named by its first letter in the batch (or, for a lead from before the
    batch, by its id)."""
    letters = Letter.objects.in_bulk([letter.pk for letter in order])
    names = {}
    for letter in order:
        lead_id = letters[letter.pk].lead_id
        if lead_id is not None and lead_id not in names:
            names[lead_id] = f"made for letter {letter.pk}" if lead_id > BEFORE_MAX[0] else f"lead {lead_id}"
    leads = Lead.objects.in_bulk(list(names))
    rows = []
    for letter in order:
        stored = letters[letter.pk]
        assert stored.attributed_at is not None
        lead = leads.get(stored.lead_id)
        fields = tuple(getattr(lead, name) for name in LEAD_FIELDS) if lead else None
        rows.append((stored.not_lead_reason, names.get(stored.lead_id), fields))
    return rows


BEFORE_MAX = [0]


def undo(order: list[Letter], before: list[Lead]) -> None:
    """Back to the state before the batch was attributed."""
    Lead.objects.filter(pk__gt=BEFORE_MAX[0]).delete()
    for lead in before:
        Lead.objects.filter(pk=lead.pk).update(last_letter_at=lead.last_letter_at)
    for letter in order:
        Letter.objects.filter(pk=letter.pk).update(
            lead=None, attributed_at=None, not_lead_reason=letter.not_lead_reason
        )


def test_a_batch_gives_the_same_leads_and_match_kinds_as_letter_by_letter(
    setup, heard, django_capture_on_commit_callbacks
):
    order, before = world(setup)
    BEFORE_MAX[0] = max(lead.pk for lead in before)
    for letter in order:
        attribute_letter(letter.pk)
    one_by_one = outcome(order)
    undo(order, before)

    with django_capture_on_commit_callbacks(execute=True):
        attribute_letters([letter.pk for letter in order])
    batch = outcome(order)

    assert batch == one_by_one
    kinds = {fields[0] for _reason, _name, fields in batch if fields}
    assert kinds >= {
        MatchKind.LIVE_LEASE,
        MatchKind.AFTER_HOLD,
        MatchKind.REUSED_SINCE,
        MatchKind.TAKEN_OVER,
        MatchKind.CORRECTED,
        MatchKind.AMBIGUOUS,
        MatchKind.STATIC,
        MatchKind.EXHAUSTED,
        MatchKind.UNKNOWN,
    }
    # The letter to the billboard's static address: that channel's source, no visit.
    static = dict(zip(LEAD_FIELDS, batch[6][2], strict=True))
    assert (static["match_kind"], static["channel"], static["source"]) == (MatchKind.STATIC, "static", "bb")
    assert (static["lease_id"], static["visitor_id"], static["session_id"]) == (None, None, None)
    assert static["recipient"] == "board@shop.test"
    reasons = [reason for reason, _name, _fields in batch if reason]
    assert len(reasons) == 5  # auto-reply, own address, exclusion, spam folder, untracked
    names = [name for _reason, name, _fields in batch]
    # Joined inside the batch: the thread reply after its letter, the repeat
    # sender's earlier letter given after the later one; and the leads from
    # before the batch, by repeat period and by thread.
    assert names[9] == names[0]
    assert names[14] == names[13] != names[15]
    assert names[8] == f"lead {before[1].pk}"
    assert names[12] == f"lead {before[0].pk}"
    assert names[10] != names[11]  # the reply came before the letter it answers
    new_leads = set(Lead.objects.filter(pk__gt=BEFORE_MAX[0]).values_list("pk", flat=True))
    assert sorted(heard[events.LEAD_CREATED]) == sorted(new_leads)
    assert sorted(heard[events.LEAD_UPDATED]) == sorted(lead.pk for lead in before)


def test_letters_handed_over_as_stored_give_what_they_give_read_back(setup, django_capture_on_commit_callbacks):
    order, before = world(setup)
    BEFORE_MAX[0] = max(lead.pk for lead in before)
    with django_capture_on_commit_callbacks(execute=True):
        attribute_letters([letter.pk for letter in order])
    read_back = outcome(order)
    undo(order, before)

    with django_capture_on_commit_callbacks(execute=True):
        attribute_letters([letter.pk for letter in order], stored={letter.pk: letter for letter in order})

    assert outcome(order) == read_back


def test_a_letter_handed_over_as_stored_is_read_with_what_changed_since(setup):
    first = store(setup, T0, MAIN, sender="a@client.test", message_id="<same@client.test>")
    # A later batch stored another letter under its Message-ID and flagged both.
    Letter.objects.filter(pk=first.pk).update(message_id_reused=True, not_lead_reason="spam folder")
    assert (first.message_id_reused, first.not_lead_reason) == (False, "")

    attribute_letters([first.pk], stored={first.pk: first})

    stored = Letter.objects.get(pk=first.pk)
    assert (stored.lead_id, stored.not_lead_reason) == (None, "spam folder")
    assert first.message_id_reused is True


def test_a_letter_handed_over_as_stored_but_attributed_meanwhile_is_left_alone(setup):
    letter = store(setup, T0, MAIN, sender="a@client.test")
    lead = attribute_letter(letter.pk)
    assert attribute_letters([letter.pk], stored={letter.pk: letter}) == {}
    assert Lead.objects.get() == lead


def test_attributing_a_batch_twice_makes_no_more_leads(setup):
    letters = [store(setup, T0 + minutes(n), MAIN, sender=f"s{n % 3}@client.test") for n in range(6)]
    ids = [letter.pk for letter in letters]
    first = attribute_letters(ids)
    assert attribute_letters(ids) == {}
    assert Lead.objects.count() == 3
    assert dict(Letter.objects.filter(pk__in=ids).values_list("pk", "lead_id")) == first


def test_a_batch_costs_the_same_queries_whatever_its_size(setup):
    a = list(setup.pool.addresses.order_by("id"))
    for n, address in enumerate(a):
        held(address, visitor(setup, f"v{n}"), T0, T0 + timedelta(days=5))

    def batch(count: int, start) -> int:
        # Letters to live leases and to the main address, repeat senders and
        # thread replies, all inside the batch.
        letters = [
            store(
                setup,
                start + minutes(n),
                a[n % len(a)].email if n % 4 else MAIN,
                sender=f"s{n % 7}@client.test",
                message_id=f"<{start.day}.{n}@client.test>",
                headers={"In-Reply-To": f"<{start.day}.{n - 1}@client.test>"} if n % 5 == 0 else {},
            )
            for n in range(count)
        ]
        with CaptureQueriesContext(connection) as queries:
            attribute_letters([letter.pk for letter in letters])
        assert Letter.objects.filter(pk__in=[letter.pk for letter in letters], attributed_at=None).count() == 0
        return len(queries)

    small, large = batch(8, T0), batch(120, T0 + timedelta(days=3))
    assert large == small
    assert large <= 28  # 23, and 5 to keep the report's days (costs.rollups) exact in the same transaction
