"""One simulation: a plan's traffic through the real services, in virtual time.

The clock is virtual: every service is handed the simulated time (`now`,
the letters' arrival time); nothing sleeps and nothing reads the wall clock
to decide. What runs is what production runs:

- each page view and heartbeat is a `tracker.services.collect` call, which
  resolves the site, records the session and asks `substitution.visits.
  substitute` for the visit's address (a new visitor through the first-visit
  statement, a known one through the fast path or `lease_acquire`: leasing,
  extension, the returning visitor's previous address, LRU, the exhaustion
  policy);
- every `beat_minutes` virtual minutes the beat's work for the pool runs:
  the activity written behind is flushed and the leases whose hold ran out
  are released (`substitution.services.release_expired_leases`);
- every `sync_minutes` the letters that reached the mailbox meanwhile are
  stored (`mailbox_sync.store.store_letters`, raw RFC 822 bytes, arrival time
  as IMAP INTERNALDATE) and attributed (`attribution.services.
  attribute_letters`), as a mailbox sync does.

Where Redis is configured (as in production), a returning visitor's page
views and heartbeats go through collect's fast path as real ones do: answered
from Redis, their activity written behind and flushed to PostgreSQL by
`substitution.activity.flush` (production flushes every
ACTIVITY_FLUSH_SECONDS) every `beat_minutes` virtual minutes, before the
leases whose hold ran out are released, and before any letter is read. The
fast path's checks (database expiry half a hold away, session timeout) read
the virtual clock; its keys' real-time TTLs only decide when Redis forgets
them. Without Redis, and for pools that "take over" (the victim is the lease
least recently active in the database, which must be exact), every page view
is written through, as the embedded default runs.

The beat (flush and release) every `beat_minutes`, not every minute, changes
no decision: a lease's release time is its expiry whenever it is released,
and every allocation releases what has expired first (the first-visit
statement leaves to it any visitor an expired lease could matter to), so
releasing later changes which address no one takes; a lease whose activity
is still in Redis is never taken for expired by a returning visitor's slow
path, because the fast path only answers while the database's expiry is half
a hold away, and `beat_minutes` is at most half the hold.

Heartbeats: the snippet beats every minute while the page is visible. A
heartbeat changes a lease only by moving its expiry; when nothing else can
happen to the pool in between, one beat every `step` minutes (less than the
hold and the session timeout) leaves every decision the same: a lease never
looks expired while its visitor is active, and the visit's last activity is
always sent, so releases, LRU order and attribution see the same times. With
"take over" the least recently active lease is the victim, so there every
minute's beat is sent (`step` = 1). A test compares the verdicts of both
against every minute's beat.

Each request commits on its own, as collect's requests do, with
synchronous_commit off for the run (the scratch project is deleted at the
end; nothing of it needs to survive a crash). (One transaction for the whole
run, rolled back, was tried: while it is open no superseded version of the
pool's address rows can be pruned, so every allocation's scan for the free
address released longest ago grew with the run, quadratic in the number of
visitors. One transaction per virtual minute turned every statement of
collect's into a savepoint pair and held the flush's row locks on real
visitors' leases for the whole minute.) The sandbox and all it wrote are
deleted at the end.
"""

import bisect
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.utils import format_datetime

from django.conf import settings
from django.db import connection, transaction
from django.test.utils import override_settings

from attribution.services import attribute_letters
from mailbox_sync.models import Letter
from mailbox_sync.store import Incoming, store_letters
from substitution.activity import flush as flush_activity
from substitution.activity import forget_many as forget_answers
from substitution.activity import visit_key
from substitution.models import Lease, Pool, PoolExhaustion
from substitution.services import release_expired_leases
from tracker.services import CollectRequest, collect

from .sandbox import DOMAIN, PoolShape, make_sandbox, remove_leftovers, remove_sandbox
from .scenario import Plan
from .verdicts import Truth, Verdicts, judge

USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
)
SYNC_MINUTES = 10
BEAT_MINUTES = 5  # at most; and at most half the hold (see the module's docstring)


