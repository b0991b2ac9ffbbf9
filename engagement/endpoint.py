"""The pixel and click endpoints' HTTP exchange, for both ways a request
reaches them: the Django views (engagement.views) and the WSGI route that
answers them before Django's request handling (engagement.wsgi).

Pixel: always the 43-byte GIF with no-store headers, whatever the token; an
event is queued only for a token that verifies. Click: a verified token is
302 to the link's URL, as stored when the message was made; anything else is
a 400 page, never a redirect to something taken from the request. HEAD gets
the same answer without a body; it is recorded as a scanner's, never counted
as a person's. Neither ever raises."""

import base64
import logging
import time

from tracker.endpoint import Reply

from . import links, recording, tokens

log = logging.getLogger(__name__)

GIF = base64.b64decode("R0lGODlhAQABAIAAAP///wAAACH5BAEAAAAALAAAAAABAAEAAAICRAEAOw==")
NO_STORE = [
    ("Cache-Control", "private, no-store, no-cache, no-cache=Set-Cookie, proxy-revalidate, max-age=0"),
    ("Pragma", "no-cache"),
    ("Expires", "Thu, 01 Jan 1970 00:00:00 GMT"),
]
PIXEL_HEADERS = [("Content-Type", "image/gif"), ("Content-Length", str(len(GIF))), *NO_STORE]
BAD_LINK_PAGE = (
    b"<!doctype html><meta charset=utf-8><title>Link not valid</title>"
    b"<p>This link is not valid: it was changed or cut short. Open the letter again and use its link.</p>"
)
METHODS = ("GET", "HEAD")


def _error(status: int, body: bytes, method: str) -> Reply:
    headers = [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", str(len(body))), *NO_STORE]
    if status == 405:
        headers.append(("Allow", "GET, HEAD"))
    return Reply(status, b"" if method == "HEAD" else body, headers)


def pixel(*, token: str, method: str, user_agent: str, ip: str) -> Reply:
    body = b"" if method == "HEAD" else GIF
    if method not in METHODS:
        return _error(405, b"Use GET", method)
    try:
        parsed = tokens.verify(token)
        if parsed.kind == tokens.OPEN:
            recording.record(
                kind=tokens.OPEN,
                recipient_id=parsed.recipient_id,
                link_id=0,
                method=method,
                user_agent=user_agent,
                ip=ip,
                at=time.time(),
            )
    except tokens.BadToken:
        pass
    except Exception:  # noqa: BLE001 - the GIF is answered whatever happens
        log.exception("pixel not recorded")
    return Reply(200, body, PIXEL_HEADERS)


def click(*, token: str, method: str, user_agent: str, ip: str) -> Reply:
    if method not in METHODS:
        return _error(405, b"Use GET", method)
    try:
        parsed = tokens.verify(token)
        if parsed.kind == tokens.CLICK:
            target = links.location(parsed.link_id)
        elif parsed.kind == tokens.HONEYPOT:
            target = links.HONEYPOT_TARGET
        else:
            target = None
    except tokens.BadToken:
        target = None
    except Exception:  # noqa: BLE001
        log.exception("click not answered")
        return _error(503, b"Temporarily unavailable; try again shortly.", method)
    if target is None:
        return _error(400, BAD_LINK_PAGE, method)
    recording.record(
        kind=parsed.kind,
        recipient_id=parsed.recipient_id,
        link_id=parsed.link_id,
        method=method,
        user_agent=user_agent,
        ip=ip,
        at=time.time(),
    )
    return Reply(
        302, b"", [("Location", target), ("Content-Length", "0"), ("Referrer-Policy", "no-referrer"), *NO_STORE]
    )
