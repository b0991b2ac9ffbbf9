"""What the SMTP relay calls: a letter's tracked copies.

MIME surgery on the raw bytes: the letter is walked once to find the body of
each text/html part (not attachments, not inside a forwarded message/rfc822),
each such body is decoded (its transfer encoding and charset) and parsed once
(engagement.rewriting). A recipient's copy is the original bytes with only
those bodies replaced by the recipient's HTML, re-encoded in the part's own
transfer encoding and line endings; headers, other parts, boundaries and the
preamble are the original bytes. Anything that cannot be tracked goes out
unchanged.
"""

import base64
import codecs
import logging
import quopri
import re
from dataclasses import dataclass, replace
from datetime import datetime
from email import policy
from email.header import decode_header, make_header
from email.parser import BytesHeaderParser

from django.utils import timezone

from . import replies, rewriting, services
from .models import Origin

log = logging.getLogger(__name__)

MAX_DEPTH = 20
MAX_LINE = 998
HEADER_END_RE = re.compile(rb"\r?\n\r?\n")
UNTRACKABLE_CHARSETS = {"utf-16", "utf-16-le", "utf-16-be", "utf-32", "utf-7"}


@dataclass
class TrackedCopy:
    recipients: list[str]  # envelope recipients that get exactly these bytes
    raw: bytes  # the letter to hand to the upstream SMTP server
    recipient_ids: list[int]  # engagement MessageRecipient ids of these recipients ([] when untracked)


@dataclass
class HtmlPart:
    header_start: int  # the part's headers' bytes in the letter, up to `start`
    start: int  # the body's bytes in the letter
    end: int
    encoding: str
    charset: str
    newline: bytes
    template: rewriting.Template | None = None
    global_links: list[int] | None = None


def _headers(block: bytes):
    return BytesHeaderParser(policy=policy.compat32).parsebytes(block)


def _body_start(raw: bytes, start: int, end: int) -> int:
    if raw.startswith(b"\r\n", start) or raw.startswith(b"\n", start):  # no headers at all
        return start + (2 if raw.startswith(b"\r\n", start) else 1)
    found = HEADER_END_RE.search(raw, start, end)
    return found.end() if found else end


def find_html_parts(raw: bytes, start: int = 0, end: int | None = None, depth: int = 0) -> list[HtmlPart]:
    """The text/html bodies of the entity raw[start:end], in order."""
    end = len(raw) if end is None else end
    if depth > MAX_DEPTH:
        return []
    body_at = _body_start(raw, start, end)
    headers = _headers(raw[start:body_at])
    content_type = headers.get_content_type()
    if content_type.startswith("multipart/"):
        boundary = headers.get_param("boundary")
        if not boundary or not isinstance(boundary, str):
            return []
        parts = []
        for part_start, part_end in _multipart_ranges(raw, body_at, end, boundary.encode("ascii", "replace")):
            parts += find_html_parts(raw, part_start, part_end, depth + 1)
        return parts
    if content_type != "text/html":
        return []
    if (headers.get("content-disposition") or "").strip().lower().startswith("attachment"):
        return []
    charset = (headers.get_content_charset() or "us-ascii").lower()
    try:
        charset = codecs.lookup(charset).name
    except LookupError:
        return []
    if charset in UNTRACKABLE_CHARSETS:
        return []
    encoding = (headers.get("content-transfer-encoding") or "7bit").strip().lower()
    if encoding not in ("7bit", "8bit", "binary", "base64", "quoted-printable"):
        return []
    newline = b"\r\n" if b"\r\n" in raw[start:body_at] or start == body_at else b"\n"
    return [HtmlPart(start, body_at, end, encoding, charset, newline)]


