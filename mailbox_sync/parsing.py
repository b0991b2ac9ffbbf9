"""Raw RFC 822 bytes → the fields a letter keeps.

The letter is read once into the standard library's compat32 message tree
(built by `mimetree`, which cuts the bodies out whole instead of reading
them line by line; the parser mail-parser itself uses; mail-parser's full parse would also
decode every part by its declared charset and build two dicts we would throw
away). Dates, the Date header's and the top Received header's, are read by
mail-parser's RFC 5322 date parser. Headers, names and text are decoded by
`charsets`, because Russian mail so often declares the wrong charset or
none. Never raises: a letter that cannot be parsed is still stored, flagged
malformed with the reason.
"""

import binascii
import hashlib
import html
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.parser import BytesHeaderParser
from email.policy import Compat32, compat32
from email.utils import getaddresses

import nh3
from mailparser.dates import parse_mail_date

from . import charsets, identity, mimetree

BLOCK_END_RE = re.compile(r"(?i)<\s*(br\s*/?|/p|/div|/tr|/li|/h[1-6])\s*>")
BLANK_LINES_RE = re.compile(r"\n\s*\n\s*\n+")
ANGLE_ID_RE = re.compile(r"<[^<>\s]+>")
# One mailbox in plain ASCII: an optional phrase of atoms (no dots, quotes or
# comments) and an address in angle brackets, or a bare address.
_ATEXT = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_ADDR_SPEC = rf"{_ATEXT}(?:\.{_ATEXT})*@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*"
_SIMPLE_MAILBOX_RE = re.compile(
    rf"^[ \t]*(?:(?P<name>{_ATEXT}(?:[ \t]+{_ATEXT})*)?[ \t]*<(?P<address>{_ADDR_SPEC})>|(?P<bare>{_ADDR_SPEC}))[ \t]*$"
)
HTML_META_CHARSET_RE = re.compile(rb"""(?i)<meta[^>]+charset\s*=\s*["']?([\w.:-]+)""")
# Bytes of a text part decoded at most: only the start of the text is kept,
# so a long part is cut before it is decoded (HTML needs more: markup and
# style come before the words).
PLAIN_BYTES_PER_CHAR = 4
HTML_BYTES = 512 * 1024

# Headers kept for the not-a-lead checks and for display.
KEPT_HEADERS = (
    "Auto-Submitted",
    "Precedence",
    "List-Id",
    "List-Unsubscribe",
    "X-Spam-Flag",
    "X-Spam-Status",
    "X-Autoreply",
    "X-Autorespond",
    "Return-Path",
    "Reply-To",
    "X-Mailer",
    "Content-Type",
)


@dataclass
class ParsedLetter:
    subject: str = ""
    sender_email: str = ""
    sender_name: str = ""
    delivered_to: list[str] = field(default_factory=list)
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    date_header: datetime | None = None
    date_offset_minutes: int | None = None
    received_header_at: datetime | None = None
    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    text: str = ""
    attachments: list[dict] = field(default_factory=list)
    headers: dict = field(default_factory=dict)
    malformed: bool = False
    parse_error: str = ""
    digest: str = ""  # identity.content_digest of the raw letter

    @property
    def recipients(self) -> dict:
        return {"delivered_to": self.delivered_to, "to": self.to, "cc": self.cc}


class _RawValues(Compat32):
    """compat32, except that a header value holding raw 8-bit bytes (kept as
    surrogate escapes) is handed over as it is, for `charsets` to decode in
    its real charset: compat32 would turn those bytes into replacement signs
    (an attachment named in koi8-r would lose its name)."""

    def header_fetch_parse(self, name, value):
        return value


RAW_VALUES = _RawValues()


def dedupe_key(message_id: str, raw: bytes) -> str:
    """A reply's key in the Sent folder: its Message-ID when it has one, else
    a hash of its raw headers (never From+Subject+Date, which two different
    letters can share). Letters of the inbox are known by `identity`."""
    if message_id:
        return message_id[:900]
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def html_to_text(markup: str) -> str:
    markup = BLOCK_END_RE.sub("\n", markup)
    text = html.unescape(nh3.clean(markup, tags=set(), clean_content_tags={"script", "style", "head", "title"}))
    return BLANK_LINES_RE.sub("\n\n", text.replace("\xa0", " ")).strip()


def parse(raw: bytes, text_limit: int) -> ParsedLetter:
    letter = _parse(raw, text_limit)
    letter.digest = identity.content_digest(raw)
    return letter


