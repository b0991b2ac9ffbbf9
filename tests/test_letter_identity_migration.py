"""The migration to letters known by their content moves every stored letter
to its new key without losing or merging any, on SQLite and on PostgreSQL."""

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'db.sqlite3'}"
        return
    db = settings.DATABASES["default"]
    name = f"emailtrack_migration_{uuid.uuid4().hex[:8]}"
    params = {"host": db["HOST"], "port": db["PORT"], "user": db["USER"], "password": db["PASSWORD"]}
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST']}:{db['PORT']}/{name}"
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.slow
def test_the_migration_keys_letters_by_content_and_merges_or_loses_none(database_url, tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url,
        "VAR_DIR": str(tmp_path / "var"),
        "SECRET_KEY": "migration-test-secret-key-0123456789abcdef",
        "CONN_MAX_AGE": "0",
    }
    env.pop("REDIS_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "tests.migrate_letter_identity"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout.strip().splitlines()[-1])
    letters, old = result["letters"], result["old_keys"]
    # Every letter is still there, under a content key where its source was kept.
    assert result["count"] == 8 + 1  # the eight stored before, and the new letter reusing <a@x>
    for name in ("a", "b1", "d", "e", "f", "g"):
        assert letters[name]["key"].startswith("c1:"), name
    assert letters["b2"]["key"] == old["b2"]  # its content key is b1's: kept apart, not merged
    assert letters["c"]["key"] == old["c"]  # no source left to digest
    assert letters["f"]["key"] == letters["g"]["key"]  # the same letter in two mailboxes
    # A Message-ID carried by other content elsewhere in the project is flagged; a copy is not.
    assert (letters["d"]["reused"], letters["e"]["reused"]) == (True, True)
    assert (letters["f"]["reused"], letters["g"]["reused"]) == (False, False)
    assert not letters["b1"]["reused"] and not letters["c"]["reused"]
    # After the migration: the same letters again are copies, other content is a new letter.
    assert result["again"]["a"] is None and result["again"]["b1"] is None
    assert result["copies"] == sorted([result["ids"]["a"], result["ids"]["b1"]])
    assert result["again"]["a_reused"] is not None and result["a_reused_flag"]
    assert letters["a"]["reused"] is True  # flagged when the letter reusing its Message-ID arrived
