"""The drain reads only the new events and the seconds around them, yet gives
the verdicts and recipient states the whole-history drain gave: checked
against a model of that drain (every batch's marks, then each touched
recipient's state recomputed from their whole history) over recipients with
long histories, bursts and hidden-link hits that straddle drains, a reply, and
recipients mixed in one batch."""

from collections import defaultdict
from datetime import UTC, datetime, timedelta

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from engagement import networks, storing, tokens, verdicts
from engagement.models import PERSON_VERDICTS, Event, EventKind, MessageRecipient, OpenState, Verdict
from tests.engagement_fixtures import (
    APPLE_IP,
    CHROME_UA,
    PERSON_IP,
    make_project,
    track,
)

pytestmark = pytest.mark.django_db

LETTER = (
    "<html><body><a href='https://shop.test/a'>a</a> <a href='https://shop.test/b'>b</a> "
    "<a href='https://shop.test/c'>c</a></body></html>"
)
KIND = {tokens.OPEN: EventKind.OPEN, tokens.CLICK: EventKind.CLICK, tokens.HONEYPOT: EventKind.HONEYPOT}


class WholeHistoryDrain:
    """The drain as it was: each event judged alone; a batch's honeypot and
    burst marks from a window before its earliest event; then each touched
    recipient's state from all of their events (an open inferred from clicks
    that are no longer a person's withdrawn)."""

    def __init__(self, message):
        self.message = message
        self.events = []  # dicts: sid, recipient, kind, verdict, reason, probable, inferred, link, at
        self.rows = defaultdict(lambda: {"state": OpenState.NONE, "first": None, "last": None, "replied": None})

    def store(self, entries):
        lists = networks.lists()
        created = []
        for sid, f in entries:
            at = datetime.fromtimestamp(float(f["t"]), UTC)
            judged = verdicts.judge(
                method=f["m"],
                user_agent=f["u"],
                ip=f["i"],
                lists=lists,
                sender_network=None,
                sent_at=self.message.created_at,
                at=at,
                self_window=timedelta(minutes=settings.ENGAGEMENT_SELF_MINUTES),
            )
            kind = KIND[int(f["k"])]
            verdict, reason = judged.verdict, judged.reason
            if kind == EventKind.HONEYPOT:
                verdict, reason = Verdict.SCANNER, "followed the hidden link"
            event = {
                "sid": sid,
                "recipient": int(f["r"]),
                "kind": kind,
                "verdict": verdict,
                "reason": reason,
                "probable": judged.probable,
                "inferred": False,
                "link": int(f["l"]) if kind == EventKind.CLICK else None,
                "at": at,
            }
            created.append(event)
        self.events += created
        clicked = {e["recipient"] for e in created if e["kind"] in (EventKind.CLICK, EventKind.HONEYPOT)}
        if clicked:
            earliest = min(e["at"] for e in created)
            self.mark_honeypot_neighbours(clicked, earliest)
            self.mark_bursts(clicked, earliest)
        self.settle({e["recipient"] for e in created})

    def reply(self, recipient_id, at):
        self.events.append(
            {
                "sid": None,
                "recipient": recipient_id,
                "kind": EventKind.REPLY,
                "verdict": Verdict.HUMAN,
                "reason": "reply letter",
                "probable": False,
                "inferred": False,
                "link": None,
                "at": at,
            }
        )
        self.settle({recipient_id})

    def mark_honeypot_neighbours(self, recipients, earliest):
        window = timedelta(seconds=settings.ENGAGEMENT_HONEYPOT_SECONDS)
        hits = [
            e
            for e in self.events
            if e["recipient"] in recipients and e["kind"] == EventKind.HONEYPOT and e["at"] >= earliest - window
        ]
        for hit in hits:
            for e in self.events:
                if (
                    e["recipient"] == hit["recipient"]
                    and e["kind"] == EventKind.CLICK
                    and abs(e["at"] - hit["at"]) <= window
                    and e["verdict"] != Verdict.SCANNER
                ):
                    e["verdict"], e["reason"] = Verdict.SCANNER, "near a followed hidden link"

    def mark_bursts(self, recipients, earliest):
        window = timedelta(seconds=settings.ENGAGEMENT_BURST_SECONDS)
        series = defaultdict(list)
        for e in sorted(self.events, key=lambda e: e["at"]):
            if e["recipient"] in recipients and e["kind"] == EventKind.CLICK and e["at"] >= earliest - window:
                series[e["recipient"]].append(e)
        burst = []
        for clicks in series.values():
            start = 0
            for end in range(len(clicks)):
                while clicks[end]["at"] - clicks[start]["at"] > window:
                    start += 1
                if len({e["link"] for e in clicks[start : end + 1]}) >= settings.ENGAGEMENT_BURST_LINKS:
                    burst += clicks[start : end + 1]
        for e in burst:
            if e["verdict"] != Verdict.SCANNER:
                e["verdict"], e["reason"] = Verdict.SCANNER, "burst of clicks on several links"

    def settle(self, recipients):
        for recipient_id in recipients:
            own = [e for e in self.events if e["recipient"] == recipient_id]
            opens = [e for e in own if e["kind"] == EventKind.OPEN]
            person_opens = [e["at"] for e in opens if e["verdict"] in PERSON_VERDICTS and not e["inferred"]]
            person_acts = [
                e["at"]
                for e in own
                if (e["kind"] == EventKind.CLICK and e["verdict"] in PERSON_VERDICTS) or e["kind"] == EventKind.REPLY
            ]
            replies = [e["at"] for e in own if e["kind"] == EventKind.REPLY]
            row = self.rows[recipient_id]
            standing = [e for e in opens if e["inferred"] and e["verdict"] in PERSON_VERDICTS]
            if not person_acts:
                # Its clicks turned out a scanner's: the open inferred from them is withdrawn.
                for e in standing:
                    e["verdict"], e["reason"] = Verdict.SCANNER, "inferred from clicks found to be a scanner's"
                standing = []
            state = OpenState.NONE
            if person_opens:
                state = OpenState.PERSON
            elif person_acts:
                state = OpenState.INFERRED
                if not standing:
                    self.events.append(
                        {
                            "sid": None,
                            "recipient": recipient_id,
                            "kind": EventKind.OPEN,
                            "verdict": Verdict.HUMAN,
                            "reason": "inferred from a click or reply",
                            "probable": False,
                            "inferred": True,
                            "link": None,
                            "at": min(person_acts) - timedelta(milliseconds=1),
                        }
                    )
            elif any(not e["inferred"] for e in opens):
                state = OpenState.MACHINE
            # From the whole history: opens are never relabelled, so only an open inferred from clicks
            # found to be a scanner's moves a state down.
            row["state"] = state
            if person_opens:
                row["first"], row["last"] = min(person_opens), max(person_opens)
            if replies:
                row["replied"] = min(replies)