def _parse(raw: bytes, text_limit: int) -> ParsedLetter:
    try:
        message = mimetree.message_from_bytes(raw, RAW_VALUES)
    except Exception as error:  # noqa: BLE001 - any parser failure (deep nesting too) still stores the letter
        return _unparsed(raw, text_limit, f"{type(error).__name__}: {error}")
    letter = ParsedLetter()
    problems = []
    try:
        headers = _header_index(message)
        letter.subject = charsets.decode_header(_first(headers, "subject"))[:500]
        letter.sender_name, letter.sender_email = _sender(headers)
        if not letter.sender_email:
            problems.append("no sender address")
        letter.delivered_to = _dedupe(
            _addresses(headers.get("delivered-to")) + _addresses(headers.get("x-original-to"))
        )
        letter.to = _addresses(headers.get("to"))
        letter.cc = _addresses(headers.get("cc"))
        letter.date_header, letter.date_offset_minutes = _date(_first(headers, "date"))
        letter.received_header_at = _received_at(_first(headers, "received"))
        letter.message_id = _message_id(_first(headers, "message-id"))
        letter.in_reply_to = (_ids(headers.get("in-reply-to")) or [""])[0][:998]
        letter.references = _ids(headers.get("references"))[-50:]
        letter.headers = {
            name: charsets.decode_header(headers[name.lower()][0])[:1000]
            for name in KEPT_HEADERS
            if name.lower() in headers
        }
        text, letter.attachments = _body(message, text_limit)
        letter.text = text[:text_limit]
        if not headers:
            problems.append("no headers")
    except Exception as error:  # noqa: BLE001 - keep what was read, flag the rest
        problems.append(f"{type(error).__name__}: {error}")
    if problems:
        letter.malformed = True
        letter.parse_error = "; ".join(problems)[:1000]
        if not letter.text:
            letter.text = _fallback_text(raw, text_limit)
    return letter


@dataclass
class ParsedReply:
    """What a letter in the Sent folder tells: whom it answered, when."""

    message_id: str = ""
    in_reply_to: str = ""
    references: list[str] = field(default_factory=list)
    recipients: list[str] = field(default_factory=list)


def parse_reply(raw_headers: bytes) -> ParsedReply:
    """Headers only: the Sent folder's bodies are never read."""
    try:
        message = BytesHeaderParser(policy=compat32).parsebytes(raw_headers)
        headers = _header_index(message)
        return ParsedReply(
            message_id=_message_id(_first(headers, "message-id")),
            in_reply_to=(_ids(headers.get("in-reply-to")) or [""])[0][:998],
            references=_ids(headers.get("references"))[-50:],
            recipients=_dedupe(
                _addresses(headers.get("to")) + _addresses(headers.get("cc")) + _addresses(headers.get("bcc"))
            ),
        )
    except Exception:  # noqa: BLE001 - an unreadable reply is a reply to no one
        return ParsedReply()


# --- Headers ------------------------------------------------------------------


def _header_index(message) -> dict[str, list]:
    # Header names are case-insensitive ("List-ID", "In-reply-to"). Raw
    # values: items() would already have decoded 8-bit bytes, lossily.
    index: dict[str, list] = {}
    for name, value in message.raw_items():
        index.setdefault(name.lower(), []).append(value)
    return index


def _first(headers: dict, name: str):
    values = headers.get(name)
    return values[0] if values else None


def _addresses(values) -> list[str]:
    return _dedupe(address for _name, address in _mailboxes(values))


def _mailboxes(values) -> list[tuple[str, str]]:
    """(name, address) pairs; names still encoded, addresses lower case."""
    if not values:
        return []
    raw = [str(value) for value in values]
    simple = _SIMPLE_MAILBOX_RE.match(raw[0]) if len(raw) == 1 else None
    if simple is not None:
        # The usual header ("Name <user@example.com>" or a bare address) read
        # as getaddresses would, at a fraction of its cost.
        name, address = simple.group("name") or "", simple.group("address") or simple.group("bare")
        return [(" ".join(name.split()), address.lower()[:320])]
    pairs = getaddresses(raw)
    if not any("@" in address for _name, address in pairs):
        # Some mailers encode the whole header, address included.
        pairs = getaddresses([charsets.decode_header(value) for value in raw])
    result = []
    for name, address in pairs:
        address = charsets.decode(charsets.header_bytes(address.strip())).lower()
        if "@" in address and " " not in address:
            result.append((name, address[:320]))
    return result


def _sender(headers: dict) -> tuple[str, str]:
    for header in ("from", "sender", "reply-to"):
        for name, address in _mailboxes(headers.get(header, [])[:1]):
            name = charsets.decode_header(name).strip().strip("\"'").strip()
            return ("" if name.lower() == address else name[:200]), address
    return "", ""


def _message_id(value) -> str:
    if value is None:
        return ""
    text = charsets.decode(charsets.header_bytes(value)).strip()
    ids = ANGLE_ID_RE.findall(text)
    return (ids[0] if ids else text)[:998]


def _ids(values) -> list[str]:
    text = " ".join(str(value) for value in values or [])
    return ANGLE_ID_RE.findall(text)


def _date(value) -> tuple[datetime | None, int | None]:
    """The moment in UTC and the writer's offset from UTC, in minutes."""
    if value is None:
        return None, None
    result = parse_mail_date(charsets.header_bytes(value).decode("ascii", "replace"))
    if result.value is None:
        return None, None
    try:
        return result.value, round(float(result.timezone) * 60)
    except (TypeError, ValueError):
        return result.value, None


