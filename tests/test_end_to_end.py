"""The whole flow on real parts: Chromium → snippet → collect → lease →
letter in Dovecot → IMAP sync → lead with the visitor's source."""

import http.client
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

import pytest
from django.utils import timezone

from attribution.models import Lead, MatchKind
from mailbox_sync.models import Letter
from mailbox_sync.services import sync_mailbox
from substitution.models import Address, Lease
from tests.conftest import free_port
from tests.factories import letter_bytes, make_setup
from tests.test_snippet_support import Watch, wait_until

pytestmark = [pytest.mark.browser, pytest.mark.imap, pytest.mark.django_db(transaction=True)]

ORIGINAL = "info@shop.test"
PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script async src="{live}/s/{key}.js"></script></head>
<body><h1>Shop</h1>
<p>Write to us: <a id="contact" href="mailto:INFO@shop.test?subject=Order">info@shop.test</a></p>
<p id="plain">Or copy: info@shop.test</p>
</body></html>"""
UTM = "?utm_source=newsletter&utm_medium=email&utm_campaign=autumn"


def shown_address(page) -> str:
    page.wait_for_function("document.getElementById('contact').textContent !== 'info@shop.test'", timeout=10_000)
    return page.locator("#contact").text_content()


def test_a_visitor_writes_from_the_page_and_a_lead_with_their_campaign_appears(
    live_server, page_server, dovecot, browser
):
    user, password = dovecot.account()
    setup = make_setup(original=ORIGINAL, imap_port=dovecot.port, imap_user=user, imap_password=password)
    page_server.pages["/landing"] = PAGE.format(live=live_server.url, key=setup.site.site_key)

    context = browser.new_context()
    page = context.new_page()
    page.goto(page_server.url + "/landing" + UTM)
    address = shown_address(page)

    pool_addresses = set(Address.objects.filter(pool=setup.pool).values_list("email", flat=True))
    assert address in pool_addresses
    assert address != ORIGINAL
    # mailto: matched case-insensitively, its ?subject= kept; plain text replaced too.
    assert page.locator("#contact").get_attribute("href") == f"mailto:{address}?subject=Order"
    assert page.locator("#plain").text_content() == f"Or copy: {address}"

    lease = Lease.objects.get(address__email=address, released_at__isnull=True)
    session = lease.visitor.sessions.get()
    assert (session.utm_source, session.utm_medium, session.utm_campaign) == ("newsletter", "email", "autumn")

    # Another visitor (a second browser profile) is shown another address.
    other = browser.new_context().new_page()
    other.goto(page_server.url + "/landing")
    other_address = shown_address(other)
    assert other_address in pool_addresses
    assert other_address != address

    dovecot.append(
        user,
        letter_bytes(to=address, sender="Ivan Petrov <ivan@client.test>", subject="Autumn offer?"),
        when=timezone.now(),
    )
    result = sync_mailbox(setup.mailbox.pk)
    assert result.error == ""
    assert result.stored == 1

    lead = Lead.objects.get()
    assert lead.campaign == "autumn"
    assert lead.source == "newsletter"
    assert lead.medium == "email"
    assert lead.channel == "email"
    assert lead.sender_email == "ivan@client.test"
    assert lead.subject == "Autumn offer?"
    assert lead.session_id == session.pk
    assert lead.visitor_id == lease.visitor_id
    assert lead.match_kind == MatchKind.LIVE_LEASE
    assert lead.recipient == address

    again = sync_mailbox(setup.mailbox.pk)
    assert again.error == "" and again.stored == 0
    assert Lead.objects.count() == 1
    assert Letter.objects.count() == 1


def test_a_returning_page_view_shows_the_same_address(live_server, page_server, browser):
    setup = make_setup(original=ORIGINAL)
    page_server.pages["/a"] = PAGE.format(live=live_server.url, key=setup.site.site_key)
    context = browser.new_context()
    page = context.new_page()
    page.goto(page_server.url + "/a" + UTM)
    first = shown_address(page)
    page.goto(page_server.url + "/a")
    assert shown_address(page) == first
    assert Lease.objects.filter(released_at__isnull=True).count() == 1


class Front:
    """Our service as visitors reach it, with a collect endpoint the test can
    break: the snippet is served (from the real app) on `url`, and names
    `collect_port` as its collect endpoint, where nothing listens
    ("refused"), or a server accepts and never answers ("no-answer"), answers
    503 ("503"), answers what is not JSON ("garbage"), or passes every
    request on to the app ("up", after `recover()`)."""

    def __init__(self, app_url: str, failure: str):
        app = urlsplit(app_url)
        self.app, self.failure, self.released = (app.hostname, app.port), failure, threading.Event()
        self.snippets, self.collects = [], []
        self.collect_port = free_port()
        self.servers = [self._serve(self._snippet_handler(), 0)]
        self.url = f"http://127.0.0.1:{self.servers[0].server_address[1]}"
        if failure != "refused":
            self.servers.append(self._serve(self._collect_handler(), self.collect_port))

    def recover(self):
        """Collect works again (the server restarted)."""
        self.failure = "up"
        self.released.set()
        if len(self.servers) == 1:
            self.servers.append(self._serve(self._collect_handler(), self.collect_port))

    def close(self):
        self.released.set()
        for server in self.servers:
            server.shutdown()
            server.server_close()

    @staticmethod
    def _serve(handler, port: int) -> ThreadingHTTPServer:
        server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return server

    def _to_app(self, method: str, path: str, headers: dict, body: bytes | None = None):
        connection = http.client.HTTPConnection(*self.app, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            answer = connection.getresponse()
            return answer.status, answer.getheaders(), answer.read()
        finally:
            connection.close()

    @staticmethod
    def _answer(handler, status: int, headers, body: bytes):
        handler.send_response(status)
        for name, value in headers:
            if name.lower() not in (
                "connection",
                "transfer-encoding",
                "keep-alive",
                "content-length",
                "date",
                "server",
            ):
                handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        handler.wfile.write(body)

    def _snippet_handler(self):
        front = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                front.snippets.append(self.path)
                # The app names the host it was asked for as the collect endpoint's.
                headers = {"Host": f"127.0.0.1:{front.collect_port}", "User-Agent": self.headers["User-Agent"]}
                front._answer(self, *front._to_app("GET", self.path, headers))

            def log_message(self, *args):
                pass

        return Handler

    def _collect_handler(self):
        front = self
        cors = [("Access-Control-Allow-Origin", "*"), ("Content-Type", "application/json")]

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers["Content-Length"] or 0))
                front.collects.append(front.failure)
                if front.failure == "no-answer":
                    front.released.wait(60)
                    self.close_connection = True  # closed without a word
                elif front.failure == "503":
                    front._answer(self, 503, cors, b'{"error": "Temporarily unavailable"}')
                elif front.failure == "garbage":
                    front._answer(self, 200, cors, b"<html><body>Bad gateway</body></html>")
                else:
                    names = ("Host", "Origin", "User-Agent", "Content-Type", "Content-Length")
                    headers = {name: self.headers[name] for name in names if self.headers[name]}
                    front._answer(self, *front._to_app("POST", self.path, headers, body))

            def log_message(self, *args):
                pass

        return Handler


DOWN_PAGE = """<!doctype html><html><head><meta charset="utf-8">
<script>
  window.emailtrack = window.emailtrack || function () {{ (emailtrack.q = emailtrack.q || []).push(arguments); }};
  emailtrack("ready", function (shown) {{ window.shown = shown; }});
