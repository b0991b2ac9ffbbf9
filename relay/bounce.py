"""The letter that tells a sender their letter could not be delivered: a
delivery status notification (RFC 3464, multipart/report) with the failed
recipients, the upstream's last reply for each, and the original headers."""

from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage, Message
from email.utils import format_datetime, make_msgid

from django.utils.translation import gettext as _

from . import conf

HEADERS_LIMIT = 64 * 1024


def _status(code: int) -> str:
    """5.0.0 for a recipient the upstream refused for good, 4.4.7 (delivery time expired) for the others."""
    return "5.0.0" if code >= 500 else "4.4.7"


def _block(fields: list[tuple[str, str]]) -> Message:
    block = Message()
    for name, value in fields:
        block[name] = value
    return block


def original_headers(raw: bytes) -> bytes:
    """The letter's header section, as it was (never its body)."""
    end = raw.find(b"\r\n\r\n")
    if end < 0:
        end = raw.find(b"\n\n")
    return (raw if end < 0 else raw[: end + 2])[:HEADERS_LIMIT]


def build(
    *,
    sender: str,
    failures: list[tuple[str, int, str]],
    original: bytes,
    arrived: datetime,
    now: datetime,
    expired: bool,
) -> bytes:
    """The DSN for `sender` about `failures` [(recipient, code, reply)]."""
    host = conf.hostname()
    subject = message_from_bytes(original_headers(original), policy=policy.compat32).get("Subject", "")
    report = EmailMessage()
    report["From"] = f"Mail Delivery System <MAILER-DAEMON@{host}>"
    report["To"] = sender
    report["Subject"] = _("Undelivered letter returned to sender")
    report["Date"] = format_datetime(now)
    report["Message-ID"] = make_msgid(domain=host)
    report["Auto-Submitted"] = "auto-replied"
    lines = [
        _("Your letter could not be delivered to these recipients:"),
        "",
        *[f"  {rcpt}: {f'{code} ' if code else ''}{reply}" for rcpt, code, reply in failures],
        "",
    ]
    if expired:
        lines.append(_("The receiving server did not accept it for %(hours)g hours.") % {"hours": conf.queue_hours()})
    if subject:
        lines.append(_("Subject: %(subject)s") % {"subject": str(subject)[:200]})
    report.set_content("\n".join(lines) + "\n")
    report.make_mixed()
    report.replace_header("Content-Type", 'multipart/report; report-type="delivery-status"')
    report.set_boundary(make_msgid(domain="boundary").strip("<>").replace("@", "."))

    status = Message()
    status["Content-Type"] = "message/delivery-status"
    blocks = [_block([("Reporting-MTA", f"dns; {host}"), ("Arrival-Date", format_datetime(arrived))])]
    for rcpt, code, reply in failures:
        fields = [
            ("Final-Recipient", f"rfc822; {rcpt}"),
            ("Action", "failed"),
            ("Status", _status(code)),
            ("Last-Attempt-Date", format_datetime(now)),
        ]
        if code:
            fields.insert(3, ("Diagnostic-Code", f"smtp; {code} {reply}"))
        blocks.append(_block(fields))
    status.set_payload(blocks)
    report.attach(status)

    headers = Message()
    headers["Content-Type"] = "text/rfc822-headers"
    headers["Content-Transfer-Encoding"] = "8bit"
    headers.set_payload(original_headers(original).decode("utf-8", errors="replace"))
    report.attach(headers)
    return report.as_bytes(policy=policy.SMTP)
