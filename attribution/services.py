"""Letters → leads: which visitor (and so which source) wrote each letter.

Attribution time is the letter's arrival (`received_at`); the Date header is
shown, never used for matching.
"""

from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from mailbox_sync import threads
from mailbox_sync.models import Letter
from substitution.decoder import Decoded, Match, decode_address
from substitution.models import Address, Lease, PoolExhaustion, StaticAddress
from tracker.models import Channel, Session, Site

from . import events
from .models import Exclusion, Lead, MatchKind
from .retention import wrote_before

ARRIVAL_RESOLUTION = timedelta(seconds=1)
# A letter to the main address this soon after a pool ran dry is counted "pool exhausted".
EXHAUSTED_LOOKBACK_MINUTES = 60
AUTO_SUBMITTED_OK = {"", "no"}
BULK_PRECEDENCE = {"bulk", "list", "junk", "auto_reply"}
DAEMON_SENDERS = ("mailer-daemon@", "postmaster@", "noreply-dmarc", "mail-daemon@")


def excluded_sender(sender: str, exclusions: set[str]) -> bool:
    """On the project's exclusion list: the address itself, or its domain or a parent domain."""
    if not sender:
        return False
    if sender in exclusions:
        return True
    domain = sender.rpartition("@")[2]
    parts = domain.split(".")
    return any(".".join(parts[i:]) in exclusions for i in range(len(parts) - 1))


def not_lead_reason(letter: Letter, own_addresses: set[str], exclusions: set[str] = frozenset()) -> str:
    """Why a letter is not an enquiry, or "" when it is one."""
    if letter.not_lead_reason:
        return letter.not_lead_reason
    headers = {k.lower(): v.strip().lower() for k, v in (letter.headers or {}).items()}
    if headers.get("x-spam-flag", "") == "yes":
        return "spam (X-Spam-Flag)"
    if headers.get("auto-submitted", "") not in AUTO_SUBMITTED_OK:
        return "auto-reply (Auto-Submitted)"
    if headers.get("x-autoreply") or headers.get("x-autorespond"):
        return "auto-reply"
    if headers.get("precedence", "") in BULK_PRECEDENCE:
        return "mailing list or bulk (Precedence)"
    if headers.get("list-id"):
        return "mailing list (List-Id)"
    sender = letter.sender_email.lower()
    if sender.startswith(DAEMON_SENDERS):
        return "bounce (mailer daemon)"
    if sender and sender in own_addresses:
        return "the project's own address"
    if excluded_sender(sender, exclusions):
        return "sender on the exclusion list"
    return ""


def _own_addresses(project_id: int) -> set[str]:
    own = set(Address.objects.filter(pool__project_id=project_id).values_list("email", flat=True))
    own |= {e.lower() for e in Site.objects.filter(project_id=project_id).values_list("original_email", flat=True)}
    from mailbox_sync.models import Mailbox

    own |= {u.lower() for u in Mailbox.objects.filter(project_id=project_id).values_list("username", flat=True)}
    own |= set(StaticAddress.objects.filter(project_id=project_id).values_list("email", flat=True))
    return own


def tracked_recipient(letter: Letter, project_id: int) -> tuple[Decoded | None, str]:
    """The first tracked address among Delivered-To / X-Original-To, then To,
    then Cc, through the token decoder (exact, corrected, ambiguous, or a
    static channel address); with none, the first recipient (for display)."""
    recipients = letter.recipients or {}
    ordered = list(
        dict.fromkeys(recipients.get("delivered_to", []) + recipients.get("to", []) + recipients.get("cc", []))
    )
    if not ordered:
        return None, ""
    for email in ordered:
        decoded = decode_address(project_id, email)
        if decoded is not None:
            return decoded, email
    return None, ordered[0]


def _taken_over_from_someone(lease: Lease, at: datetime) -> bool:
    """The address was taken from another visitor whose hold had not run out by `at`."""
    return Lease.objects.filter(
        address_id=lease.address_id,
        end_reason=Lease.EndReason.TAKEN_OVER,
        released_at__lte=lease.started_at,
        expires_at__gt=at,
    ).exists()