</script>
<script async src="{live}/s/{key}.js"></script></head>
<body><h1>Shop</h1>
<p>Write to us: <a id="contact" href="mailto:INFO@shop.test?subject=Order">info@shop.test</a></p>
<button id="button">0</button>
<script>
  window.addEventListener("load", function () {{
    var button = document.getElementById("button");
    button.addEventListener("click", function () {{ button.textContent = String(+button.textContent + 1); }});
    window.pageReady = true;
  }});
</script>
</body></html>"""


@pytest.mark.parametrize("failure", ["refused", "no-answer", "503", "garbage"])
def test_our_snippet_keeps_the_page_whole_when_our_server_fails_and_the_next_page_view_recovers(
    live_server, page_server, browser, failure
):
    setup = make_setup(original=ORIGINAL)
    front = Front(live_server.url, failure)
    page_server.pages["/down"] = DOWN_PAGE.format(live=front.url, key=setup.site.site_key)
    context = browser.new_context()
    try:
        page = context.new_page()
        watch = Watch(page)
        page.goto(page_server.url + "/down")
        page.wait_for_function("window.pageReady === true")
        assert front.snippets == [f"/s/{setup.site.site_key}.js"]  # our snippet loaded
        if failure == "no-answer":
            wait_until(lambda: front.collects, "the snippet's request", page)
            assert page.evaluate("window.shown") is None  # still waiting for the answer
        else:
            # The snippet has met the failure and decided: the original stays.
            page.wait_for_function("window.shown !== undefined")
            assert page.evaluate("window.shown") == {str(setup.block.pk): ORIGINAL}
            assert front.collects == ([] if failure == "refused" else [failure])

        page.locator("#button").click()
        assert page.locator("#button").text_content() == "1"  # the page's own script works
        assert page.locator("#contact").text_content() == ORIGINAL
        assert page.locator("#contact").get_attribute("href") == "mailto:INFO@shop.test?subject=Order"
        assert watch.problems() == []
        assert not Lease.objects.exists()

        front.recover()
        page.goto(page_server.url + "/down")  # the visitor's next page view
        address = shown_address(page)
        assert address in set(Address.objects.filter(pool=setup.pool).values_list("email", flat=True))
        assert Lease.objects.get(released_at__isnull=True).address.email == address
        assert watch.problems() == []
    finally:
        context.close()
        front.close()