def _multipart_ranges(raw: bytes, start: int, end: int, boundary: bytes) -> list[tuple[int, int]]:
    """The parts between `--boundary` lines (the line break before a delimiter
    belongs to it, as RFC 2046 says)."""
    delimiter = b"--" + boundary
    positions = []
    at = start
    while True:
        found = raw.find(delimiter, at, end)
        if found == -1:
            break
        at = found + len(delimiter)
        if found != start and raw[found - 1 : found] != b"\n":
            continue  # not at a line start
        after = raw[at : at + 2]
        line_end = raw.find(b"\n", at, end)
        positions.append((found, line_end + 1 if line_end != -1 else end, after == b"--"))
        if after == b"--":
            break
    ranges = []
    for (_found, content_start, closing), following in zip(positions, positions[1:] + [None], strict=False):
        if closing or following is None:
            break
        part_end = following[0]
        if raw[part_end - 2 : part_end] == b"\r\n":
            part_end -= 2
        elif raw[part_end - 1 : part_end] == b"\n":
            part_end -= 1
        ranges.append((content_start, max(part_end, content_start)))
    return ranges


def decode_body(raw: bytes, part: HtmlPart) -> str:
    body = raw[part.start : part.end]
    if part.encoding == "base64":
        data = base64.b64decode(re.sub(rb"[^A-Za-z0-9+/=]", b"", body), validate=False)
    elif part.encoding == "quoted-printable":
        data = quopri.decodestring(body)
    else:
        data = body
    return data.decode(part.charset, "surrogateescape")


def encode_body(text: str, original: bytes, part: HtmlPart) -> bytes:
    data = text.encode(part.charset, "surrogateescape")
    trail = original[len(original.rstrip(b"\r\n")) :]
    if part.encoding == "base64":
        encoded = base64.b64encode(data)
        lines = [encoded[i : i + 76] for i in range(0, len(encoded), 76)]
        return part.newline.join(lines) + trail
    if part.encoding == "quoted-printable":
        encoded = quopri.encodestring(data.replace(b"\r\n", b"\n"))
        encoded = encoded.rstrip(b"\n") if not data.endswith(b"\n") else encoded
        return encoded.replace(b"\n", part.newline) if part.newline != b"\n" else encoded
    return data


def _overlong(body: bytes) -> bool:
    """A line longer than SMTP allows (RFC 5322: 998 octets without the line break)."""
    return any(len(line.rstrip(b"\r")) > MAX_LINE for line in body.split(b"\n"))


def as_quoted_printable(headers: bytes, newline: bytes) -> bytes:
    """A part's header block (with its closing blank line) declaring
    quoted-printable instead of its own transfer encoding."""
    declared = b"Content-Transfer-Encoding: quoted-printable"
    kept, skipping, replaced = [], False, False
    for line in headers.split(newline)[:-2]:
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.lower().startswith(b"content-transfer-encoding:")
        if skipping and not replaced:
            kept.append(declared)  # where the old one stood
            replaced = True
        elif not skipping:
            kept.append(line)
    if not replaced:
        kept.append(declared)
    return newline.join([*kept, b"", b""])


def encoded_part(body: str, raw: bytes, part: HtmlPart) -> tuple[bytes, bytes]:
    """The part's header block and its new body. A 7bit or 8bit body that the
    longer tracked links would push past SMTP's line limit is sent
    quoted-printable instead (its headers say so): rewritten, never broken."""
    headers, original = raw[part.header_start : part.start], raw[part.start : part.end]
    encoded = encode_body(body, original, part)
    if part.encoding in ("7bit", "8bit", "binary") and _overlong(encoded):
        headers = as_quoted_printable(headers, part.newline)
        encoded = encode_body(body, original, replace(part, encoding="quoted-printable"))
    return headers, encoded


def _header_text(headers, name: str) -> str:
    value = headers.get(name)
    if value is None:
        return ""
    try:
        return str(make_header(decode_header(str(value)))).strip()
    except (ValueError, LookupError, UnicodeError):
        return str(value).strip()


