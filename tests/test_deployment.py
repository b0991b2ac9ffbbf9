"""docker-compose passes every setting the code reads from the environment
to the app's containers (or says why not), so production can set each one."""

import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
# Read by the settings but deliberately not passed to production containers.
NOT_IN_PRODUCTION = {
    "DEMO": "demo mode is refused without DEBUG",
    "CELERY_TASK_ALWAYS_EAGER": "tests only: tasks run in the caller",
    "STATIC_ROOT": "the image collects static files at build time",
}
# Passed to the containers for other programs than the settings.
FOR_OTHER_PROGRAMS = {"WEB_CONCURRENCY": "gunicorn's worker count"}


def names_read_by_settings() -> set[str]:
    source = (ROOT / "config" / "settings.py").read_text()
    pattern = r"""\b(?:env(?:\.\w+)?|_required_secret)\(\s*["']([A-Z][A-Z0-9_]*)["']"""
    return set(re.findall(pattern, source))


def test_docker_compose_passes_every_setting_read_from_the_environment():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    passed = set(compose["x-app-env"])
    read = names_read_by_settings()
    assert len(read) > 50
    assert sorted(read - passed - set(NOT_IN_PRODUCTION)) == []
    assert sorted(passed - read - set(FOR_OTHER_PROGRAMS)) == []  # nothing passed that no code reads
    assert not (passed & set(NOT_IN_PRODUCTION))
    for service in ("web", "worker", "beat", "relay", "listener", "migrate"):
        assert set(compose["services"][service]["environment"]) >= passed, service  # a service may set some itself