def _received_at(value) -> datetime | None:
    """The date of the top Received header (added by the receiving server,
    the first one in the letter): the arrival time of a letter from a file."""
    if value is None:
        return None
    text = charsets.header_bytes(value).decode("ascii", "replace")
    return _date(text.rpartition(";")[2])[0] if ";" in text else None


# --- Body ---------------------------------------------------------------------


def _body(message, text_limit: int) -> tuple[str, list[dict]]:
    """The letter's text (text/plain, else text from HTML) and its
    attachments. Parts inside an attached letter or archive are not the
    letter's own text."""
    plain, markup, attachments = [], [], []
    inside_attachment: set[int] = set()
    for part in message.walk():
        if id(part) in inside_attachment:
            continue
        content_type = part.get_content_type()
        disposition = part.get_content_disposition()
        filename = _filename(part)
        if part.is_multipart():
            if content_type == "message/rfc822" or disposition == "attachment":
                attachments.append(_attachment(part, filename or "attached letter.eml", content_type))
                inside_attachment.update(id(child) for child in part.walk() if child is not part)
            continue
        if content_type in ("text/plain", "text/html") and disposition != "attachment" and not filename:
            data = _payload(part)
            charset = part.get_param("charset")
            budget = HTML_BYTES if content_type == "text/html" else text_limit * PLAIN_BYTES_PER_CHAR + 1024
            data = _head(data, budget)
            if content_type == "text/html":
                if not charset:
                    meta = HTML_META_CHARSET_RE.search(data[:4096])
                    charset = meta.group(1).decode("ascii") if meta else None
                markup.append(charsets.decode(data, _charset_text(charset)))
            else:
                plain.append(charsets.decode(data, _charset_text(charset)))
            continue
        attachments.append(_attachment(part, filename, content_type))
    text = "\n".join(t for t in plain if t.strip())
    if not text.strip() and markup:
        text = html_to_text("\n".join(markup))
    return text.replace("\r\n", "\n").replace("\x00", "").strip(), attachments


def _head(data: bytes, size: int) -> bytes:
    """The first `size` bytes, without a UTF-8 character cut in two at the end
    (a cut character would look like a wrong charset)."""
    if len(data) <= size:
        return data
    head = data[:size]
    for back in range(1, min(4, len(head)) + 1):
        byte = head[-back]
        if byte & 0xC0 == 0xC0:  # the lead byte of a multi-byte character
            length = 2 if byte < 0xE0 else 3 if byte < 0xF0 else 4
            return head[:-back] if back < length else head
        if byte & 0xC0 != 0x80:
            break
    return head


def _attachment(part, filename: str, content_type: str) -> dict:
    if part.is_multipart():
        size = sum(len(_payload(child)) for child in part.walk() if not child.is_multipart())
    else:
        size = len(_payload(part))
    return {"name": filename[:255], "type": content_type[:100], "size": size}


def _filename(part) -> str:
    if not any("name" in str(part.get(header, "")).lower() for header in ("content-disposition", "content-type")):
        return ""  # no filename or name parameter: spares get_filename's parsing of both headers
    try:
        name = part.get_filename()
    except Exception:  # noqa: BLE001 - a broken parameter is no name
        return ""
    return charsets.decode_header(name) if name else ""


def _charset_text(charset) -> str | None:
    if isinstance(charset, tuple):  # RFC 2231 form: (charset, language, value)
        charset = charset[2]
    return str(charset) if charset else None


def _payload(part) -> bytes:
    """The part's bytes, decoded from its transfer encoding leniently: broken
    base64 padding and odd encoding names are common."""
    # The undecoded text: get_payload() would re-decode 8-bit bytes with the
    # declared charset (lossily, when it is wrong).
    payload = part._payload
    if not isinstance(payload, str):
        return b""
    data = payload.encode("ascii", "surrogateescape")
    encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
    if encoding == "base64":
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            cleaned = re.sub(rb"[^A-Za-z0-9+/]", b"", data)
            cleaned = cleaned[: len(cleaned) - len(cleaned) % 4]
            return binascii.a2b_base64(cleaned) if cleaned else b""
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    if encoding in ("x-uuencode", "uuencode", "x-uue", "uue"):
        decoded = part.get_payload(decode=True)
        return decoded if isinstance(decoded, bytes) else data
    return data


# --- Fallbacks ----------------------------------------------------------------


def _unparsed(raw: bytes, text_limit: int, reason: str) -> ParsedLetter:
    return ParsedLetter(malformed=True, parse_error=reason[:1000], text=_fallback_text(raw, text_limit))


def _fallback_text(raw: bytes, limit: int) -> str:
    return charsets.decode(raw[: limit * 4 + 4096]).replace("\x00", "")[:limit]


def _dedupe(items) -> list[str]:
    return list(dict.fromkeys(items))
