"""What batch attribution reads once per batch instead of once per letter:
the tracked address behind each recipient, the leases of those addresses and
the sessions of their visitors around the batch's arrival times.

Each class answers for any time (or address) inside the range it was loaded
for exactly what a query for that one time would answer (for recipients:
what `substitution.decoder.decode_address` answers); only the queries differ.
"""

from bisect import bisect_right
from collections import defaultdict
from datetime import datetime, timedelta

from django.db.models import Max, Min, Q

from lib.lookups import AnyOf
from substitution.decoder import Decoded, Match, one_edit_variants, token_of
from substitution.models import Address, Lease, Pool, PoolExhaustion, StaticAddress
from tracker.models import Session

from .models import MatchKind
from .rules import ARRIVAL_RESOLUTION


def _latest(items, key):
    """The item with the greatest key (ties: the greatest id), or None."""
    return max(items, key=lambda item: (key(item), item.pk), default=None)


class RecipientDecoder:
    """`decode_address` for every recipient of a batch, in four queries at most."""

    def __init__(self, project_id: int, emails):
        wanted = {email.strip().lower() for email in emails}
        self._decoded: dict[str, Decoded | None] = {}
        if not wanted:
            return
        addresses = Address.objects.filter(AnyOf("email", wanted), pool__project_id=project_id)
        for address in addresses.select_related("pool"):
            self._decoded[address.email] = Decoded(address.email, Match.EXACT, address=address, pool=address.pool)
        rest = wanted - self._decoded.keys()
        if rest:
            for static in StaticAddress.objects.filter(AnyOf("email", rest), project_id=project_id):
                self._decoded[static.email] = Decoded(static.email, Match.STATIC, static_address=static)
            rest -= self._decoded.keys()
        if rest:
            self._decode_tokens(project_id, rest)

    def _decode_tokens(self, project_id: int, emails: set[str]) -> None:
        # As decode_address: the first generated pool (by name) whose shape the
        # address has decides; one issued token one edit away corrects it.
        pools = list(Pool.objects.filter(project_id=project_id).filter(Q(kind=Pool.Kind.PLUS) | Q(kind=Pool.Kind.DASH)))
        shaped, variants_by_pool = {}, defaultdict(set)
        for email in emails:
            for pool in pools:
                token = token_of(pool, email)
                if token is not None:
                    variants = one_edit_variants(token)
                    shaped[email] = (pool, variants)
                    variants_by_pool[pool.pk] |= variants
                    break
        near_by_pool = defaultdict(list)
        if variants_by_pool:
            condition = Q()
            for pool_id, variants in variants_by_pool.items():
                condition |= Q(AnyOf("token", variants), pool_id=pool_id)
            for address in Address.objects.filter(condition).select_related("pool"):
                near_by_pool[address.pool_id].append(address)
        for email in emails:
            if email not in shaped:
                self._decoded[email] = None
                continue
            pool, variants = shaped[email]
            near = [address for address in near_by_pool[pool.pk] if address.token in variants]
            if len(near) == 1:
                self._decoded[email] = Decoded(email, Match.CORRECTED, address=near[0], pool=pool)
            else:
                self._decoded[email] = Decoded(email, Match.AMBIGUOUS, pool=pool)

    def decode(self, email: str) -> Decoded | None:
        return self._decoded.get(email.strip().lower())


