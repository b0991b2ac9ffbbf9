"""Letters → leads, a batch at a time: the one attribution path (a single
letter is a batch of one, `services.attribute_letter`).

A sync stores letters by the hundred. A batch costs about twenty queries
whatever its size: lock the letters, read the project's own addresses and
exclusions among the batch's senders, decode every recipient, read the
leases of the addressed tracked addresses and their visitors' sessions
around the batch's arrival times, the leads the batch's threads and repeat
senders may join, and when each sender first wrote; then decide letter by
letter in memory, in the order given (a later letter can join the lead of an
earlier one in the same batch, exactly as if it came in a later batch), and
write the new leads, the joined leads and the letters in three statements.

The rules (DESIGN.md, "Attribution"): the first tracked address among
Delivered-To / X-Original-To, then To, then Cc; its lease live at arrival,
else the last one before it ("after hold", or "reused since" when another
visitor has held it since); that visitor's session current then. A thread
reply joins its letter's lead (`mailbox_sync.threads`); a letter from the
same sender to the same address within the repeat period joins that lead.

Events: `lead.created` once per new lead and `lead.updated` once per lead
that existed before the batch and was joined, both after commit.
"""

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import connection, transaction
from django.db.models import Case, DateTimeField, F, Min, Value, When
from django.db.models.functions import Greatest
from django.utils import timezone

from lib.lookups import AnyOf, array_param
from mailbox_sync import threads
from mailbox_sync.bulk import copy_insert
from mailbox_sync.models import Letter, Mailbox
from substitution.decoder import Match
from substitution.models import Address, StaticAddress

from . import events
from .history import ExhaustionHistory, LeaseHistory, RecipientDecoder, SessionHistory
from .internal import own_mail_addresses, own_mail_domains
from .models import Exclusion, Lead, MatchKind
from .retention import erased_first_letters
from .rules import EXHAUSTED_LOOKBACK_MINUTES, new_lead, not_lead_reason

# What attribution reads of a letter (not its text, attachments or raw bytes).
LETTER_FIELDS = (
    "id",
    "mailbox_id",
    "message_id",
    "message_id_reused",
    "received_at",
    "sender_email",
    "sender_name",
    "subject",
    "recipients",
    "in_reply_to",
    "references",
    "headers",
    "not_lead_reason",
)


def attribute_letters(letter_ids, *, stored: dict[int, Letter] | None = None) -> dict[int, int | None]:
    """Make or join the lead of each stored letter, in the order given.
    Idempotent: letters already attributed are left as they are (and
    concurrent calls wait on the letters' row locks), so one letter never
    makes two leads. Returns each newly attributed letter's lead id (None:
    not a lead). `stored`: letters as the caller just stored them (by id);
    those are locked and checked but not read back, but for the two fields
    that may have changed since (a later letter reusing the Message-ID, a
    reason set meanwhile)."""
    order = list(dict.fromkeys(letter_ids))
    if not order:
        return {}
    now = timezone.now()
    with transaction.atomic():
        found = _lock_unattributed(order, stored or {})
        letters = [found[pk] for pk in order if pk in found]
        if not letters:
            return {}
        mailboxes = Mailbox.objects.in_bulk({letter.mailbox_id for letter in letters})
        by_project = defaultdict(list)
        for letter in letters:
            letter.mailbox = mailboxes[letter.mailbox_id]
            by_project[letter.mailbox.project_id].append(letter)
        outcome = {}
        for project_id, group in by_project.items():
            outcome.update(_ProjectBatch(project_id, group, now).run())
    return outcome


def _lock_unattributed(order: list[int], stored: dict[int, Letter]) -> dict[int, Letter]:
    """The letters among `order` not attributed yet, locked for update."""
    unattributed = Letter.objects.select_for_update(of=("self",)).filter(attributed_at__isnull=True).order_by()
    held = [pk for pk in order if pk in stored]
    found = {}
    if held:
        rows = unattributed.filter(AnyOf("id", held)).values_list("id", "message_id_reused", "not_lead_reason")
        for pk, reused, reason in rows:
            letter = stored[pk]
            letter.message_id_reused, letter.not_lead_reason = reused, reason
            found[pk] = letter
    rest = [pk for pk in order if pk not in stored]
    if rest:
        found.update((letter.id, letter) for letter in unattributed.filter(AnyOf("id", rest)).only(*LETTER_FIELDS))
    return found


@dataclass
class _Known:
    """A letter that has a lead: a candidate for threads, repeat period and first contact."""

    letter_id: int
    received_at: datetime
    lead: int | Lead  # a lead that existed before the batch (its id), or one made in it


