"""attribution: which lease, visitor and session a letter belongs to, the repeat
period, threads, letters that are not leads, and first contact."""

from datetime import UTC, datetime, timedelta

import pytest

from attribution.models import Lead, MatchKind
from attribution.services import attribute_letter
from mailbox_sync.models import Letter, Mailbox
from mailbox_sync.services import ingest_raw, store_letter
from substitution.models import Lease, StaticAddress
from substitution.services import lease_acquire
from tests.factories import letter_bytes, make_setup, minutes
from tracker.models import Channel, Session, Visitor

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)
MAIN = "info@shop.test"


@pytest.fixture
def setup():
    return make_setup(original=MAIN, pool_size=5, hold_minutes=30)


@pytest.fixture
def addresses(setup):
    return list(setup.pool.addresses.order_by("id"))


def visitor(setup, vid, at=T0, **session):
    """A visitor with one session started at `at`; session fields as given."""
    person = Visitor.objects.create(site=setup.site, vid=vid, created_at=at, last_seen_at=at)
    add_session(person, at, **session)
    return person


def add_session(person, at, **fields):
    fields.setdefault("channel", Channel.DIRECT)
    return Session.objects.create(visitor=person, started_at=at, last_seen_at=at, **fields)


def held(address, person, start, end):
    """A finished lease: the address was the visitor's from `start` to `end`."""
    return Lease.objects.create(
        pool=address.pool,
        address=address,
        visitor=person,
        started_at=start,
        last_activity_at=end - minutes(30),
        expires_at=end,
        released_at=end,
        end_reason=Lease.EndReason.EXPIRED,
    )


def deliver(setup, at, to, **kwargs):
    """A letter that reached the mailbox at `at`, stored and attributed."""
    return ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to=to, **kwargs), received_at=at)


# --- Which lease, visitor and session -----------------------------------------


def test_a_letter_to_a_live_lease_becomes_a_lead_with_the_sessions_source(setup):
    person = visitor(
        setup,
        "v1",
        channel=Channel.PAID,
        source="google",
        utm_source="google",
        utm_medium="cpc",
        utm_campaign="autumn",
        keyword="buy bricks",
        landing_url="https://shop.test/?utm_source=google",
    )
    allocation = lease_acquire(pool=setup.pool, visitor=person, now=T0)
    letter = deliver(setup, T0 + minutes(10), allocation.email, subject="Bricks?")
    lead = letter.lead
    assert lead.match_kind == MatchKind.LIVE_LEASE
    assert (lead.channel, lead.source, lead.medium, lead.campaign) == (Channel.PAID, "google", "cpc", "autumn")
    assert lead.keyword == "buy bricks"
    assert lead.visitor == person
    assert lead.session == person.sessions.get()
    assert lead.lease == allocation.lease
    assert lead.site == setup.site
    assert lead.recipient == allocation.email
    assert (lead.subject, lead.sender_email) == ("Bricks?", "ivan@client.test")
    assert lead.created_at == lead.last_letter_at == T0 + minutes(10)


def test_a_letter_after_the_hold_ended_goes_to_the_last_holder(setup, addresses):
    person = visitor(setup, "v1", utm_campaign="summer", channel=Channel.EMAIL)
    lease = held(addresses[0], person, T0, T0 + minutes(40))
    lead = deliver(setup, T0 + timedelta(hours=3), addresses[0].email).lead
    assert lead.match_kind == MatchKind.AFTER_HOLD
    assert (lead.lease, lead.visitor, lead.campaign) == (lease, person, "summer")


def test_a_letter_held_by_another_visitor_since_is_marked_reused_since(setup, addresses):
    first = visitor(setup, "v1", utm_campaign="first")
    second = visitor(setup, "v2", at=T0 + timedelta(hours=2), utm_campaign="second")
    held(addresses[0], first, T0, T0 + minutes(40))
    held(addresses[0], second, T0 + timedelta(hours=2), T0 + timedelta(hours=3))
    lead = deliver(setup, T0 + timedelta(hours=1), addresses[0].email).lead
    assert lead.match_kind == MatchKind.REUSED_SINCE
    assert (lead.visitor, lead.campaign) == (first, "first")


