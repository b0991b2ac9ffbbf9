"""Start-up settings and demo mode."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import override_settings

from attribution.models import Lead
from demo import services as demo
from substitution.models import Address
from substitution.services import lease_acquire
from tracker.models import Session, Visitor

ROOT = Path(__file__).resolve().parent.parent


def start_django(tmp_path, **env_vars):
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("DEBUG", "DEMO", "SECRET_KEY", "ENCRYPTION_KEY", "DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="config.settings", **env_vars)
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; "
            "print(settings.DATABASES['default']['ENGINE'], settings.CELERY_BROKER_URL, settings.SECRET_KEY[:6])",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_without_debug_a_missing_secret_key_stops_start_up_with_a_clear_message(tmp_path):
    result = start_django(tmp_path, ENCRYPTION_KEY="x")
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_without_debug_a_missing_encryption_key_stops_start_up(tmp_path):
    result = start_django(tmp_path, SECRET_KEY="s" * 50)
    assert result.returncode != 0
    assert "ENCRYPTION_KEY is not set" in result.stderr


def test_demo_mode_is_refused_without_debug(tmp_path):
    result = start_django(tmp_path, DEMO="1", SECRET_KEY="s" * 50, ENCRYPTION_KEY="k")
    assert result.returncode != 0
    assert "DEMO=1 is refused unless DEBUG=1" in result.stderr


def test_with_debug_development_keys_are_made_once_and_the_embedded_default_is_used(tmp_path):
    first = start_django(tmp_path, DEBUG="1")
    second = start_django(tmp_path, DEBUG="1")
    assert first.returncode == 0, first.stderr
    engine, broker, key = first.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert broker == "filesystem://"
    assert second.stdout.split()[2] == key
    assert (tmp_path / "var" / "dev_secret_key").exists()
    assert (tmp_path / "var" / "dev_encryption_key").exists()


def test_database_and_redis_urls_switch_to_postgresql_and_redis(tmp_path):
    result = start_django(
        tmp_path, DEBUG="1", DATABASE_URL="postgres://u:p@db.invalid:5432/x", REDIS_URL="redis://cache.invalid:6379/0"
    )
    assert result.returncode == 0, result.stderr
    engine, broker, _ = result.stdout.split()
    assert engine == "django.db.backends.postgresql"
    assert broker == "redis://cache.invalid:6379/0"


@pytest.mark.django_db
def test_the_demo_page_answers_404_when_demo_mode_is_off(client):
    assert client.get("/demo/").status_code == 404
    assert client.post("/demo/send", {"to": "x@y.test"}).status_code == 404


@pytest.mark.django_db
@override_settings(DEBUG=True, DEMO=True)
def test_the_demo_sends_a_test_letter_that_becomes_a_lead_with_the_pages_source(client):
    site, password = demo.demo_setup()
    assert len(password) >= 12
    page = client.get("/demo/")
    assert page.status_code == 200
    assert f"/s/{site.site_key}.js".encode() in page.content
    visitor = Visitor.objects.create(site=site, vid="v" * 16, created_at=site.created_at, last_seen_at=site.created_at)
    from django.utils import timezone

    now = timezone.now()
    Session.objects.create(
        visitor=visitor,
        started_at=now,
        last_seen_at=now,
        channel="email",
        source="newsletter",
        utm_source="newsletter",
        utm_medium="email",
        utm_campaign="autumn",
    )
    assert b"support@demo-shop.test" in page.content  # the second tracked address, from its own pool
    address = lease_acquire(pool=site.rules.get(name="Every visitor").pool, visitor=visitor, now=now).email
    response = client.post("/demo/send", {"to": address, "sender": "me@client.test", "subject": "Hi", "back": "/demo/"})
    assert response.status_code == 302
    lead = Lead.objects.get()
    assert (lead.campaign, lead.source, lead.sender_email) == ("autumn", "newsletter", "me@client.test")
    # Only the demo site's own addresses may receive a test letter.
    client.post("/demo/send", {"to": "victim@elsewhere.test", "sender": "me@client.test"})
    assert Lead.objects.count() == 1
    # Running the setup again creates nothing twice.
    demo.demo_setup()
    assert Address.objects.count() == 20  # two pools of ten
