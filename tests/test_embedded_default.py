"""The embedded default, as `make run` uses it: SQLite under VAR_DIR and Celery
on the filesystem broker, with beat enqueuing the due sync and a worker running
it against Dovecot. Runs in subprocesses, with no DATABASE_URL or REDIS_URL."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.utils import timezone

from tests.factories import letter_bytes

pytestmark = [pytest.mark.slow, pytest.mark.imap]
ROOT = Path(__file__).resolve().parent.parent

SETUP = """
import json
from django.test import Client
from tests.factories import make_setup
s = make_setup(imap_port={port}, imap_user={user!r}, imap_password={password!r})
s.mailbox.sync_interval_minutes = 1
s.mailbox.save()
body = json.dumps({{"v": 1, "site": s.site.site_key, "vid": None, "consent": True, "hb": False,
    "url": "https://shop.test/?utm_source=newsletter&utm_medium=email&utm_campaign=autumn", "ref": ""}})
r = Client().post("/api/v1/collect", body, content_type="text/plain", HTTP_ORIGIN="https://shop.test")
print(json.dumps({{"status": r.status_code, "body": r.json(), "mailbox": s.mailbox.pk}}))
"""

READ = """
import json
from django.db import connection
from attribution.models import Lead
print(json.dumps({"vendor": connection.vendor,
    "leads": list(Lead.objects.values("campaign", "source", "sender_email", "subject", "match_kind"))}))
"""


def embedded_env(var_dir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")}
    env.update(
        DEBUG="1",
        VAR_DIR=str(var_dir),
        SYNC_BEAT_SECONDS="1",
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONPATH=str(ROOT),
    )
    return env


def manage(env, *args, timeout=120) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_the_flow_runs_on_sqlite_with_the_serverless_broker_and_beat(dovecot, tmp_path):
    env = embedded_env(tmp_path / "var")
    manage(env, "migrate", "--noinput", "-v", "0")
    user, password = dovecot.account()
    out = json.loads(
        manage(env, "shell", "-v", "0", "-c", SETUP.format(port=dovecot.port, user=user, password=password))
        .strip()
        .splitlines()[-1]
    )
    assert out["status"] == 200, out
    address = out["body"]["subs"][0]["email"]
    assert address.startswith("info+") and address.endswith("@shop.test")

    dovecot.append(user, letter_bytes(to=address, subject="Embedded works?"), when=timezone.now())
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("celery")),
            "-A",
            "config",
            "worker",
            "-B",
            "--pool=solo",
            "--loglevel=info",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        leads = []
        while time.monotonic() < deadline:
            state = json.loads(manage(env, "shell", "-v", "0", "-c", READ).strip().splitlines()[-1])
            leads = state["leads"]
            if leads:
                break
            time.sleep(1)
    finally:
        worker.terminate()
        try:
            log = worker.communicate(timeout=20)[0].decode(errors="replace")
        except subprocess.TimeoutExpired:
            worker.kill()
            log = worker.communicate()[0].decode(errors="replace")
    assert state["vendor"] == "sqlite"
    assert leads == [
        {
            "campaign": "autumn",
            "source": "newsletter",
            "sender_email": "ivan@client.test",
            "subject": "Embedded works?",
            "match_kind": "live_lease",
        }
    ], log[-3000:]
    assert (tmp_path / "var" / "db.sqlite3").exists()
    # The broker keeps all its files under VAR_DIR, none in the working tree.
    assert any((tmp_path / "var" / "celery" / "control").iterdir())
    assert "mailbox_sync.tasks.sync_mailbox" in log
