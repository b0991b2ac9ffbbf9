"""A local OAuth2 provider and a Dovecot that logs in with its tokens
(XOAUTH2 / OAUTHBEARER through Dovecot's oauth2 passdb), for the OAuth2
tests. The provider plays the authorization endpoint (a consent page with
an "Allow" button), the token endpoint (authorization code with PKCE,
refresh, a revoked grant, and the faults: down, garbage, slow) and the
introspection endpoint Dovecot asks."""

import base64
import hashlib
import json
import secrets
import shutil
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from imapclient import IMAPClient

from tests.conftest import DOVECOT_CONF, free_port

CLIENT_ID = "emailtrack-test-client"
CLIENT_SECRET = "emailtrack-test-secret"

OAUTH_DOVECOT_CONF = """
auth_mechanisms = plain login xoauth2 oauthbearer
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {dir}/dovecot-oauth2.conf.ext
}}
"""


@dataclass
class Access:
    email: str
    expires_at: float
    valid: bool = True


@dataclass
class Grant:
    email: str
    revoked: bool = False


@dataclass
class Provider:
    """What the local provider knows and how it misbehaves (set by tests)."""

    url: str = ""
    signing_in_as: str = ""  # the account the consent page signs in to
    expires_in: int = 3600
    mode: str = "ok"  # ok | down | garbage | error
    refresh_delay: float = 0.0
    codes: dict = field(default_factory=dict)
    grants: dict = field(default_factory=dict)
    access: dict = field(default_factory=dict)
    refreshes: int = 0
    token_calls: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, email: str) -> dict:
        """A grant and its first access token, as an authorization code exchange gives them."""
        refresh = "rt-" + secrets.token_urlsafe(16)
        self.grants[refresh] = Grant(email)
        return {**self._access(email), "refresh_token": refresh, "id_token": id_token(email)}

    def _access(self, email: str) -> dict:
        token = "at-" + secrets.token_urlsafe(24)
        self.access[token] = Access(email, time.time() + self.expires_in)
        return {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}

    def revoke_all(self, email: str) -> None:
        for grant in self.grants.values():
            if grant.email == email:
                grant.revoked = True
        self.invalidate_access(email)

    def invalidate_access(self, email: str) -> None:
        """The provider ends the access tokens early (a revoked session)."""
        for access in self.access.values():
            if access.email == email:
                access.valid = False

    def authorize(self, query: dict) -> str:
        """The redirect after "Allow": redirect_uri with code and state."""
        if query.get("client_id") != CLIENT_ID or query.get("code_challenge_method") != "S256":
            raise ValueError("bad authorization request")
        code = "code-" + secrets.token_urlsafe(12)
        self.codes[code] = {
            "email": self.signing_in_as,
            "challenge": query["code_challenge"],
            "redirect_uri": query["redirect_uri"],
        }
        separator = "&" if "?" in query["redirect_uri"] else "?"
        return query["redirect_uri"] + separator + urlencode({"code": code, "state": query.get("state", "")})

    def token(self, form: dict) -> tuple[int, bytes]:
        self.token_calls.append(form.get("grant_type"))
        if self.mode == "garbage":
            return 200, b"<html>Service Unavailable</html>"
        if self.mode == "error":
            return 503, json.dumps({"error": "temporarily_unavailable"}).encode()
        if form.get("client_id") != CLIENT_ID or form.get("client_secret") != CLIENT_SECRET:
            return 401, json.dumps({"error": "invalid_client"}).encode()
        if form.get("grant_type") == "authorization_code":
            issued = self.codes.pop(form.get("code", ""), None)
            verifier = form.get("code_verifier", "")
            challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
            if issued is None or issued["challenge"] != challenge or issued["redirect_uri"] != form.get("redirect_uri"):
                return 400, json.dumps({"error": "invalid_grant", "error_description": "Bad code."}).encode()
            return 200, json.dumps(self.issue(issued["email"])).encode()
        if form.get("grant_type") == "refresh_token":
            time.sleep(self.refresh_delay)
            with self.lock:
                self.refreshes += 1
            grant = self.grants.get(form.get("refresh_token", ""))
            if grant is None or grant.revoked:
                said = {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
                return 400, json.dumps(said).encode()
            return 200, json.dumps(self._access(grant.email)).encode()
        return 400, json.dumps({"error": "unsupported_grant_type"}).encode()

    def introspect(self, token: str) -> dict:
        access = self.access.get(token)
        if access is None or not access.valid or access.expires_at < time.time():
            return {"active": False}
        return {"active": True, "username": access.email}


def id_token(email: str) -> str:
    def part(data: dict) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part({'email': email, 'iss': 'local'})}.signature"


CONSENT_PAGE = """<!doctype html><html><body><h1>Local Mail</h1>
<p>emailtrack wants to read your mail as <b>{email}</b>.</p>
<form method="post" action="/authorize">{fields}<button id="allow">Allow</button></form></body></html>"""


