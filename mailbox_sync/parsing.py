"""Raw RFC 822 bytes → the fields a letter keeps. Never raises: a letter that
cannot be parsed is still stored, flagged malformed with the reason."""

import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import getaddresses, parsedate_to_datetime

import mailparser
import nh3

BLOCK_END_RE = re.compile(r"(?i)<\s*(br\s*/?|/p|/div|/tr|/li|/h[1-6])\s*>")
BLANK_LINES_RE = re.compile(r"\n\s*\n\s*\n+")
ANGLE_ID_RE = re.compile(r"<[^<>\s]+>")


@dataclass
class ParsedLetter:
    subject: str = ""
    sender_email: str = ""
    sender_name: str = ""
    delivered_to: list[str] = field(default_factory=list)
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    date_header: datetime | None = None
    received_header_at: datetime | None = None
    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    text: str = ""
    attachments: list[dict] = field(default_factory=list)
    headers: dict = field(default_factory=dict)
    malformed: bool = False
    parse_error: str = ""

    @property
    def recipients(self) -> dict:
        return {"delivered_to": self.delivered_to, "to": self.to, "cc": self.cc}


# Headers kept for the not-a-lead checks and for display.
KEPT_HEADERS = (
    "Auto-Submitted",
    "Precedence",
    "List-Id",
    "List-Unsubscribe",
    "X-Spam-Flag",
    "X-Autoreply",
    "X-Autorespond",
    "Return-Path",
    "Reply-To",
    "X-Mailer",
    "Content-Type",
)


def dedupe_key(message_id: str, raw: bytes) -> str:
    """Message-ID when the letter has one, else a hash of the raw letter."""
    if message_id:
        return message_id[:900]
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def html_to_text(markup: str) -> str:
    markup = BLOCK_END_RE.sub("\n", markup)
    text = html.unescape(nh3.clean(markup, tags=set(), clean_content_tags={"script", "style", "head", "title"}))
    return BLANK_LINES_RE.sub("\n\n", text).strip()


def _addresses(pairs) -> list[str]:
    return [addr.strip().lower() for _name, addr in pairs or [] if addr and "@" in addr]


def _header_addresses(value) -> list[str]:
    if not value:
        return []
    values = value if isinstance(value, list) else [value]
    return [addr.strip().lower() for _name, addr in getaddresses([str(v) for v in values]) if "@" in addr]


def _ids(value) -> list[str]:
    if isinstance(value, list):  # the header appears more than once
        value = " ".join(str(v) for v in value)
    return ANGLE_ID_RE.findall(value or "")


def _received_at(parsed) -> datetime | None:
    hops = parsed.received or []
    if not hops:
        return None
    # mailparser numbers hops from the bottom (first relay) up: the top
    # Received header, added by the receiving server, has the highest number.
    top = max(hops, key=lambda hop: hop.get("hop", 0))
    try:
        return parsedate_to_datetime(top.get("date", "")) if top.get("date") else None
    except (TypeError, ValueError):
        return None


def parse(raw: bytes, text_limit: int) -> ParsedLetter:
    try:
        parsed = mailparser.parse_from_bytes(raw)
    except Exception as error:  # noqa: BLE001 - any parser failure still stores the letter
        return ParsedLetter(
            malformed=True, parse_error=f"{type(error).__name__}: {error}"[:1000], text=_fallback_text(raw, text_limit)
        )
    letter = ParsedLetter()
    problems = []
    try:
        # Header names are case-insensitive ("List-ID", "In-reply-to").
        headers = {name.lower(): value for name, value in (parsed.headers or {}).items()}
        letter.subject = (parsed.subject or "")[:500]
        senders = parsed.from_ or []
        if senders:
            letter.sender_name = (senders[0][0] or "")[:200]
            letter.sender_email = (senders[0][1] or "").strip().lower()[:320]
        if "@" not in letter.sender_email:
            letter.sender_email = ""
            problems.append("no sender address")
        letter.delivered_to = _dedupe(_addresses(parsed.delivered_to) + _header_addresses(headers.get("x-original-to")))
        letter.to = _addresses(parsed.to)
        letter.cc = _addresses(parsed.cc)
        letter.date_header = parsed.date if isinstance(parsed.date, datetime) else None
        letter.received_header_at = _received_at(parsed)
        letter.message_id = (parsed.message_id or "").strip()[:998]
        letter.in_reply_to = (_ids(headers.get("in-reply-to", "")) or [""])[0][:998]
        letter.references = _ids(headers.get("references", ""))[-50:]
        letter.headers = {name: str(headers[name.lower()])[:1000] for name in KEPT_HEADERS if name.lower() in headers}
        body = "\n".join(parsed.text_plain) if parsed.text_plain else html_to_text("\n".join(parsed.text_html or []))
        letter.text = body.strip()[:text_limit]
        letter.attachments = [
            {
                "name": (a.get("filename") or "")[:255],
                "type": (a.get("mail_content_type") or "")[:100],
                "size": len(a.get("payload") or ""),
            }
            for a in parsed.attachments or []
        ]
        if not headers:
            problems.append("no headers")
    except Exception as error:  # noqa: BLE001
        problems.append(f"{type(error).__name__}: {error}")
    if problems:
        letter.malformed = True
        letter.parse_error = "; ".join(problems)[:1000]
        if not letter.text:
            letter.text = _fallback_text(raw, text_limit)
    return letter


def _fallback_text(raw: bytes, limit: int) -> str:
    return raw.decode("utf-8", errors="replace").replace("\x00", "")[:limit]


def _dedupe(items: list[str]) -> list[str]:
    return list(dict.fromkeys(items))