def beat_minutes(shape: PoolShape) -> int:
    """Minutes between the beats (flush and release) of a run."""
    return max(1, min(BEAT_MINUTES, shape.hold_minutes // 2))


def activity_step(shape: PoolShape) -> float:
    """Minutes between the heartbeats sent (see the module's docstring)."""
    if shape.exhausted_policy == Pool.ExhaustedPolicy.TAKE_OVER:
        return 1.0
    timeout = settings.SESSION_TIMEOUT.total_seconds() / 60
    return max(1.0, min(shape.hold_minutes, timeout) / 2)


def requests_of(plan: Plan, step: float) -> list[tuple[float, int, int, str]]:
    """The requests sent for the plan, in time order: (minute, visitor, visit,
    kind), kind "land", "view" or "beat". A visit's activity is its landing,
    its page views and a beat every minute until it ends; of that, the
    landing, the last activity and enough in between that no gap exceeds
    `step` are sent (the latest activity within `step` of the last one sent,
    a page view sent as a page view)."""
    out = []
    for visitor, visits in enumerate(plan.visits):
        for number, visit in enumerate(visits):
            out.append((visit.start, visitor, number, "land"))
            views = [*visit.page_views, visit.end]
            last, i = visit.start, 0
            while last < visit.end:
                limit = min(last + step, visit.end)
                while i < len(views) and views[i] <= limit:
                    i += 1
                # The latest page view within reach, else the beat at the limit.
                view = views[i - 1] if i and views[i - 1] > last else None
                if limit == visit.end:
                    at, kind = visit.end, "beat"
                elif view is not None and limit - view < 1:
                    at, kind = view, "view"
                else:
                    at, kind = limit, "beat"
                out.append((at, visitor, number, kind))
                last = at
    out.sort(key=lambda r: (r[0], r[1]))
    return out


@dataclass
class _Visitor:
    vid: str | None = None
    shown: list[tuple[float, str]] = field(default_factory=list)  # (minute, address; "" = the original)
    last_of_visit: dict[int, tuple[float, str]] = field(default_factory=dict)


class Simulation:
    """Run a plan against one pool shape; `run()` returns the verdicts."""

    def __init__(
        self,
        plan: Plan,
        shape: PoolShape,
        start: datetime,
        progress: Callable[[float], None] | None = None,
        *,
        step: float | None = None,
        written_behind: bool | None = None,
        on_minute: Callable[[int], None] | None = None,
    ):
        self.plan = plan
        self.shape = shape
        self.start = start
        self.progress = progress
        self.step = step or activity_step(shape)  # 1: every minute's beat, as the snippet sends them
        self.beat_minutes = beat_minutes(shape)
        if written_behind is None:
            written_behind = bool(settings.REDIS_URL) and shape.exhausted_policy != Pool.ExhaustedPolicy.TAKE_OVER
        self.written_behind = written_behind
        # Called with the virtual minute after each minute's work (a bench's
        # stand-in for PostgreSQL's autovacuum hangs here; the runner itself
        # never maintains tables, which in production are everyone's).
        self.on_minute = on_minute
        self.visitors = [_Visitor() for _ in plan.visits]
        self.truths: list[Truth] = []
        self.letter_ids: list[int] = []
        self.requests = 0
        self.seconds = 0.0
        self.timings: dict[str, float] = {}  # seconds spent, by part of the run

    @contextmanager
    def _timed(self, part: str):
        started = time.perf_counter()
        try:
            yield
        finally:
            self.timings[part] = self.timings.get(part, 0.0) + time.perf_counter() - started

    def at(self, minute: float) -> datetime:
        return self.start + timedelta(minutes=minute)

    def run(self) -> Verdicts:
        started = time.perf_counter()
        redis_url = settings.REDIS_URL if self.written_behind else ""
        with override_settings(REDIS_URL=redis_url, COLLECT_RATE_LIMIT_PER_MINUTE=10**9):
            remove_leftovers()
            with transaction.atomic():
                self.sandbox = make_sandbox(self.shape)
            try:
                with commits_without_waiting():
                    self._drive()
                    with self._timed("flush"):
                        flush_activity()  # nothing of the run left in Redis
                with self._timed("verdicts"), transaction.atomic():
                    vids = [state.vid for state in self.visitors]
                    verdicts = judge(self.sandbox.site, vids, self.truths, self.letter_ids, self.start)
                    verdicts.exhaustions = PoolExhaustion.objects.filter(pool=self.sandbox.pool).count()
                    verdicts.taken_over = Lease.objects.filter(
                        pool=self.sandbox.pool, end_reason=Lease.EndReason.TAKEN_OVER
                    ).count()
            finally:
                with self._timed("clean-up"):
                    self._forget_answers()
                    remove_sandbox(self.sandbox)
        self.seconds = time.perf_counter() - started
        verdicts.requests = self.requests
        verdicts.seconds = self.seconds
        return verdicts

    def _drive(self) -> None:
        requests = requests_of(self.plan, self.step)
        letters = self.plan.letters
        end = max([r[0] for r in requests[-1:]] + [letter.arrives for letter in letters[-1:]] + [1])
        next_request = next_letter = 0
        last_release = last_sync = -1e9
        minute = 0
        while next_request < len(requests) or next_letter < len(letters):
            # Minutes with nothing to do are skipped: releasing later changes no
            # decision (an allocation releases what has expired first).
            upcoming = min(
                requests[next_request][0] if next_request < len(requests) else end,
                letters[next_letter].arrives if next_letter < len(letters) else end,
            )
            minute = max(minute, int(upcoming))
            horizon = minute + 1
            while next_request < len(requests) and requests[next_request][0] < horizon:
                with self._timed("requests"):
                    self._request(*requests[next_request])
                next_request += 1
            # The beat's work: activity written behind reaches the database,
            # then the leases whose hold ran out are released.
            if horizon - last_release >= self.beat_minutes:
                with self._timed("flush"):
                    flush_activity()
                with self._timed("release"):
                    release_expired_leases(self.sandbox.pool, self.at(horizon))
                last_release = horizon
            if horizon - last_sync >= SYNC_MINUTES or next_request >= len(requests):
                arrived = next_letter
                while arrived < len(letters) and letters[arrived].arrives < horizon:
                    arrived += 1
                if next_request >= len(requests):
                    # Past the last request no lease starts or ends but at its
                    # expiry, which is all attribution reads of a lease, so the
                    # letters still to come are attributed as they would be
                    # one sync at a time: in one sync.
                    arrived = len(letters)
                if arrived > next_letter:
                    with self._timed("flush"):
                        flush_activity()
                    with self._timed("letters"):
                        self._sync(next_letter, arrived)
                    next_letter = arrived
                last_sync = horizon
            minute = horizon
            if self.on_minute:
                with self._timed("on_minute"):
                    self.on_minute(minute)
            if self.progress:
                self.progress(min(minute / end, 1.0))

    def _forget_answers(self) -> None:
        """The fast path's answers cached for the run's visitors (they would
        only expire by Redis's clock)."""
        if self.written_behind and hasattr(self, "sandbox"):
            forget_answers([visit_key(self.sandbox.site.pk, state.vid) for state in self.visitors if state.vid])

    def _request(self, minute: float, visitor: int, number: int, kind: str) -> None:
        state = self.visitors[visitor]
        visit = self.plan.visits[visitor][number]
        page = f"https://{DOMAIN}/"
        referrer = visit.referrer
        if kind == "land":
            page += visit.query
        else:
            page += "catalogue"
            referrer = f"https://{DOMAIN}/"
        request = CollectRequest(
            site_key=self.sandbox.site.site_key,
            vid=state.vid,
            url=page,
            ref=referrer,
            screen="1920x1080",
            lang="ru",
            ga="",
            ym="",
            consent=True,
            heartbeat=kind == "beat",
        )
        answer = collect(
            request=request, origin=self.sandbox.origin, user_agent=USER_AGENT, now=self.at(minute), ip=_ip(visitor)
        )
        self.requests += 1
        state.vid = answer["vid"]
        email = next((sub["email"] for sub in answer["subs"] if sub["block"] == self.sandbox.block.pk), "")
        state.shown.append((minute, email))
        state.last_of_visit[number] = (minute, email)

    def _sync(self, first: int, last: int) -> None:
        """The letters that reached the mailbox: stored and attributed, as a sync does."""
        incoming = []
        for index in range(first, last):
            letter = self.plan.letters[index]
            state = self.visitors[letter.visitor]
            if letter.during:
                times = [t for t, _email in state.shown]
                position = bisect.bisect_right(times, letter.written) - 1
                shown_at, email = state.shown[max(position, 0)]
            else:
                shown_at, email = state.last_of_visit[letter.seen_visit]
            to = email or self.sandbox.site.original_email
            self.truths.append(Truth(index, letter.visitor, state.vid, shown_at, to))
            arrives = self.at(letter.arrives).replace(microsecond=0)
            incoming.append(Incoming(raw=_letter(index, to, self.at(letter.written)), received_at=arrives))
        stored = store_letters(mailbox=self.sandbox.mailbox, incoming=incoming, origin=Letter.Origin.FILE)
        ids = [outcome.letter_id for outcome in stored.outcomes]
        self.letter_ids += ids
        attribute_letters(ids)


@contextmanager
def commits_without_waiting():
    """synchronous_commit off on this connection while the run lasts
    (PostgreSQL): its commits do not wait for the disk."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        yield
        return
    with connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")


def _ip(visitor: int) -> str:
    """One client address per visitor: the per-IP cap sees what it sees in real traffic."""
    return f"10.{(visitor >> 16) & 255}.{(visitor >> 8) & 255}.{visitor & 255}"


def _letter(index: int, to: str, written: datetime) -> bytes:
    message = EmailMessage()
    message["From"] = f"Writer {index} <writer{index}@client.invalid>"
    message["To"] = to
    message["Subject"] = f"Enquiry {index}"
    message["Date"] = format_datetime(written)
    message["Message-ID"] = f"<sim-{index}@client.invalid>"
    message.set_content("Hello! Please send the price list.")
    return message.as_bytes()