def test_the_same_visitor_holding_the_address_again_is_still_after_hold(setup, addresses):
    person = visitor(setup, "v1")
    first = held(addresses[0], person, T0, T0 + minutes(40))
    held(addresses[0], person, T0 + timedelta(hours=2), T0 + timedelta(hours=3))
    lead = deliver(setup, T0 + timedelta(hours=1), addresses[0].email).lead
    assert (lead.match_kind, lead.lease) == (MatchKind.AFTER_HOLD, first)


def test_a_letter_to_the_plain_main_address_is_a_lead_of_unknown_source(setup):
    lead = deliver(setup, T0, MAIN).lead
    assert (lead.match_kind, lead.channel) == (MatchKind.UNKNOWN, Channel.UNKNOWN)
    assert (lead.recipient, lead.visitor, lead.session, lead.address) == (MAIN, None, None, None)


@pytest.mark.parametrize("case", ["Board@Shop.test", "Anna <anna@client.test>, board@shop.test"], ids=["to", "among"])
def test_a_letter_to_a_static_channel_address_gets_that_channels_source(setup, case):
    StaticAddress.objects.create(
        project=setup.project,
        name="Billboard, Tverskaya st.",
        email="board@shop.test",
        channel="offline",
        source="billboard",
        medium="outdoor",
        campaign="spring",
    )
    lead = deliver(setup, T0, case).lead
    assert lead.match_kind == MatchKind.STATIC
    assert (lead.channel, lead.source, lead.medium, lead.campaign) == ("offline", "billboard", "outdoor", "spring")
    assert lead.recipient == "board@shop.test"
    # No web visit behind it.
    assert (lead.lease, lead.visitor, lead.session, lead.address) == (None, None, None, None)


def test_a_static_channel_address_without_a_source_is_named_by_the_address(setup):
    StaticAddress.objects.create(project=setup.project, name="Yandex Maps card", email="maps@shop.test")
    lead = deliver(setup, T0, "maps@shop.test").lead
    assert (lead.match_kind, lead.channel, lead.source) == (MatchKind.STATIC, "static", "Yandex Maps card")


def test_delivered_to_wins_over_to_and_to_over_cc(setup, addresses):
    a, b, c = addresses[:3]
    for n, address in enumerate((a, b, c)):
        held(address, visitor(setup, f"v{n}", utm_campaign=f"c{n}"), T0, T0 + timedelta(hours=5))
    by_delivered = deliver(setup, T0 + minutes(5), a.email, headers={"Delivered-To": b.email, "Cc": c.email})
    by_to = deliver(setup, T0 + minutes(6), a.email, sender="x@client.test", headers={"Cc": c.email})
    by_original = deliver(setup, T0 + minutes(7), MAIN, sender="y@client.test", headers={"X-Original-To": c.email})
    assert (by_delivered.lead.address, by_delivered.lead.campaign) == (b, "c1")
    assert (by_to.lead.address, by_to.lead.campaign) == (a, "c0")
    assert (by_original.lead.address, by_original.lead.campaign) == (c, "c2")


def test_an_untracked_delivered_to_gives_way_to_a_tracked_to(setup, addresses):
    held(addresses[0], visitor(setup, "v1", utm_campaign="deep"), T0, T0 + timedelta(hours=1))
    lead = deliver(setup, T0 + minutes(5), addresses[0].email, headers={"Delivered-To": MAIN}).lead
    assert (lead.match_kind, lead.address, lead.campaign) == (MatchKind.LIVE_LEASE, addresses[0], "deep")