class Sender:
    """Feeds the same batches to the drain (engagement.storing) and to the model."""

    def __init__(self, tracked):
        self.tracked = tracked
        self.model = WholeHistoryDrain(tracked.message)
        self.links = [link_url for _url, link_url in tracked.copies[0].links]
        self.link_ids = [link.pk for link in tracked.message.links.order_by("position")]
        self.sid = 0

    def entry(self, recipient, at, kind=tokens.OPEN, link=None, ua=CHROME_UA, ip=PERSON_IP, method="GET"):
        self.sid += 1
        fields = {
            "k": kind,
            "r": recipient.pk,
            "l": self.link_ids[link] if link is not None else 0,
            "m": method,
            "u": ua,
            "i": ip,
            "t": f"{at.timestamp():.3f}",
        }
        return (f"{self.sid}-0", {key: str(value) for key, value in fields.items()})

    def drain(self, entries):
        storing.store(entries)
        self.model.store(entries)
        self.compare()

    def reply(self, recipient, at):
        storing.reply_record(recipient=recipient, letter_id=None, at=at)
        self.model.reply(recipient.pk, at)
        self.compare()

    def compare(self):
        def key(e):
            return (e["recipient"], e["at"], e["kind"], e["inferred"])

        stored = [
            {
                "sid": e.stream_id,
                "recipient": e.recipient_id,
                "kind": e.kind,
                "verdict": e.verdict,
                "reason": e.reason,
                "probable": e.probable,
                "inferred": e.inferred,
                "link": e.link_id,
                "at": e.at,
            }
            for e in Event.objects.filter(message=self.tracked.message)
        ]
        assert sorted(stored, key=key) == sorted(self.model.events, key=key)
        for recipient in MessageRecipient.objects.filter(message=self.tracked.message):
            row = self.model.rows[recipient.pk]
            assert (
                recipient.open_state,
                recipient.first_opened_at,
                recipient.last_opened_at,
                recipient.replied_at,
            ) == (
                row["state"],
                row["first"],
                row["last"],
                row["replied"],
            ), recipient.email


