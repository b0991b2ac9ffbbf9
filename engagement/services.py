"""Making a tracked message: the message, its links and recipients, and each
tracked recipient's own copy of the HTML (pixel and signed links)."""

from dataclasses import dataclass, field
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from tracker.geo import truncate_ip

from . import rewriting, tokens
from .models import EngagementSettings, Link, Message, MessageRecipient, OptOut, Origin


class EngagementError(Exception):
    def __init__(self, status: int, message: str, code: str = "invalid"):
        super().__init__(message)
        self.status, self.message, self.code = status, message, code


# Why a recipient's copy is not tracked: on the project's opt-out list, or no HTML to track.
OPTED_OUT = "opted_out"
NO_HTML = "no_html"


@dataclass
class RecipientCopy:
    """One recipient's HTML; `recipient` is None when they are not tracked,
    and `untracked_reason` then says why."""

    email: str
    html: str
    recipient: MessageRecipient | None = None
    pixel_url: str | None = None
    links: list[tuple[str, str]] = field(default_factory=list)  # (URL, tracked URL)
    untracked_reason: str | None = None


@dataclass
class Tracked:
    message: Message | None
    copies: list[RecipientCopy]
    template: rewriting.Template | None = None


def engagement_settings(project_id: int) -> EngagementSettings:
    """The project's settings; an unsaved default (tracking off) when it has none."""
    found = EngagementSettings.objects.filter(project_id=project_id).first()
    return found or EngagementSettings(project_id=project_id)


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def opted_out(project_id: int, emails: list[str]) -> set[str]:
    wanted = {normalize_email(e) for e in emails}
    return set(OptOut.objects.filter(project_id=project_id, email__in=wanted).values_list("email", flat=True))


def render_copy(template: rewriting.Template, recipient_id: int, links: list[Link]) -> tuple[str, list[str], str]:
    """One recipient's HTML, its tracked link URLs (in the template's order) and pixel URL."""
    link_urls = [tokens.click_url(recipient_id, link.pk) for link in links]
    pixel = tokens.pixel_url(recipient_id)
    body = template.render(link_urls=link_urls, pixel_url=pixel, honeypot_url=tokens.honeypot_url(recipient_id))
    return body, link_urls, pixel


def message_track(
    *,
    project_id: int,
    origin: str,
    html: str,
    recipients: list[str],
    subject: str = "",
    has_text: bool = False,
    campaign: str = "",
    lead_id: int | None = None,
    message_id: str = "",
    mail_from: str = "",
    client_ip: str | None = None,
    size: int = 0,
    now: datetime | None = None,
) -> Tracked:
    """Register a message and give each recipient their copy. Recipients on the
    project's opt-out list get the HTML unchanged (no pixel, no tracked link)
    and are not stored: nothing about them is kept. The message itself is
    stored even when every recipient opted out, so the caller always gets its
    id (a message with no tracked recipient, its figures all zero); with no
    HTML nothing is stored. Tracking must be switched on for the project
    (checked here)."""
    if len(html.encode("utf-8", "surrogatepass")) > settings.ENGAGEMENT_MAX_HTML_BYTES:
        raise EngagementError(413, f"The HTML is over {settings.ENGAGEMENT_MAX_HTML_BYTES} bytes.", "too_large")
    if not engagement_settings(project_id).tracking_enabled:
        raise EngagementError(409, "Engagement tracking is off for this project: switch it on first.", "tracking_off")
    emails, seen = [], set()
    for email in recipients:
        key = normalize_email(email)
        if key and key not in seen:
            seen.add(key)
            emails.append(key)
    excluded = opted_out(project_id, emails)
    tracked = [email for email in emails if email not in excluded]
    if not html:
        reasons = {email: OPTED_OUT if email in excluded else NO_HTML for email in emails}
        return Tracked(None, [RecipientCopy(email, html, untracked_reason=reasons[email]) for email in emails])
    template = rewriting.prepare(html)
    message, links, rows = register(
        project_id=project_id,
        origin=origin,
        urls=template.links,
        emails=tracked,
        subject=subject,
        has_text=has_text,
        campaign=campaign,
        lead_id=lead_id,
        message_id=message_id,
        mail_from=mail_from,
        client_ip=client_ip,
        size=size or len(html.encode("utf-8", "surrogatepass")),
        now=now,
    )
    by_email = {row.email: row for row in rows}
    copies = []
    for email in emails:
        row = by_email.get(email)
        if row is None:
            copies.append(RecipientCopy(email, html, untracked_reason=OPTED_OUT))
            continue
        body, link_urls, pixel = render_copy(template, row.pk, links)
        copies.append(
            RecipientCopy(
                email, body, row, pixel, [(link.url, url) for link, url in zip(links, link_urls, strict=True)]
            )
        )
    return Tracked(message, copies, template)


@transaction.atomic
def register(
    *,
    project_id: int,
    origin: str,
    urls: list[str],
    emails: list[str],
    subject: str = "",
    has_html: bool = True,
    has_text: bool = False,
    campaign: str = "",
    lead_id: int | None = None,
    message_id: str = "",
    mail_from: str = "",
    client_ip: str | None = None,
    size: int = 0,
    now: datetime | None = None,
) -> tuple[Message, list[Link], list[MessageRecipient]]:
    """Store a message with its distinct links (in order) and tracked recipients."""
    message = Message.objects.create(
        project_id=project_id,
        origin=origin,
        subject=subject[:500],
        campaign=campaign[:200],
        lead_id=lead_id,
        message_id=message_id[:998],
        mail_from=mail_from[:320],
        sender_network=truncate_ip(client_ip) if client_ip and origin == Origin.RELAY else None,
        has_html=has_html,
        has_text=has_text,
        size=size,
        created_at=now or timezone.now(),
    )
    links = Link.objects.bulk_create([Link(message=message, position=i, url=url) for i, url in enumerate(urls)])
    rows = MessageRecipient.objects.bulk_create([MessageRecipient(message=message, email=e) for e in emails])
    return message, links, rows


def recipients_delivered(recipient_ids: list[int], at: datetime) -> int:
    """The upstream accepted these recipients' copy; the first time counts."""
    if not recipient_ids:
        return 0
    return MessageRecipient.objects.filter(pk__in=recipient_ids, delivered_at__isnull=True).update(delivered_at=at)