def test_the_session_current_when_the_letter_arrived_is_used(setup, addresses):
    person = visitor(setup, "v1", utm_source="google", source="google", channel=Channel.PAID)
    later = add_session(person, T0 + timedelta(hours=1), source="facebook.com", channel=Channel.SOCIAL)
    held(addresses[0], person, T0, T0 + timedelta(hours=3))
    early = deliver(setup, T0 + minutes(30), addresses[0].email, sender="a@client.test").lead
    late = deliver(setup, T0 + minutes(90), addresses[0].email, sender="b@client.test").lead
    assert (early.session, early.source, early.channel) == (person.sessions.earliest("started_at"), "google", "paid")
    assert (late.session, late.source, late.channel) == (later, "facebook.com", "social")


def test_a_token_one_edit_away_from_an_issued_token_is_corrected(setup, addresses):
    person = visitor(setup, "v1", utm_campaign="typo")
    lease = held(addresses[0], person, T0, T0 + timedelta(hours=1))
    token = addresses[0].token
    typo = token[:-1] + ("a" if token[-1] != "a" else "b")
    lead = deliver(setup, T0 + minutes(5), f"info+{typo}@shop.test").lead
    assert (lead.match_kind, lead.address, lead.lease) == (MatchKind.CORRECTED, addresses[0], lease)


# --- Repeat period and threads ------------------------------------------------


def test_the_repeat_period_example_of_the_design_makes_two_leads(setup):
    times = [T0, T0 + timedelta(hours=1), T0 + timedelta(days=1, hours=1)]  # 31 Jul 12:00, 13:00, 1 Aug 13:00
    letters = [deliver(setup, at, MAIN) for at in times]
    first, second = Lead.objects.order_by("created_at")
    assert (first.created_at, second.created_at) == (times[0], times[2])
    assert [letter.lead for letter in letters] == [first, first, second]
    assert first.last_letter_at == times[1]


@pytest.mark.parametrize(("gap", "leads"), [(timedelta(days=1), 2), (timedelta(days=1) - minutes(1), 1)])
def test_a_gap_of_exactly_the_repeat_period_starts_a_new_lead(setup, gap, leads):
    deliver(setup, T0, MAIN)
    deliver(setup, T0 + gap, MAIN)
    assert Lead.objects.count() == leads


def test_the_repeat_period_is_per_mailbox(setup):
    Mailbox.objects.filter(pk=setup.mailbox.pk).update(repeat_period=timedelta(hours=2))
    setup.mailbox.refresh_from_db()
    deliver(setup, T0, MAIN)
    deliver(setup, T0 + minutes(90), MAIN)
    deliver(setup, T0 + minutes(90 + 120), MAIN)
    assert Lead.objects.count() == 2


def test_another_sender_or_another_address_makes_its_own_lead(setup, addresses):
    deliver(setup, T0, MAIN)
    deliver(setup, T0 + minutes(1), MAIN, sender="other@client.test")
    deliver(setup, T0 + minutes(2), addresses[0].email)
    assert Lead.objects.count() == 3


@pytest.mark.parametrize("header", ["In-Reply-To", "References"])
def test_a_thread_reply_joins_its_lead_even_after_the_repeat_period(setup, addresses, header):
    first = deliver(setup, T0, MAIN, message_id="<first@client.test>")
    reply = deliver(
        setup,
        T0 + timedelta(days=5),
        addresses[1].email,
        subject="Re: Price list",
        headers={header: "<first@client.test>"},
    )
    assert reply.lead == first.lead
    assert Lead.objects.count() == 1
    assert Lead.objects.get().last_letter_at == T0 + timedelta(days=5)


