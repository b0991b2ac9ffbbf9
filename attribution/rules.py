"""The rules that decide one letter, shared by every batch: is it an
enquiry at all, and what a new lead copies from its source.

Attribution time is the letter's arrival (`received_at`); the Date header is
shown, never used for matching.
"""

from datetime import timedelta

from mailbox_sync.bulk import new_instance
from mailbox_sync.models import Letter
from substitution.decoder import Decoded
from substitution.models import Lease
from tracker.models import Channel, Session

from .internal import is_internal
from .models import Lead, MatchKind

# Arrival times have one-second resolution (IMAP INTERNALDATE): a lease or a
# session that started within that second counts as started by then.
ARRIVAL_RESOLUTION = timedelta(seconds=1)
# A letter to the main address this soon after a pool ran dry is counted "pool exhausted".
EXHAUSTED_LOOKBACK_MINUTES = 60
AUTO_SUBMITTED_OK = {"", "no"}
BULK_PRECEDENCE = {"bulk", "list", "junk", "auto_reply"}
INTERNAL = "internal (a colleague at the project's own mail domain)"
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


def not_lead_reason(
    letter: Letter,
    own_addresses: set[str],
    exclusions: set[str] = frozenset(),
    own_domains: set[str] = frozenset(),
) -> str:
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
    if is_internal(sender, own_domains):
        return INTERNAL
    if excluded_sender(sender, exclusions):
        return "sender on the exclusion list"
    return ""


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
    address = decoded.address if decoded else None
    values = {
        "project_id": project_id,
        "created_at": letter.received_at,
        "last_letter_at": letter.received_at,
        "sender_email": letter.sender_email,
        "sender_name": letter.sender_name,
        "subject": letter.subject,
        "recipient": recipient,
        "match_kind": kind,
        "first_contact": first_contact,
        "address_id": address.pk if address else None,
        "lease_id": lease.pk if lease else None,
        "visitor_id": lease.visitor_id if lease else None,
        "session_id": session.pk if session else None,
        "site_id": session.visitor.site_id if session else None,
        **fields,
    }
    return new_instance(Lead, values, {"address": address, "lease": lease, "session": session})


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
