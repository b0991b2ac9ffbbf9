"""The collect endpoint's HTTP exchange, in one place for both ways a request
reaches it: the Django view (tracker.views.collect) and the WSGI route that
answers it before Django's request handling (tracker.wsgi).

`respond` takes the few request values collect needs and gives back the
status, the JSON body and the headers. It never raises: a bad request is a
4xx with {"error"}, an unexpected failure is logged and answered 503 with
Retry-After, never 500."""

import json
import logging
import re
from dataclasses import dataclass, field
from http import HTTPStatus

from django.conf import settings
from django.http import HttpResponse
from django.utils import timezone

from . import services

log = logging.getLogger("tracker.views")
# What a browser sends as Origin; anything else (a forged header with line breaks) is not echoed.
ORIGIN_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*://[^\s/]+\Z")
JSON = "application/json"


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @property
    def status_line(self) -> str:
        return f"{self.status} {HTTPStatus(self.status).phrase}"


def cors_headers(origin: str) -> list[tuple[str, str]]:
    """CORS for the snippet's cross-origin POST: the Origin echoed only when it
    looks like one; never cached by a proxy."""
    headers = []
    if origin and ORIGIN_RE.match(origin):
        headers += [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Methods", "POST"),
            ("Access-Control-Max-Age", "86400"),
        ]
    return headers + [("Vary", "Origin"), ("Cache-Control", "no-store")]


def _json(status: int, payload: dict, origin: str, *extra: tuple[str, str]) -> Reply:
    body = json.dumps(payload, separators=(",", ":")).encode()
    return Reply(status, body, [("Content-Type", JSON), *extra, *cors_headers(origin)])


def error(status: int, message: str, origin: str = "", retry_after: int | None = None) -> Reply:
    extra = []
    if status == 429:
        extra.append(("Retry-After", str(retry_after or 60)))  # the limiter's own wait when it gives one
    elif status == 503:
        extra.append(("Retry-After", "30"))
    return _json(status, {"error": message}, origin, *extra)


def respond(*, method: str, origin: str, user_agent: str, content_length: str, read_body, ip: str) -> Reply:
    """POST: a text/plain JSON body from the snippet (no CORS preflight).
    `read_body()` gives the body; it is called only once the declared length
    is known to be within COLLECT_MAX_BODY_BYTES."""
    if method == "OPTIONS":
        return Reply(204, headers=cors_headers(origin))
    if method != "POST":
        return error(405, "Use POST", origin)
    try:
        if int(content_length or 0) > settings.COLLECT_MAX_BODY_BYTES:
            raise services.CollectError(413, "Request body too large")
        request = services.parse_request(read_body())
        answer = services.collect(request=request, origin=origin, user_agent=user_agent, now=timezone.now(), ip=ip)
        return _json(200, answer, origin)
    except services.CollectError as failure:
        return error(failure.status, failure.message, origin, getattr(failure, "retry_after", None))
    except ValueError:
        return error(400, "Malformed request", origin)
    except Exception:
        log.exception("collect failed")
        return error(503, "Temporarily unavailable", origin)


def to_response(reply: Reply) -> HttpResponse:
    """The reply as a Django response (for the views)."""
    response = HttpResponse(reply.body, status=reply.status)
    if not reply.body:
        del response["Content-Type"]
    for name, value in reply.headers:
        response[name] = value
    return response