def history(sender, recipient, start, count, *, machine_only=False):
    """`count` events of a recipient, twenty minutes apart from `start`: opens
    by a person and by Apple, clicks on the three links, every 50th a hit on
    the hidden link with a click 3 s after it, every 77th a second click 1 s
    after on another link (a burst). Drained in batches of 500."""
    entries = []
    for i in range(count):
        at = start + timedelta(minutes=20 * i)
        if machine_only or i % 4 == 1:
            entries.append(sender.entry(recipient, at, ua="Mozilla/5.0", ip=APPLE_IP))
        elif i % 4 == 2:
            entries.append(sender.entry(recipient, at, tokens.CLICK, link=i % 3))
            if i % 77 == 2:
                entries.append(sender.entry(recipient, at + timedelta(seconds=1), tokens.CLICK, link=(i + 1) % 3))
        elif i % 50 == 0:
            entries.append(sender.entry(recipient, at, tokens.HONEYPOT))
            entries.append(sender.entry(recipient, at + timedelta(seconds=3), tokens.CLICK, link=0))
        else:
            entries.append(sender.entry(recipient, at))
    for first in range(0, len(entries), 500):
        sender.drain(entries[first : first + 500])


def test_recipients_with_long_histories_get_the_verdicts_the_whole_history_drain_gave():
    project, _key = make_project()
    now = timezone.now()
    tracked = track(
        project,
        html=LETTER,
        recipients=["heavy@client.test", "machines@client.test", "fresh@client.test"],
        now=now - timedelta(days=40),
    )
    heavy, machines, fresh = (copy.recipient for copy in tracked.copies)
    sender = Sender(tracked)
    history(sender, heavy, now - timedelta(days=30), 2000)
    history(sender, machines, now - timedelta(days=30), 600, machine_only=True)
    heavy.refresh_from_db()
    machines.refresh_from_db()
    assert heavy.open_state == OpenState.PERSON and machines.open_state == OpenState.MACHINE
    t = (now - timedelta(hours=1)).replace(microsecond=0)
    s = timedelta(seconds=1)
    entry = sender.entry
    # A burst that straddles two drains; another recipient's older event in the same batch.
    sender.drain([entry(heavy, t), entry(heavy, t + 100 * s, tokens.CLICK, link=0)])
    sender.drain(
        [entry(fresh, t - 600 * s, ua="Mozilla/5.0", ip=APPLE_IP), entry(heavy, t + 101 * s, tokens.CLICK, link=1)]
    )
    # A click, then in the next drain the hidden link 5 s after it, then a click 7 s after that.
    sender.drain([entry(heavy, t + 200 * s, tokens.CLICK, link=2)])
    sender.drain([entry(heavy, t + 205 * s, tokens.HONEYPOT)])
    sender.drain([entry(heavy, t + 212 * s, tokens.CLICK, link=0), entry(heavy, t + 300 * s, tokens.CLICK, link=1)])
    # Machines only so far: a person's click infers the open; a person's open later upgrades it.
    sender.drain([entry(machines, t + 50 * s, tokens.CLICK, link=2), entry(fresh, t, tokens.CLICK, link=0)])
    sender.drain([entry(machines, t + 400 * s), entry(fresh, t + 1 * s, tokens.CLICK, link=1)])
    sender.reply(heavy, t + 500 * s)
    sender.reply(machines, t - 3600 * s)  # a reply older than every open of theirs so far

    clicks = {e.at: e for e in Event.objects.filter(recipient=heavy, at__gte=t, kind=EventKind.CLICK)}
    assert [(clicks[t + n * s].verdict, clicks[t + n * s].reason) for n in (100, 101, 200, 212, 300)] == [
        (Verdict.SCANNER, "burst of clicks on several links"),
        (Verdict.SCANNER, "burst of clicks on several links"),
        (Verdict.SCANNER, "near a followed hidden link"),
        (Verdict.SCANNER, "near a followed hidden link"),
        (Verdict.HUMAN, ""),
    ]
    machines.refresh_from_db()
    assert machines.open_state == OpenState.PERSON and machines.first_opened_at == t + 400 * s
    assert Event.objects.filter(recipient=machines, inferred=True).get().at == t + 50 * s - timedelta(milliseconds=1)
    fresh.refresh_from_db()
    # Its first click looked like a person's when drained (an inferred open); the next, a second later on
    # another link, made both a burst: the inferred open is withdrawn (relabelled, kept), Apple's open stays.
    assert fresh.open_state == OpenState.MACHINE
    assert {e.verdict for e in Event.objects.filter(recipient=fresh, kind=EventKind.CLICK)} == {Verdict.SCANNER}
    [withdrawn] = Event.objects.filter(recipient=fresh, inferred=True)
    assert withdrawn.verdict == Verdict.SCANNER


