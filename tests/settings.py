"""Settings for the test suite: the real settings, read from an environment
that defaults to the real services (PostgreSQL and Redis on this machine),
so a bare `pytest` runs against them as `make test` does."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres:postgres@127.0.0.1:5432/emailtrack")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")
os.environ.setdefault("SECRET_KEY", "test-secret-key-not-for-production-0123456789abcdef")
os.environ.setdefault("ENCRYPTION_KEY", "Zk1pQmV2b3l3b2x2T1N0b0lQeGJYc3N2c2h6d0F0d0k=")
os.environ.setdefault("VAR_DIR", "/tmp/emailtrack-test-var")
os.environ.setdefault("COLLECT_RATE_LIMIT_PER_MINUTE", "100000")
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
os.environ.setdefault("CONN_MAX_AGE", "0")
# The test mail servers listen on loopback; tests of the host guard clear it.
os.environ.setdefault("IMAP_ALLOWED_PRIVATE_HOSTS", "127.0.0.1")
os.environ.pop("DEBUG", None)
os.environ.pop("DEMO", None)

from config.settings import *  # noqa: E402,F403

# No collectstatic in tests: serve admin assets from the apps.
STORAGES["staticfiles"] = {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}  # noqa: F405
WHITENOISE_USE_FINDERS = True
STATIC_ROOT = VAR_DIR / "static"  # noqa: F405
STATIC_ROOT.mkdir(parents=True, exist_ok=True)