def _match(decoded: Decoded | None, letter: Letter, project_id: int) -> tuple[Lease | None, str]:
    at = letter.received_at
    if decoded is None:
        recently_exhausted = PoolExhaustion.objects.filter(
            pool__project_id=project_id, at__lte=at, at__gt=at - timedelta(minutes=EXHAUSTED_LOOKBACK_MINUTES)
        ).exists()
        return None, MatchKind.EXHAUSTED if recently_exhausted else MatchKind.UNKNOWN
    if decoded.kind == Match.AMBIGUOUS:
        return None, MatchKind.AMBIGUOUS
    lease, kind = lease_at(decoded.address, at)
    if lease is None:
        return None, kind
    if decoded.kind == Match.CORRECTED:
        return lease, MatchKind.CORRECTED
    if kind == MatchKind.LIVE_LEASE and _taken_over_from_someone(lease, at):
        return lease, MatchKind.TAKEN_OVER
    return lease, kind


def lease_at(address: Address, at: datetime) -> tuple[Lease | None, str]:
    """The lease that held the address at `at` ("live lease"), else the last
    one that started before it ("after hold", or "reused since" when another
    visitor has held the address after the letter arrived).

    Arrival times have one-second resolution (IMAP INTERNALDATE), so a lease
    that started within that second counts as started by then."""
    started_by = at + ARRIVAL_RESOLUTION
    live = (
        Lease.objects.filter(address=address, started_at__lte=started_by)
        .filter(Q(released_at__isnull=True, expires_at__gt=at) | Q(released_at__gt=at))
        .order_by("-started_at")
        .first()
    )
    if live is not None:
        return live, MatchKind.LIVE_LEASE
    previous = Lease.objects.filter(address=address, started_at__lte=started_by).order_by("-started_at").first()
    if previous is None:
        return None, MatchKind.UNKNOWN
    reused = (
        Lease.objects.filter(address=address, started_at__gt=started_by)
        .exclude(visitor_id=previous.visitor_id)
        .exists()
    )
    return previous, MatchKind.REUSED_SINCE if reused else MatchKind.AFTER_HOLD


def session_at(visitor_id: int, at: datetime) -> Session | None:
    """The visitor's session current at `at`: the last one started by then."""
    sessions = Session.objects.filter(visitor_id=visitor_id)
    at = at + ARRIVAL_RESOLUTION
    return (
        sessions.filter(started_at__lte=at).order_by("-started_at").first() or sessions.order_by("started_at").first()
    )


def _existing_lead(letter: Letter, project_id: int, recipient: str) -> Lead | None:
    """A thread reply joins its letter's lead (mailbox_sync.threads: a reused
    Message-ID counts only within the same conversation); otherwise a letter
    from the same sender to the same address within the repeat period joins
    that lead."""
    thread_ids = threads.thread_ids(letter.in_reply_to, letter.references)
    if thread_ids:
        rows = (
            Letter.objects.filter(mailbox__project_id=project_id, message_id__in=thread_ids, lead__isnull=False)
            .exclude(pk=letter.pk)
            .values_list(*threads.FIELDS)
        )
        parent = threads.thread_parent(
            sender=letter.sender_email,
            recipients=threads.addresses(letter.recipients),
            candidates=[threads.Candidate.of(row) for row in rows],
        )
        if parent is not None:
            return Lead.objects.get(pk=parent.lead)
    if not letter.sender_email:
        return None
    period = letter.mailbox.repeat_period
    nearby = (
        Letter.objects.filter(
            mailbox__project_id=project_id,
            sender_email=letter.sender_email,
            lead__recipient=recipient,
            received_at__gt=letter.received_at - period,
            received_at__lt=letter.received_at + period,
        )
        .exclude(pk=letter.pk)
        .select_related("lead")
        .order_by("received_at")
    )
    for other in nearby:
        return other.lead
    return None