def track_relayed_letter(
    *, project_id: int, raw: bytes, mail_from: str, recipients: list[str], client_ip: str | None
) -> list[TrackedCopy]:
    """The copies to send: one per tracked recipient (their own pixel and signed links in every
    text/html part; every other byte of the letter unchanged), and one untracked copy (the raw
    bytes as given) for all the recipients that are not tracked (opted out, tracking off for the
    project, or HTML it cannot track). A letter with no HTML part at all (plain text) goes out
    unchanged, its recipients registered all the same (delivered, replied). Registers a Message
    (via "relay", with the letter's Message-ID header and the client's address for the `self`
    verdict) and one recipient per tracked address. Never raises on bad input: a letter it
    cannot track goes out unchanged."""
    try:
        return _track(project_id=project_id, raw=raw, mail_from=mail_from, recipients=recipients, client_ip=client_ip)
    except Exception:  # noqa: BLE001 - a letter is never lost for want of tracking
        log.exception("Relayed letter not tracked; it goes out unchanged")
        return [TrackedCopy(list(recipients), raw, [])] if recipients else []


def _track(*, project_id, raw, mail_from, recipients, client_ip) -> list[TrackedCopy]:
    untouched = [TrackedCopy(list(recipients), raw, [])] if recipients else []
    if not recipients or not services.engagement_settings(project_id).tracking_enabled:
        return untouched
    parts = find_html_parts(raw)
    excluded = services.opted_out(project_id, recipients)
    tracked_keys, tracked_envelope, untracked = {}, [], []
    for address in recipients:
        key = services.normalize_email(address)
        if key and key not in excluded and key not in tracked_keys:
            tracked_keys[key] = address
            tracked_envelope.append(address)
        else:
            untracked.append(address)
    if not tracked_keys:
        return untouched
    top = _headers(raw[: _body_start(raw, 0, len(raw))])
    if not parts:
        if b"text/html" in raw.lower():  # HTML in a form that cannot be tracked: out unchanged, not a text letter
            return untouched
        return _registered_untracked(project_id, raw, top, mail_from, client_ip, tracked_keys, untracked)
    urls, index_of = [], {}
    for part in parts:
        part.template = rewriting.prepare(decode_body(raw, part))
        part.global_links = []
        for url in part.template.links:
            if url not in index_of:
                index_of[url] = len(urls)
                urls.append(url)
            part.global_links.append(index_of[url])
    message, links, rows = services.register(
        project_id=project_id,
        origin=Origin.RELAY,
        urls=urls,
        emails=list(tracked_keys),
        subject=_header_text(top, "subject"),
        has_text=b"text/plain" in raw[:65536].lower(),
        message_id=replies.normalize_message_id(_header_text(top, "message-id")),
        mail_from=mail_from,
        client_ip=client_ip,
        size=len(raw),
    )
    copies = []
    for row in rows:
        pieces, position = [], 0
        for part in parts:
            own_links = [links[i] for i in part.global_links]
            body, _urls, _pixel = services.render_copy(part.template, row.pk, own_links)
            headers, encoded = encoded_part(body, raw, part)
            pieces += [raw[position : part.header_start], headers, encoded]
            position = part.end
        pieces.append(raw[position:])
        copies.append(TrackedCopy([tracked_keys[row.email]], b"".join(pieces), [row.pk]))
    if untracked:
        copies.append(TrackedCopy(untracked, raw, []))
    return copies


def _registered_untracked(project_id, raw, top, mail_from, client_ip, tracked_keys, untracked) -> list[TrackedCopy]:
    """A letter with no HTML part to track (plain text): it goes out unchanged,
    but the message and its recipients are registered all the same, so the
    Sent letters show it with its deliveries, and a reply to it is a reply."""
    _message, _links, rows = services.register(
        project_id=project_id,
        origin=Origin.RELAY,
        urls=[],
        emails=list(tracked_keys),
        subject=_header_text(top, "subject"),
        has_html=False,
        has_text=True,
        message_id=replies.normalize_message_id(_header_text(top, "message-id")),
        mail_from=mail_from,
        client_ip=client_ip,
        size=len(raw),
    )
    by_email = {row.email: row.pk for row in rows}
    copies = [TrackedCopy(list(tracked_keys.values()), raw, [by_email[key] for key in tracked_keys])]
    if untracked:
        copies.append(TrackedCopy(untracked, raw, []))
    return copies


def recipients_delivered(recipient_ids: list[int], at: datetime) -> None:
    """The upstream accepted these recipients' copy (the "delivered" figure)."""
    services.recipients_delivered(recipient_ids, at or timezone.now())