def _ordered_recipients(letter: Letter) -> list[str]:
    recipients = letter.recipients or {}
    return list(dict.fromkeys(recipients.get("delivered_to", []) + recipients.get("to", []) + recipients.get("cc", [])))


class _ProjectBatch:
    # Letters and leads are known by `.id`, not `.pk`: a plain attribute
    # read, where `.pk` is a property that looks the field up (some twenty
    # times a letter: 125,000 calls in a first sync of 5,000 letters).

    def __init__(self, project_id: int, letters: list[Letter], now: datetime):
        self.project_id = project_id
        self.letters = letters
        self.now = now
        self.new_leads: list[Lead] = []
        self.joined: dict[int, datetime] = {}  # leads from before the batch → latest letter joined
        self.lead_of: dict[int, int | Lead | None] = {}
        self.reasons: dict[int, str] = {}
        self._exhaustion_history: ExhaustionHistory | None = None

    # --- Reading ----------------------------------------------------------------

    def _own_addresses(self, senders: set[str]) -> set[str]:
        """The project's own addresses among `senders`: pool and static addresses,
        and all of `own_mail_addresses` (mailboxes, sites' and blocks'
        original addresses, pools' base addresses), kept for the domains."""
        project = self.project_id
        self.own_mail = own_mail_addresses(project)
        wanted = AnyOf("email", senders)
        own = set(Address.objects.filter(wanted, pool__project_id=project).values_list("email", flat=True))
        own |= self.own_mail
        own |= set(StaticAddress.objects.filter(wanted, project_id=project).values_list("email", flat=True))
        return own

    def _read_known(self, leads_wanted: list[Letter]):
        """Letters that already have leads and that the batch's letters may
        join (by thread or repeat period), and when each sender first wrote."""
        in_project = Letter.objects.filter(mailbox__project_id=self.project_id, lead__isnull=False).order_by()
        self.by_message_id: dict[str, list[threads.Candidate]] = defaultdict(list)
        self.by_sender_recipient: dict[tuple[str, str], list[_Known]] = defaultdict(list)
        self.first_letter_at: dict[str, datetime] = {}
        self.lead_recipient: dict[int, str] = {}  # of the leads from before the batch
        thread_ids = {i for letter in leads_wanted for i in threads.thread_ids(letter.in_reply_to, letter.references)}
        if thread_ids:
            rows = in_project.filter(AnyOf("message_id", thread_ids)).values_list(
                *threads.FIELDS, "message_id", "lead__recipient"
            )
            for *fields, message_id, recipient in rows:
                candidate = threads.Candidate.of(fields)
                self.by_message_id[message_id].append(candidate)
                self.lead_recipient[candidate.lead] = recipient
        senders = {letter.sender_email for letter in leads_wanted}
        named = senders - {""}
        if named:
            periods = [letter.mailbox.repeat_period for letter in leads_wanted]
            times = [letter.received_at for letter in leads_wanted]
            rows = in_project.filter(
                AnyOf("sender_email", named),
                received_at__gt=min(times) - max(periods),
                received_at__lt=max(times) + max(periods),
            ).values_list("id", "sender_email", "received_at", "lead_id", "lead__recipient")
            for letter_id, sender, received_at, lead_id, recipient in rows:
                self.by_sender_recipient[(sender, recipient)].append(_Known(letter_id, received_at, lead_id))
                self.lead_recipient[lead_id] = recipient
        if senders:
            firsts = (
                in_project.filter(AnyOf("sender_email", senders))
                .values("sender_email")
                .annotate(first=Min("received_at"))
                .values_list("sender_email", "first")
            )
            self.first_letter_at.update(firsts)
            # Senders whose earlier letters retention erased are still returning customers.
            for sender, first in erased_first_letters(self.project_id, named).items():
                if sender not in self.first_letter_at or first < self.first_letter_at[sender]:
                    self.first_letter_at[sender] = first

    def _read_matches(self, to_match: list[tuple[Letter, object]]):
        """Leases, sessions and pool exhaustions around the arrival times of
        the letters that may need a new lead."""
        with_address = [(letter, decoded) for letter, decoded in to_match if decoded and decoded.address]
        self.leases = None
        if with_address:
            times = [letter.received_at for letter, _ in with_address]
            self.leases = LeaseHistory({d.address.pk for _, d in with_address}, min(times), max(times))
        self.matches = {}
        visitor_times = defaultdict(list)
        for letter, decoded in to_match:
            lease, kind = self._match(letter, decoded)
            self.matches[letter.id] = (lease, kind)
            if lease is not None:
                visitor_times[lease.visitor_id].append(letter.received_at)
        self.sessions = None
        if visitor_times:
            times = [at for ats in visitor_times.values() for at in ats]
            self.sessions = SessionHistory(set(visitor_times), min(times), max(times))

    def _match(self, letter: Letter, decoded):
        """The lease behind a letter and how it matched (a MatchKind)."""
        at = letter.received_at
        if decoded is None:
            return None, MatchKind.EXHAUSTED if self._exhaustions().recently_exhausted(at) else MatchKind.UNKNOWN
        if decoded.kind == Match.AMBIGUOUS:
            return None, MatchKind.AMBIGUOUS
        lease, kind = self.leases.lease_at(decoded.address.pk, at)
        if lease is None:
            return None, kind
        if decoded.kind == Match.CORRECTED:
            return lease, MatchKind.CORRECTED
        if kind == MatchKind.LIVE_LEASE and self.leases.taken_over_from_someone(lease, at):
            return lease, MatchKind.TAKEN_OVER
        return lease, kind

    def _exhaustions(self) -> ExhaustionHistory:
        # Read only when a letter went to no tracked address.
        if self._exhaustion_history is None:
            times = [letter.received_at for letter in self.letters]
            self._exhaustion_history = ExhaustionHistory(
                self.project_id, min(times), max(times), timedelta(minutes=EXHAUSTED_LOOKBACK_MINUTES)
            )
        return self._exhaustion_history

    # --- Deciding ---------------------------------------------------------------

    def run(self) -> dict[int, int | None]:
        senders = {letter.sender_email.lower() for letter in self.letters} - {""}
        own = self._own_addresses(senders)
        exclusions = set(Exclusion.objects.filter(project_id=self.project_id).values_list("value", flat=True))
        own_domains = own_mail_domains(self.project_id, self.own_mail)
        recipients = {letter.id: _ordered_recipients(letter) for letter in self.letters}
        decoder = RecipientDecoder(self.project_id, {e for emails in recipients.values() for e in emails})
        wanted, to_match = [], []
        self.recipient = {}
        for letter in self.letters:
            reason = not_lead_reason(letter, own, exclusions, own_domains)
            decoded, recipient = None, ""
            for email in recipients[letter.id]:
                decoded = decoder.decode(email)
                if decoded is not None:
                    recipient = email
                    break
            else:
                recipient = recipients[letter.id][0] if recipients[letter.id] else ""
            if not reason and decoded is None and letter.mailbox.tracked_only:
                reason = "sent to an untracked address"
            if reason:
                self.reasons[letter.id] = reason
                continue
            self.recipient[letter.id] = (decoded, recipient)
            wanted.append(letter)
            if decoded is None or decoded.kind != Match.STATIC:
                to_match.append((letter, decoded))
        self._read_known(wanted)
        self._read_matches(to_match)
        for letter in wanted:
            self._decide(letter)
        return self._write()

    def _existing(self, letter: Letter, recipient: str) -> int | Lead | None:
        """The lead the letter joins, over the letters known so far: its
        thread's, else a repeat sender's within the repeat period."""
        candidates = [
            c
            for i in threads.thread_ids(letter.in_reply_to, letter.references)
            for c in self.by_message_id.get(i, ())
            if c.letter_id != letter.id
        ]
        parent = threads.thread_parent(sender=letter.sender_email, recipients=letter.recipients, candidates=candidates)
        if parent is not None:
            return parent.lead
        if not letter.sender_email:
            return None
        at, period = letter.received_at, letter.mailbox.repeat_period
        nearby = [
            k
            for k in self.by_sender_recipient.get((letter.sender_email, recipient), ())
            if k.letter_id != letter.id and at - period < k.received_at < at + period
        ]
        if nearby:
            return min(nearby, key=lambda k: (k.received_at, k.letter_id)).lead
        return None

    def _decide(self, letter: Letter) -> None:
        decoded, recipient = self.recipient[letter.id]
        at = letter.received_at
        lead = self._existing(letter, recipient)
        if isinstance(lead, Lead):
            lead.last_letter_at = max(lead.last_letter_at, at)
        elif lead is not None:
            self.joined[lead] = max(self.joined.get(lead, at), at)
        else:
            lead = self._new_lead(letter, decoded, recipient)
            self.new_leads.append(lead)
        self.lead_of[letter.id] = lead
        # Now a letter with a lead, for the letters after it.
        known = _Known(letter.id, at, lead)
        if letter.message_id:
            self.by_message_id[letter.message_id].append(
                threads.Candidate.of(
                    (letter.id, at, lead, letter.sender_email, letter.recipients, letter.message_id_reused)
                )
            )
        lead_recipient = lead.recipient if isinstance(lead, Lead) else self.lead_recipient[lead]
        self.by_sender_recipient[(letter.sender_email, lead_recipient)].append(known)
        first = self.first_letter_at.get(letter.sender_email)
        if first is None or at < first:
            self.first_letter_at[letter.sender_email] = at

    def _new_lead(self, letter: Letter, decoded, recipient: str) -> Lead:
        """The lead the letter starts."""
        session = lease = None
        if decoded is not None and decoded.kind == Match.STATIC:
            kind = MatchKind.STATIC
        else:
            lease, kind = self.matches[letter.id]
            if lease is not None:
                session = self.sessions.session_at(lease.visitor_id, letter.received_at)
        first = self.first_letter_at.get(letter.sender_email)
        return new_lead(
            project_id=self.project_id,
            letter=letter,
            recipient=recipient,
            decoded=decoded,
            kind=kind,
            lease=lease,
            session=session,
            first_contact=not letter.sender_email or first is None or first >= letter.received_at,
        )

    # --- Writing ----------------------------------------------------------------

    def _write(self) -> dict[int, int | None]:
        copy_insert(Lead, self.new_leads)
        if self.joined:
            _mark_joined(self.joined, self.now)
        outcome = {}
        for letter in self.letters:
            lead = self.lead_of.get(letter.id)
            outcome[letter.id] = lead.id if isinstance(lead, Lead) else lead
        _mark_attributed(
            [
                (letter.id, outcome[letter.id], self.reasons.get(letter.id, letter.not_lead_reason))
                for letter in self.letters
            ],
            self.now,
        )
        events.emit_many(events.LEAD_CREATED, [lead.id for lead in self.new_leads])
        events.emit_many(events.LEAD_UPDATED, list(self.joined))
        return outcome


