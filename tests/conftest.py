import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from django.core.cache import cache
from imapclient import IMAPClient

from lib import redis_client

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    # Headless Chromium calls itself HeadlessChrome, which is a known bot (no lease).
    "--user-agent=Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/156.0.0.0 Safari/537.36",
]


@pytest.fixture(scope="session")
def browser_type_launch_args(browser_type_launch_args):
    return {
        **browser_type_launch_args,
        "executable_path": shutil.which("chromium") or "/usr/bin/chromium",
        "args": CHROMIUM_ARGS,
    }


@pytest.fixture(scope="session")
def compiled_catalogue():
    """The compiled translations Django reads, as `make test` and `make run` compile them."""
    from django.utils import translation

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, str(root / "bin" / "compile-messages")], check=True, cwd=root)
    translation.trans_real._translations = {}  # read the fresh .mo
    translation.trans_real._default = None


@pytest.fixture(autouse=True)
def _clean_cache():
    cache.clear()
    redis_client._down_until = 0.0  # no Redis outage carried over from another test
    yield


@pytest.fixture
def fresh_redis():
    """An empty Redis database and no cached site snapshots, before and after."""
    from substitution import activity
    from substitution.rules import forget_snapshots
    from tracker.sites import forget_sites

    activity.redis().flushdb()
    forget_snapshots()
    forget_sites()
    yield
    activity.redis().flushdb()


@pytest.fixture
def frozen_rate_window(monkeypatch):
    """The rate limiter's clock (lib.ratelimit.clock) held still: a test's
    requests all arrive at one instant, however long they take."""
    from lib import ratelimit

    frozen = datetime.fromtimestamp(time.time() // 60 * 60 + 30)
    monkeypatch.setattr(ratelimit, "clock", frozen.timestamp)
    return frozen


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


DOVECOT_CONF = """\
instance_name = emailtrack-test-{port}
base_dir = {dir}/run
state_dir = {dir}/state
log_path = {dir}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_location = maildir:{dir}/mail/%u/Maildir
first_valid_uid = 1
default_login_user = nobody
default_internal_user = nobody
default_internal_group = nogroup
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {dir}/users
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={dir}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
# No auth penalty: after a failed login (account() retries until Dovecot has
# re-read the users file) Dovecot would delay every login from 127.0.0.1.
service anvil {{
  chroot =
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


class Dovecot:
    """A real IMAP server in a temp dir; each test gets its own account."""

    def __init__(self, root: Path, port: int):
        self.root, self.port, self.host = root, port, "127.0.0.1"

    def account(self, password="secret"):
        """A fresh mailbox. Dovecot re-reads the users file at most once a
        second, so this waits until the new account can log in."""
        user = f"inbox-{uuid.uuid4().hex[:10]}@example.com"
        with open(self.root / "users", "a") as users:
            users.write(f"{user}:{{PLAIN}}{password}\n")
        deadline = time.monotonic() + 5
        while True:
            try:
                self.client(user, password).logout()
                return user, password
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def client(self, user, password="secret") -> IMAPClient:
        client = IMAPClient(self.host, port=self.port, ssl=False, timeout=10)
        client.login(user, password)
        return client

    def append(self, user, raw: bytes, when=None, folder="INBOX", password="secret") -> int:
        client = self.client(user, password)
        try:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            return client.append(folder, raw, msg_time=when)
        finally:
            client.logout()


@pytest.fixture(scope="session")
def dovecot():
    if not shutil.which("dovecot"):
        pytest.fail("dovecot is not installed: run `make test`, which installs dovecot-imapd")
    root = Path(tempfile.mkdtemp(prefix="emailtrack-dovecot-"))
    for sub in ("run", "state", "mail"):
        (root / sub).mkdir()
    (root / "users").write_text("")
    # Dovecot's auth process runs as nobody and must read the users file.
    root.chmod(0o755)
    (root / "users").chmod(0o644)
    port = free_port()
    conf = root / "dovecot.conf"
    conf.write_text(DOVECOT_CONF.format(dir=root, port=port))
    shutil.chown(root / "mail", "nobody", "nogroup")
    process = subprocess.Popen(["dovecot", "-F", "-c", str(conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            time.sleep(0.05)
    else:
        process.kill()
        pytest.fail("Dovecot did not start: " + (root / "dovecot.log").read_text(errors="replace")[-2000:])
    yield Dovecot(root, port)
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
    shutil.rmtree(root, ignore_errors=True)


class PageServer:
    """Serves customer-site pages on its own origin (http://127.0.0.1:PORT)."""

    def __init__(self):
        self.pages: dict[str, str] = {}
        pages = self.pages

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                body = pages.get(self.path.split("?")[0])
                self.send_response(200 if body is not None else 404)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.end_headers()
                self.wfile.write((body or "not found").encode())

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def page_server():
    server = PageServer()
    yield server
    server.close()


@pytest.fixture(scope="session")
def mail_server():
    """The Dovecot of the mailbox_sync tests (plain, STARTTLS and IMAPS)."""
    from tests.test_mailbox_sync_connect import serve_mail

    yield from serve_mail()


@pytest.fixture
def account(mail_server, db):
    """A fresh Dovecot account and a mailbox that reads it: (user, password, mailbox)."""
    from tests.test_mailbox_sync_connect import new_account

    return new_account(mail_server)
