"""Outgoing tracking where it runs: the relay is a docker-compose service and
starts with `make run`, beat drains the events, purges old ones and sends the
relay's queue, and the README tells who signs the letters (DKIM)."""

from pathlib import Path

import yaml
from django.conf import settings

from config.celery import app

ROOT = Path(__file__).resolve().parent.parent


def test_the_relay_is_a_compose_service_on_the_submission_port_with_its_certificate():
    relay = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["relay"]
    assert relay["command"] == ["python", "manage.py", "relay_smtp"]
    assert "587:2525" in relay["ports"]
    assert relay["environment"]["RELAY_TLS_CERT"] and relay["environment"]["RELAY_TLS_KEY"]


def test_make_run_starts_the_relay_beside_the_worker_and_stops_it_with_them():
    script = (ROOT / "bin" / "run-dev").read_text()
    assert "bin/run-dev" in (ROOT / "Makefile").read_text()
    start = next(line for line in script.splitlines() if "manage.py relay_smtp" in line)
    assert start.rstrip().endswith("&") and "RELAY=$!" in script
    assert '"$RELAY"' in script.split("stop()")[1]


def test_beat_drains_and_purges_events_and_sends_the_relays_queue():
    tasks = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    wanted = {
        "engagement.tasks.drain_events",
        "engagement.tasks.purge_old_events",
        "relay.tasks.send_due",
        "relay.tasks.purge_queue",
    }
    assert wanted <= tasks
    app.loader.import_default_modules()
    assert wanted <= set(app.tasks)


def test_the_readme_says_dkim_is_the_upstreams_job():
    readme = " ".join((ROOT / "README.md").read_text().split())
    assert "DKIM, SPF, DMARC are the upstream's job." in readme
    assert "the upstream's DKIM signature covers the tracked letter" in readme