class LeaseHistory:
    """The leases of some addresses, enough to answer `lease_at` and the
    taken-over check for any arrival time in [since, until]: for each address
    the last lease started by `since`, every lease started up to `until`,
    every lease still held after `since`, the taken-over leases whose hold
    outlived `since`, and which visitors held it after `since` (for "reused
    since")."""

    def __init__(self, address_ids: set[int], since: datetime, until: datetime):
        self._leases: dict[int, list[Lease]] = defaultdict(list)
        self._later: dict[int, dict[int, datetime]] = defaultdict(dict)
        if not address_ids:
            return
        since_by, until_by = since + ARRIVAL_RESOLUTION, until + ARRIVAL_RESOLUTION
        ours = Lease.objects.filter(address_id__in=address_ids)
        anchors = (
            ours.filter(started_at__lte=since_by)
            .order_by()
            .values("address_id")
            .annotate(last=Max("started_at"))
            .values_list("address_id", "last")
        )
        wanted = (
            Q(started_at__gt=since_by, started_at__lte=until_by)
            | (Q(started_at__lte=until_by) & (Q(released_at__isnull=True) | Q(released_at__gt=since)))
            | Q(end_reason=Lease.EndReason.TAKEN_OVER, expires_at__gt=since)
        )
        # Each address's last lease by `since`: asked as "started at one of
        # those times", which may bring an older lease of another address
        # along; it changes no answer (each address's last one is there).
        anchor_times = {last for _address_id, last in anchors}
        if anchor_times:
            wanted |= Q(started_at__in=anchor_times)
        for lease in ours.filter(wanted).order_by():
            self._leases[lease.address_id].append(lease)
        later = (
            ours.filter(started_at__gt=since_by)
            .order_by()
            .values("address_id", "visitor_id")
            .annotate(last=Max("started_at"))
            .values_list("address_id", "visitor_id", "last")
        )
        for address_id, visitor_id, last in later:
            self._later[address_id][visitor_id] = last

    def lease_at(self, address_id: int, at: datetime) -> tuple[Lease | None, str]:
        """The lease that held the address at `at` ("live lease"), else the
        last one that started before it ("after hold", or "reused since"
        when another visitor has held the address after `at`)."""
        started_by = at + ARRIVAL_RESOLUTION
        started = [lease for lease in self._leases[address_id] if lease.started_at <= started_by]
        live = _latest(
            (
                lease
                for lease in started
                if (lease.released_at is None and lease.expires_at > at)
                or (lease.released_at is not None and lease.released_at > at)
            ),
            key=lambda lease: lease.started_at,
        )
        if live is not None:
            return live, MatchKind.LIVE_LEASE
        previous = _latest(started, key=lambda lease: lease.started_at)
        if previous is None:
            return None, MatchKind.UNKNOWN
        reused = any(
            last > started_by
            for visitor_id, last in self._later[address_id].items()
            if visitor_id != previous.visitor_id
        )
        return previous, MatchKind.REUSED_SINCE if reused else MatchKind.AFTER_HOLD

    def taken_over_from_someone(self, lease: Lease, at: datetime) -> bool:
        """The address was taken from another visitor whose hold had not run out by `at`."""
        return any(
            other.end_reason == Lease.EndReason.TAKEN_OVER
            and other.released_at is not None
            and other.released_at <= lease.started_at
            and other.expires_at > at
            for other in self._leases[lease.address_id]
        )


class SessionHistory:
    """The sessions of some visitors, enough to answer `session_at` for any
    time in [since, until]: the last session started by `since`, those
    started up to `until`, and the first one (the fallback)."""

    def __init__(self, visitor_ids: set[int], since: datetime, until: datetime):
        self._sessions: dict[int, list[Session]] = defaultdict(list)
        if not visitor_ids:
            return
        since_by, until_by = since + ARRIVAL_RESOLUTION, until + ARRIVAL_RESOLUTION
        ends = (
            Session.objects.filter(visitor_id__in=visitor_ids)
            .order_by()
            .values("visitor_id")
            .annotate(anchor=Max("started_at", filter=Q(started_at__lte=since_by)), first=Min("started_at"))
            .values_list("visitor_id", "anchor", "first")
        )
        # As for leases: the anchors by their times, a harmless superset.
        times = {at for _visitor_id, anchor, first in ends for at in (anchor, first) if at is not None}
        wanted = Q(started_at__gt=since_by, started_at__lte=until_by) | Q(started_at__in=times)
        sessions = Session.objects.filter(visitor_id__in=visitor_ids).filter(wanted)
        for session in sessions.select_related("visitor").order_by():
            self._sessions[session.visitor_id].append(session)

    def session_at(self, visitor_id: int, at: datetime) -> Session | None:
        """The visitor's session current at `at`: the last one started by then, else the first."""
        sessions = self._sessions[visitor_id]
        by = at + ARRIVAL_RESOLUTION
        current = _latest((s for s in sessions if s.started_at <= by), key=lambda s: s.started_at)
        if current is not None:
            return current
        return min(sessions, key=lambda s: (s.started_at, s.pk), default=None)


class ExhaustionHistory:
    """When the project's pools ran dry around the batch: for "pool exhausted"."""

    def __init__(self, project_id: int, since: datetime, until: datetime, lookback: timedelta):
        self._lookback = lookback
        self._times = sorted(
            PoolExhaustion.objects.filter(pool__project_id=project_id, at__lte=until, at__gt=since - lookback)
            .order_by()
            .values_list("at", flat=True)
        )

    def recently_exhausted(self, at: datetime) -> bool:
        """A pool ran dry in the lookback before `at`."""
        index = bisect_right(self._times, at)
        return index > 0 and self._times[index - 1] > at - self._lookback