def _mark_joined(joined: dict[int, datetime], now: datetime) -> None:
    """Bring each joined lead's last letter up to the latest letter that
    joined it (never back) and mark it updated: on PostgreSQL in one UPDATE
    from two arrays (a CASE with a branch per lead takes Django longer to
    build than the server to run), elsewhere by that CASE."""
    if connection.vendor == "postgresql":
        table = connection.ops.quote_name(Lead._meta.db_table)
        sql = (
            f"UPDATE {table} SET last_letter_at = GREATEST({table}.last_letter_at, v.at), updated_at = %s"
            f" FROM unnest(%s::bigint[], %s::timestamptz[]) AS v (id, at) WHERE {table}.id = v.id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [now, array_param(joined), list(joined.values())])
        return
    latest = Case(
        *(
            When(pk=pk, then=Greatest(F("last_letter_at"), Value(at, output_field=DateTimeField())))
            for pk, at in joined.items()
        ),
        output_field=DateTimeField(),
    )
    Lead.objects.filter(pk__in=joined).update(last_letter_at=latest, updated_at=now)


def _mark_attributed(rows: list[tuple[int, int | None, str]], now: datetime) -> None:
    """Set each letter's lead and not-a-lead reason, and mark it attributed:
    on PostgreSQL in one UPDATE from three arrays (three parameters however
    many letters), elsewhere one from a VALUES list per thousand letters,
    whose columns are column1..3 in both PostgreSQL and SQLite; the arrays
    as their literals (`lib.lookups.array_param`). (Django's
    bulk_update builds a CASE per field and letter, which takes longer to
    build than to run.)"""
    table = connection.ops.quote_name(Letter._meta.db_table)
    at = connection.ops.adapt_datetimefield_value(now)
    done = "attributed_at = %s, attribution_error = ''"
    if connection.vendor == "postgresql":
        ids, leads, reasons = (list(column) for column in zip(*rows, strict=True))
        sql = (
            f"UPDATE {table} SET lead_id = v.lead_id, not_lead_reason = v.reason, {done}"
            f" FROM unnest(%s::bigint[], %s::bigint[], %s::text[]) AS v (id, lead_id, reason) WHERE {table}.id = v.id"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [at, *map(array_param, (ids, leads, reasons))])
        return
    for start in range(0, len(rows), 1000):
        chunk = rows[start : start + 1000]
        values = ", ".join(["(CAST(%s AS bigint), CAST(%s AS bigint), CAST(%s AS text))"] * len(chunk))
        sql = (
            f"UPDATE {table} SET lead_id = v.column2, not_lead_reason = v.column3, {done}"
            f" FROM (VALUES {values}) AS v WHERE {table}.id = v.column1"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [at, *(value for row in chunk for value in row)])