def test_a_drain_reads_no_earlier_event_outside_the_rules_windows():
    project, _key = make_project()
    now = timezone.now()
    tracked = track(project, html=LETTER, recipients=["heavy@client.test"], now=now - timedelta(days=40))
    heavy = tracked.copies[0].recipient
    sender = Sender(tracked)
    history(sender, heavy, now - timedelta(days=30), 600)
    t = now - timedelta(hours=1)
    batch = [
        sender.entry(heavy, t),
        sender.entry(heavy, t, tokens.CLICK, link=0),
        sender.entry(heavy, t, tokens.HONEYPOT),
    ]
    with CaptureQueriesContext(connection) as queries:
        storing.store(batch)
    reads = [
        q["sql"] for q in queries.captured_queries if q["sql"].startswith("SELECT") and "engagement_event" in q["sql"]
    ]
    assert reads
    for sql in reads:
        # By id or stream id (the new events), or from a time on (a window before the new ones).
        assert '"engagement_event"."id" IN' in sql or '"stream_id" IN' in sql or '"at" >=' in sql, sql


def test_a_hidden_link_hit_marks_the_clicks_within_ten_seconds_either_side_and_no_further():
    project, _key = make_project()
    now = timezone.now().replace(microsecond=0)
    tracked = track(project, html=LETTER, recipients=["anna@client.test"], now=now - timedelta(hours=2))
    anna = tracked.copies[0].recipient
    sender = Sender(tracked)
    hit, s = now - timedelta(hours=1), timedelta(seconds=1)
    # Clicks on one link (never a burst), then the hidden link in a later drain.
    offsets = (-70, -11, -10, 10, 11, 70)
    for offset in offsets:
        sender.drain([sender.entry(anna, hit + offset * s, tokens.CLICK, link=0)])
    sender.drain([sender.entry(anna, hit, tokens.HONEYPOT)])
    clicks = {e.at: e.verdict for e in Event.objects.filter(recipient=anna, kind=EventKind.CLICK)}
    assert [clicks[hit + offset * s] for offset in offsets] == [
        Verdict.HUMAN,
        Verdict.HUMAN,
        Verdict.SCANNER,
        Verdict.SCANNER,
        Verdict.HUMAN,
        Verdict.HUMAN,
    ]
    anna.refresh_from_db()
    assert anna.open_state == OpenState.INFERRED  # the clicks outside the window still infer the open