def new_lead(
    *,
    project_id: int,
    letter: Letter,
    recipient: str,
    decoded: Decoded | None,
    kind: str,
    lease: Lease | None,
    session: Session | None,
    first_contact: bool,
) -> Lead:
    """The lead a letter starts, not saved yet: a static channel address gives
    its channel; otherwise the source fields are copied from the visitor's
    session (channel "unknown" without one)."""
    if kind == MatchKind.STATIC:
        static = decoded.static_address
        fields = {
            "channel": static.channel,
            "source": static.source or static.name,
            "medium": static.medium,
            "campaign": static.campaign,
        }
    else:
        fields = _source_fields(session) or {"channel": Channel.UNKNOWN}
    return Lead(
        project_id=project_id,
        created_at=letter.received_at,
        last_letter_at=letter.received_at,
        sender_email=letter.sender_email,
        sender_name=letter.sender_name,
        subject=letter.subject,
        recipient=recipient,
        match_kind=kind,
        first_contact=first_contact,
        address=decoded.address if decoded else None,
        lease=lease,
        visitor_id=lease.visitor_id if lease else None,
        session=session,
        site_id=session.visitor.site_id if session else None,
        **fields,
    )


def _source_fields(session: Session | None) -> dict:
    if session is None:
        return {}
    return {
        "channel": session.channel,
        "source": session.source,
        "medium": session.utm_medium,
        "campaign": session.utm_campaign,
        "term": session.utm_term,
        "content": session.utm_content,
        "keyword": session.keyword,
        "landing_url": session.landing_url,
        "referrer": session.referrer,
        "device_type": session.device_type,
        "country": session.country,
        "city": session.city,
    }


@transaction.atomic
def attribute_letter(letter_id: int) -> Lead | None:
    """Make or join the lead of one stored letter. Idempotent: a letter already
    attributed is left as it is, so one letter never makes two leads."""
    letter = Letter.objects.select_for_update().select_related("mailbox").get(pk=letter_id)
    if letter.attributed_at is not None:
        return letter.lead
    mailbox = letter.mailbox
    project_id = mailbox.project_id
    now = timezone.now()

    exclusions = set(Exclusion.objects.filter(project_id=project_id).values_list("value", flat=True))
    reason = not_lead_reason(letter, _own_addresses(project_id), exclusions)
    decoded, recipient = tracked_recipient(letter, project_id)
    if not reason and decoded is None and mailbox.tracked_only:
        reason = "sent to an untracked address"
    if reason:
        Letter.objects.filter(pk=letter.pk).update(not_lead_reason=reason, attributed_at=now, attribution_error="")
        return None

    lead = _existing_lead(letter, project_id, recipient)
    if lead is not None:
        if letter.received_at > lead.last_letter_at:
            Lead.objects.filter(pk=lead.pk).update(last_letter_at=letter.received_at)
        Letter.objects.filter(pk=letter.pk).update(lead=lead, attributed_at=now, attribution_error="")
        Lead.objects.filter(pk=lead.pk).update(updated_at=now)
        events.emit(events.LEAD_UPDATED, lead.pk)
        return lead

    session = lease = None
    if decoded is not None and decoded.kind == Match.STATIC:
        kind = MatchKind.STATIC
    else:
        lease, kind = _match(decoded, letter, project_id)
        if lease is not None:
            session = session_at(lease.visitor_id, letter.received_at)
    lead = new_lead(
        project_id=project_id,
        letter=letter,
        recipient=recipient,
        decoded=decoded,
        kind=kind,
        lease=lease,
        session=session,
        first_contact=not wrote_before(project_id, letter.sender_email, letter.received_at),
    )
    lead.save(force_insert=True)
    Letter.objects.filter(pk=letter.pk).update(lead=lead, attributed_at=now, attribution_error="")
    events.emit(events.LEAD_CREATED, lead.pk)
    return lead
