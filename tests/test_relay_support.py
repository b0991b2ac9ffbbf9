"""Helpers for the relay tests: a real upstream SMTP server (aiosmtpd on
loopback) that can be stopped and started on its port, the relay itself
(the same controller `relay_smtp` runs) and a project with an upstream and
a credential. This module holds no tests of its own."""

import asyncio
import smtplib
import socket
import threading
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller

from projects.models import Project
from relay import credentials, server
from relay.models import Credential, Upstream


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes


@dataclass
class UpstreamServer:
    """aiosmtpd on a fixed loopback port. `replies` maps a recipient to the
    reply its RCPT gets (e.g. "451 4.3.0 later"); `hold` (an Event) makes DATA
    wait until it is set."""

    port: int = field(default_factory=free_port)
    letters: list[Received] = field(default_factory=list)
    replies: dict = field(default_factory=dict)
    hold: threading.Event | None = None
    in_data: threading.Event = field(default_factory=threading.Event)
    controller: Controller | None = None

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # noqa: N802
        reply = self.replies.get(address)
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # noqa: N802
        self.in_data.set()
        if self.hold is not None:
            while not self.hold.is_set():
                await asyncio.sleep(0.01)
        self.letters.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 2.0.0 Accepted"

    def start(self):
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self):
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


@pytest.fixture
def relay_settings(settings):
    settings.RELAY_ALLOW_PRIVATE_UPSTREAMS = True
    settings.RELAY_ALLOW_PLAIN_AUTH_ON_LOOPBACK = True
    settings.RELAY_HOSTNAME = "relay.test"
    settings.RELAY_UPSTREAM_TIMEOUT_SECONDS = 5
    # Relay passwords are 144 random bits: the hasher's cost is not what these tests are about.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    return settings


@pytest.fixture
def upstream_server():
    """Running; stop() it to play an upstream that is down."""
    upstream = UpstreamServer()
    upstream.start()
    yield upstream
    upstream.stop()


@pytest.fixture
def relay_server(relay_settings):
    controller = server.make_controller("127.0.0.1", free_port())
    controller.start()
    yield controller
    controller.stop()


@dataclass
class RelayAccount:
    project: Project
    upstream: Upstream
    credential: Credential
    username: str
    password: str


def make_account(upstream_port: int, *, name="Shop", **credential_fields) -> RelayAccount:
    project = Project.objects.create(name=name)
    upstream = Upstream.objects.create(
        project=project, host="127.0.0.1", port=upstream_port, security=Upstream.Security.NONE
    )
    credential, password = credentials.credential_create(project=project, name="Anna", **credential_fields)
    return RelayAccount(project, upstream, credential, credential.username, password)


@pytest.fixture
def relay_account(relay_settings, upstream_server):
    return make_account(upstream_server.port)


def client(relay, account=None) -> smtplib.SMTP:
    """A mail client connected to the relay, logged in when given an account."""
    conn = smtplib.SMTP("127.0.0.1", relay.port, local_hostname="client.test", timeout=15)
    conn.ehlo()
    if account is not None:
        conn.login(account.username, account.password)
    return conn


def letter(
    *,
    sender="anna@shop.test",
    to=("ivan@client.test",),
    subject="Price list",
    html='<p>Hello! The <a href="https://shop.test/prices">price list</a>.</p>',
) -> bytes:
    return (
        f"From: Anna <{sender}>\r\n"
        f"To: {', '.join(to)}\r\n"
        f"Subject: {subject}\r\n"
        "Message-ID: <letter-1@shop.test>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/alternative; boundary="b1"\r\n'
        "\r\n"
        "--b1\r\n"
        'Content-Type: text/plain; charset="utf-8"\r\n'
        "\r\n"
        "Hello! The price list: https://shop.test/prices\r\n"
        "--b1\r\n"
        'Content-Type: text/html; charset="utf-8"\r\n'
        "\r\n"
        f"<html><body>{html}</body></html>\r\n"
        "--b1--\r\n"
    ).encode()