# --- Not leads ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("sender", "headers", "reason"),
    [
        ("ivan@client.test", {"Auto-Submitted": "auto-replied"}, "auto-reply"),
        ("ivan@client.test", {"Precedence": "bulk"}, "bulk"),
        ("ivan@client.test", {"List-Id": "<news.client.test>"}, "List-Id"),
        ("ivan@client.test", {"List-ID": "<news.client.test>"}, "List-Id"),
        ("MAILER-DAEMON@mx.client.test", {}, "bounce"),
        ("ivan@client.test", {"X-Spam-Flag": "YES"}, "spam"),
        ("Shop <info@shop.test>", {}, "own address"),
    ],
)
def test_these_letters_are_stored_but_are_not_leads(setup, addresses, sender, headers, reason):
    held(addresses[0], visitor(setup, "v1"), T0, T0 + timedelta(hours=1))
    letter = deliver(setup, T0 + minutes(5), addresses[0].email, sender=sender, headers=headers)
    assert letter.lead is None
    assert reason in letter.not_lead_reason
    assert letter.attributed_at is not None
    assert not Lead.objects.exists()


def test_a_pool_address_as_sender_is_not_a_lead(setup, addresses):
    letter = deliver(setup, T0, MAIN, sender=addresses[2].email)
    assert "own address" in letter.not_lead_reason
    assert not Lead.objects.exists()


def test_auto_submitted_no_is_a_lead(setup):
    assert deliver(setup, T0, MAIN, headers={"Auto-Submitted": "no"}).lead is not None


def test_a_letter_read_from_a_spam_folder_is_not_a_lead(setup):
    raw = letter_bytes(to=MAIN)
    letter = store_letter(mailbox=setup.mailbox, raw=raw, received_at=T0, folder="Junk", uidvalidity=1, uid=1)
    assert attribute_letter(letter.pk) is None
    letter.refresh_from_db()
    assert (letter.lead, letter.not_lead_reason) == (None, "spam folder")


def test_tracked_only_leaves_letters_to_untracked_addresses_out(setup, addresses):
    Mailbox.objects.filter(pk=setup.mailbox.pk).update(tracked_only=True)
    setup.mailbox.refresh_from_db()
    untracked = deliver(setup, T0, MAIN)
    tracked = deliver(setup, T0 + minutes(1), addresses[0].email, sender="other@client.test")
    assert untracked.lead is None
    assert "untracked" in untracked.not_lead_reason
    assert tracked.lead is not None
    assert Lead.objects.count() == 1


# --- Idempotence and first contact --------------------------------------------


def test_attributing_a_letter_twice_makes_one_lead(setup):
    letter = store_letter(mailbox=setup.mailbox, raw=letter_bytes(to=MAIN), received_at=T0)
    first = attribute_letter(letter.pk)
    again = attribute_letter(letter.pk)
    assert first is not None
    assert again == first
    assert Lead.objects.count() == 1
    assert list(Letter.objects.values_list("lead_id", flat=True)) == [first.pk]


def test_first_contact_is_true_only_for_a_sender_who_never_wrote_before(setup, addresses):
    first = deliver(setup, T0, MAIN).lead
    returning = deliver(setup, T0 + timedelta(days=3), addresses[0].email).lead
    stranger = deliver(setup, T0 + timedelta(days=3), MAIN, sender="new@client.test").lead
    assert first.first_contact is True
    assert returning.first_contact is False
    assert returning != first
    assert stranger.first_contact is True


def test_a_sender_or_domain_on_the_exclusion_list_is_not_a_lead(setup):
    from attribution.models import Exclusion
    from mailbox_sync.services import ingest_raw
    from tests.factories import letter_bytes

    Exclusion.objects.create(project=setup.project, value="@Supplier.test")
    Exclusion.objects.create(project=setup.project, value="boss@partner.test")
    cases = {
        "anna@supplier.test": "sender on the exclusion list",
        "bob@mail.supplier.test": "sender on the exclusion list",
        "boss@partner.test": "sender on the exclusion list",
        "other@partner.test": "",
        "anna@notsupplier.test": "",
    }
    for sender, reason in cases.items():
        letter = ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to="info@shop.test", sender=sender))
        assert letter.not_lead_reason == reason, sender
        assert (letter.lead_id is None) == bool(reason), sender
