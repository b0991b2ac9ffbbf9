"""Helpers shared by the integration tests (API, webhooks, notifications,
analytics): a real HTTP receiver on loopback and leads made through the real
pipeline. This module holds no tests of its own."""

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from django.utils import timezone

from attribution.models import Lead
from mailbox_sync.services import ingest_raw
from substitution.services import lease_acquire
from tests.factories import letter_bytes
from tracker.models import Channel, Session, Visitor


@dataclass
class Received:
    method: str
    path: str
    query: dict
    headers: dict
    body: bytes

    def json(self):
        return json.loads(self.body)


@dataclass
class Reply:
    status: int = 200
    body: bytes = b"ok"
    headers: dict = field(default_factory=dict)


class Receiver:
    """A threading HTTP server on 127.0.0.1 that records every request and
    answers from a script of replies (then 200). `check`, if set, is called
    with each request and may return a Reply of its own (e.g. 400 when the
    request is not what the other side's API expects)."""

    def __init__(self):
        self.requests: list[Received] = []
        self.replies: list[Reply] = []
        self.check = None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                parts = urlsplit(self.path)
                request = Received(
                    method="POST",
                    path=parts.path,
                    query={k: v[0] for k, v in parse_qs(parts.query).items()},
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length),
                )
                receiver.requests.append(request)
                reply = receiver.check(request) if receiver.check else None
                if reply is None:
                    reply = receiver.replies.pop(0) if receiver.replies else Reply()
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def visitor_with_session(setup, vid="v1", **session_fields) -> Visitor:
    now = timezone.now()
    person = Visitor.objects.create(site=setup.site, vid=vid, created_at=now, last_seen_at=now)
    session_fields.setdefault("channel", Channel.PAID)
    Session.objects.create(visitor=person, started_at=now, last_seen_at=now, **session_fields)
    return person


def lead_from_visitor(setup, person, *, subject="Price list, please", sender="Ivan Petrov <ivan@client.test>") -> Lead:
    """A letter to the visitor's leased address, through the real pipeline."""
    allocation = lease_acquire(pool=setup.pool, visitor=person, now=timezone.now())
    letter = ingest_raw(mailbox=setup.mailbox, raw=letter_bytes(to=allocation.email, subject=subject, sender=sender))
    return Lead.objects.get(pk=letter.lead_id)


def lead_to_main_address(setup, *, subject="Hello", sender="Anna <anna@client.test>") -> Lead:
    letter = ingest_raw(
        mailbox=setup.mailbox, raw=letter_bytes(to=setup.site.original_email, subject=subject, sender=sender)
    )
    return Lead.objects.get(pk=letter.lead_id)