def serve_provider() -> tuple[Provider, ThreadingHTTPServer]:
    provider = Provider()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: bytes, kind="application/json", location=None):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            if location:
                self.send_header("Location", location)
            self.end_headers()
            self.wfile.write(body)

        def _form(self) -> dict:
            size = int(self.headers.get("Content-Length") or 0)
            return {k: v[0] for k, v in parse_qs(self.rfile.read(size).decode()).items()}

        def do_GET(self):  # noqa: N802
            parts = urlsplit(self.path)
            if parts.path != "/authorize":
                return self._answer(404, b"{}")
            query = {k: v[0] for k, v in parse_qs(parts.query).items()}
            fields = "".join(f'<input type="hidden" name="{name}" value="{value}">' for name, value in query.items())
            page = CONSENT_PAGE.format(email=provider.signing_in_as, fields=fields)
            return self._answer(200, page.encode(), "text/html; charset=utf-8")

        def do_POST(self):  # noqa: N802
            path = urlsplit(self.path).path
            form = self._form()
            if path == "/authorize":
                return self._answer(302, b"", "text/plain", location=provider.authorize(form))
            if path == "/token":
                if provider.mode == "down":
                    self.close_connection = True
                    self.connection.close()
                    return None
                status, body = provider.token(form)
                return self._answer(status, body)
            if path == "/introspect":
                return self._answer(200, json.dumps(provider.introspect(form.get("token", ""))).encode())
            return self._answer(404, b"{}")

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    provider.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return provider, server


class OAuthMail:
    """Dovecot with OAuth2 logins, and the provider it asks."""

    def __init__(self, root: Path, port: int, provider: Provider):
        self.root, self.port, self.provider, self.host = root, port, provider, "127.0.0.1"

    def account(self) -> str:
        """A fresh account: logs in with the provider's tokens, and with a
        password for the test's own APPENDs."""
        user = f"oauth-{uuid.uuid4().hex[:10]}@example.com"
        with open(self.root / "users", "a") as users:
            users.write(f"{user}:{{PLAIN}}secret\n")
        deadline = time.monotonic() + 5
        while True:
            try:
                self.client(user).logout()
                return user
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def client(self, user) -> IMAPClient:
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(user, "secret")
        return client

    def append(self, user, raw: bytes, when=None) -> None:
        client = self.client(user)
        try:
            client.append("INBOX", raw, msg_time=when)
        finally:
            client.logout()

    def settings(self) -> dict:
        """The generic OAuth2 provider's settings, pointing at the local one."""
        url = self.provider.url
        return {
            "OAUTH_GENERIC_NAME": "Local Mail",
            "OAUTH_GENERIC_AUTHORIZE_URL": f"{url}/authorize",
            "OAUTH_GENERIC_TOKEN_URL": f"{url}/token",
            "OAUTH_GENERIC_SCOPES": "mail openid email",
            "OAUTH_GENERIC_CLIENT_ID": CLIENT_ID,
            "OAUTH_GENERIC_CLIENT_SECRET": CLIENT_SECRET,
        }


def start_oauth_mail():
    provider, http = serve_provider()
    root = Path(tempfile.mkdtemp(prefix="emailtrack-oauth-dovecot-"))
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    (root / "users").write_text("")
    root.chmod(0o755)
    (root / "users").chmod(0o644)
    (root / "dovecot-oauth2.conf.ext").write_text(
        f"introspection_url = {provider.url}/introspect\nintrospection_mode = post\n"
        "username_attribute = username\nforce_introspection = yes\ntimeout_msecs = 5000\n"
    )
    (root / "dovecot-oauth2.conf.ext").chmod(0o644)
    port = free_port()
    conf = DOVECOT_CONF.format(dir=root, port=port).replace("auth_mechanisms = plain login\n", "")
    conf = conf.replace(
        "passdb {\n  driver = passwd-file\n", "passdb {\n  driver = passwd-file\n  mechanisms = plain login\n"
    )
    (root / "dovecot.conf").write_text(conf + OAUTH_DOVECOT_CONF.format(dir=root))
    shutil.chown(root / "mail", "nobody", "nogroup")
    process = subprocess.Popen(
        ["dovecot", "-F", "-c", str(root / "dovecot.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if time.monotonic() > deadline:
                process.kill()
                pytest.fail("Dovecot did not start: " + (root / "dovecot.log").read_text(errors="replace")[-2000:])
            time.sleep(0.05)
    return OAuthMail(root, port, provider), process, http


@pytest.fixture(scope="session")
def oauth_mail():
    mail, process, http = start_oauth_mail()
    yield mail
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
    http.shutdown()
    shutil.rmtree(mail.root, ignore_errors=True)


@pytest.fixture
def provider(oauth_mail, settings):
    """The local provider, reset, configured as the generic OAuth2 provider."""
    provider = oauth_mail.provider
    provider.mode, provider.refresh_delay, provider.expires_in, provider.refreshes = "ok", 0.0, 3600, 0
    provider.token_calls.clear()
    for name, value in oauth_mail.settings().items():
        setattr(settings, name, value)
    return provider
