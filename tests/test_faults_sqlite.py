"""Faults on the embedded default: the disk fills up, or the database becomes
read-only. The service runs in subprocesses on SQLite under a VAR_DIR of its
own, on a small tmpfs the test mounts (so the disk really is full, and really
is read-only). Each write that cannot happen is a clear error, never a
traceback or a 500, and nothing is half-written: once there is room again the
same letter is stored and attributed exactly once."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.factories import letter_bytes
from tests.test_embedded_default import embedded_env

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow]

SETUP = """
import json
from django.test import Client
from tests.factories import make_setup
s = make_setup()
body = json.dumps({"v": 1, "site": s.site.site_key, "vid": None, "consent": True, "hb": False,
    "url": "https://shop.test/?utm_source=newsletter&utm_campaign=autumn", "ref": ""})
r = Client().post("/api/v1/collect", body, content_type="text/plain", HTTP_ORIGIN="https://shop.test")
print(json.dumps({"mailbox": s.mailbox.pk, "site": s.site.site_key, "address": r.json()["subs"][0]["email"]}))
"""

COLLECT = """
import json
from django.test import Client
body = json.dumps({"v": 1, "site": %r, "vid": None, "consent": True, "hb": False,
    "url": "https://shop.test/?utm_source=ads", "ref": ""})
r = Client(raise_request_exception=False).post("/api/v1/collect", body, content_type="text/plain",
    HTTP_ORIGIN="https://shop.test")
print(json.dumps({"status": r.status_code, "retry": r.get("Retry-After"), "body": r.content.decode()}))
"""

COUNT = """
import json
from attribution.models import Lead
from mailbox_sync.models import Letter
print(json.dumps({"letters": Letter.objects.count(), "leads": Lead.objects.count(),
    "unattributed": Letter.objects.filter(attributed_at__isnull=True).count()}))
"""


def run(env, *args):
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180
    )


def shell(env, code) -> dict:
    result = run(env, "shell", "-v", "0", "-c", code)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture
def small_disk(tmp_path):
    mount = tmp_path / "var"
    mount.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(directory: Path) -> Path:
    filler = directory / "filler"
    with filler.open("wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError:
            pass
    return filler


def refused(result, words: str):
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    assert words in result.stderr, result.stderr[-3000:]


def test_a_full_disk_and_a_read_only_database_are_clear_errors_and_nothing_is_half_written(small_disk, tmp_path):
    env = embedded_env(small_disk)
    env.pop("DEBUG")
    env.update(SECRET_KEY="faults-secret-key-faults-secret-key-faults-secret", ALLOWED_HOSTS="*")
    migrated = run(env, "migrate", "--noinput", "-v", "0")
    assert migrated.returncode == 0, migrated.stderr[-3000:]
    setup = shell(env, SETUP)
    letter = tmp_path / "letter.eml"
    letter.write_bytes(letter_bytes(to=setup["address"], subject="Is the disk full?", body="x" * 200_000))

    # The disk fills up: the letter is refused with a clear error, a new
    # visitor gets a 503 to retry, and nothing was written.
    filler = fill(small_disk)
    refused(run(env, "ingest_eml", "--mailbox", str(setup["mailbox"]), str(letter)), "not stored")
    answer = shell(env, COLLECT % setup["site"])
    assert answer["status"] == 503 and answer["retry"], answer
    os.remove(filler)
    assert shell(env, COUNT) == {"letters": 0, "leads": 0, "unattributed": 0}

    # The database turns read-only: the same.
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    try:
        refused(run(env, "ingest_eml", "--mailbox", str(setup["mailbox"]), str(letter)), "not stored")
        answer = shell(env, COLLECT % setup["site"])
        assert answer["status"] == 503 and answer["retry"], answer
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(small_disk)], check=True)
    assert shell(env, COUNT) == {"letters": 0, "leads": 0, "unattributed": 0}

    # Room again: the same file is stored and attributed once.
    stored = run(env, "ingest_eml", "--mailbox", str(setup["mailbox"]), str(letter))
    assert stored.returncode == 0, stored.stderr[-3000:]
    assert "stored (letter" in stored.stdout
    assert shell(env, COUNT) == {"letters": 1, "leads": 1, "unattributed": 0}
