"""Settings, read from the environment (django-environ).

With no DATABASE_URL / REDIS_URL the service runs on the embedded default:
SQLite under VAR_DIR, a local-memory cache and a Celery broker that needs no
server (kombu's filesystem transport). Setting them switches to PostgreSQL and
Redis with the same code.
"""

from datetime import timedelta
from pathlib import Path

import environ
from csp import constants as csp_constants
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()

DEBUG = env.bool("DEBUG", default=False)
DEMO = env.bool("DEMO", default=False)
if DEMO and not DEBUG:
    raise ImproperlyConfigured("DEMO=1 is refused unless DEBUG=1: demo mode is for a development machine only.")

VAR_DIR = Path(env.str("VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)


def _development_key(name, make):
    """A key kept in VAR_DIR, made once; only ever used with DEBUG on."""
    path = VAR_DIR / name
    if not path.exists():
        path.write_text(make())
        path.chmod(0o600)
    return path.read_text().strip()


def _required_secret(name, make):
    value = env.str(name, default="")
    if value:
        return value
    if DEBUG:
        return _development_key(f"dev_{name.lower()}", make)
    raise ImproperlyConfigured(
        f"{name} is not set. Set it in the environment (see README, 'Configuration'); "
        "only with DEBUG=1 is a development key generated."
    )


def _make_secret_key():
    from django.core.management.utils import get_random_secret_key

    return get_random_secret_key()


def _make_fernet_key():
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


SECRET_KEY = _required_secret("SECRET_KEY", _make_secret_key)
# Comma-separated Fernet keys; the first encrypts, all decrypt (key rotation).
ENCRYPTION_KEY = _required_secret("ENCRYPTION_KEY", _make_fernet_key)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["*"] if DEBUG else ["localhost", "127.0.0.1"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
# How many reverse proxies stand in front: that many X-Forwarded-For entries,
# counted from the right, are believed; 0 means REMOTE_ADDR is the client.
TRUSTED_PROXY_COUNT = env.int("TRUSTED_PROXY_COUNT", default=0)
if env.bool("SECURE_PROXY_SSL_HEADER_ENABLED", default=False):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    USE_X_FORWARDED_HOST = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "projects",
    "tracker",
    "substitution",
    "attribution",
    "mailbox_sync",
    "frontend_js",
    "journal",
    "demo",
    "engagement",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "integrations",
    "relay",
    "costs",
    "monitoring",
    "privacy",
    "simulation",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # Django's LocaleMiddleware, after authentication: a person's saved language first.
    "projects.middleware.LanguageMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "config" / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'db.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    DATABASES["default"]["OPTIONS"] = {
        # WAL lets readers run beside the one writer; IMMEDIATE takes the write
        # lock at BEGIN so concurrent allocations queue instead of failing.
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=20000;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 20,
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", default=60))
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = env.str("REDIS_URL", default="")
# REDIS_URL names one master of a Redis Cluster (README, "Redis Cluster"); Celery's
# Redis broker cannot use a Cluster, so CELERY_BROKER_URL then names a plain Redis.
REDIS_CLUSTER = env.bool("REDIS_CLUSTER", default=False)
if REDIS_CLUSTER and not REDIS_URL:
    raise ImproperlyConfigured("REDIS_CLUSTER=1 needs REDIS_URL (any one master of the cluster).")
if REDIS_URL:
    _cache = "lib.redis_client.ClusterCache" if REDIS_CLUSTER else "django.core.cache.backends.redis.RedisCache"
    CACHES = {"default": {"BACKEND": _cache, "LOCATION": REDIS_URL}}
    CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="" if REDIS_CLUSTER else REDIS_URL)
    if not CELERY_BROKER_URL:
        raise ImproperlyConfigured(
            "REDIS_CLUSTER=1: Celery's Redis broker does not support Redis Cluster. "
            "Set CELERY_BROKER_URL to a plain (non-cluster) Redis, e.g. redis://broker:6379/0."
        )
    # Tasks are acknowledged late (below): one taken by a worker that died
    # goes back to the queue once it has been out this long. Longer than any
    # task runs and than the longest countdown (integrations.tasks).
    CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": env.int("CELERY_VISIBILITY_TIMEOUT_SECONDS", default=3600)}
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}
    _queue = VAR_DIR / "celery" / "queue"
    _processed = VAR_DIR / "celery" / "processed"
    _control = VAR_DIR / "celery" / "control"
    for _folder in (_queue, _processed, _control):
        _folder.mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_queue),
        "data_folder_out": str(_queue),
        "processed_folder": str(_processed),
        "control_folder": str(_control),
        "store_processed": False,
        "polling_interval": 0.2,
    }
# Written-behind activity (Redis only) reaches the database this often.
ACTIVITY_FLUSH_SECONDS = env.int("ACTIVITY_FLUSH_SECONDS", default=30)
RETENTION_DAYS = env.int("RETENTION_DAYS", default=90)
# Integrations
WEBHOOK_ALLOW_PRIVATE_TARGETS = env.bool("WEBHOOK_ALLOW_PRIVATE_TARGETS", default=False)
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000")
TELEGRAM_BOT_TOKEN = env.str("TELEGRAM_BOT_TOKEN", default="")
API_RATE_LIMIT_PER_MINUTE = env.int("API_RATE_LIMIT_PER_MINUTE", default=120)
WEBHOOK_TIMEOUT_SECONDS = env.float("WEBHOOK_TIMEOUT_SECONDS", default=10)
# Webhooks, notifications, conversions and relayed letters: how long one
# attempt holds its row (more than any attempt takes), and the first retry's wait.
OUTBOX_CLAIM_SECONDS = env.int("OUTBOX_CLAIM_SECONDS", default=180)
OUTBOX_FIRST_RETRY_SECONDS = env.int("OUTBOX_FIRST_RETRY_SECONDS", default=30)
TELEGRAM_API_BASE_URL = env.str("TELEGRAM_API_BASE_URL", default="https://api.telegram.org")
GA4_COLLECT_URL = env.str("GA4_COLLECT_URL", default="https://www.google-analytics.com/mp/collect")
METRICA_API_BASE_URL = env.str("METRICA_API_BASE_URL", default="https://api-metrika.yandex.net")
# Letters' text and senders' details are erased after this many days (reports keep their counts).
PERSONAL_DATA_DAYS = env.int("PERSONAL_DATA_DAYS", default=365)
vars().update(env.email_url("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="emailtrack@localhost")
# A MaxMind-format database (GeoLite2 City) for country and city; empty: no geo.
GEOIP_DATABASE = env.str("GEOIP_DATABASE", default="")
CELERY_TASK_ALWAYS_EAGER = env.bool("CELERY_TASK_ALWAYS_EAGER", default=False)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE_FILENAME = str(VAR_DIR / "celerybeat-schedule")
CELERY_BEAT_SCHEDULE = {
    "enqueue-due-mailbox-syncs": {
        "task": "mailbox_sync.tasks.enqueue_due_syncs",
        "schedule": timedelta(seconds=env.int("SYNC_BEAT_SECONDS", default=30)),
    },
    "flush-activity": {
        "task": "substitution.tasks.flush_activity",
        "schedule": timedelta(seconds=ACTIVITY_FLUSH_SECONDS),
    },
    "release-expired-leases": {"task": "substitution.tasks.release_expired_leases", "schedule": timedelta(minutes=1)},
    "purge-old-leases": {"task": "substitution.tasks.purge_old_leases", "schedule": timedelta(hours=6)},
    "purge-old-sessions": {"task": "tracker.tasks.purge_old_sessions", "schedule": timedelta(hours=6)},
    "erase-personal-data": {"task": "attribution.tasks.erase_personal_data", "schedule": timedelta(hours=6)},
    # Webhook retries and anything whose first attempt was lost.
    "send-due-integrations": {"task": "integrations.tasks.send_due", "schedule": timedelta(minutes=1)},
}

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]

# The interface speaks English and Russian: a person's own choice (saved on
# their profile), else the browser's Accept-Language, else LANGUAGE_CODE.
# Notifications speak the project's language; the API speaks English.
LANGUAGES = [("en", "English"), ("ru", "Русский")]
LANGUAGE_CODE = env.str("LANGUAGE_CODE", default="en")
if LANGUAGE_CODE not in dict(LANGUAGES):
    raise ImproperlyConfigured(f"LANGUAGE_CODE must be one of {', '.join(dict(LANGUAGES))}, not {LANGUAGE_CODE!r}.")
LOCALE_PATHS = [BASE_DIR / "locale"]
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env.str("STATIC_ROOT", default=str(BASE_DIR / "staticfiles")))
try:
    STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every start without it
except OSError:
    pass
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        if DEBUG
        else "whitenoise.storage.CompressedManifestStaticFilesStorage"
    },
}

# The API docs' Swagger UI is served from our own static files, never a CDN.
SPECTACULAR_SETTINGS = {
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
}

LOGIN_URL = "/journal/login/"  # the journal's own sign-in; admin keeps /admin/login/

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
}

# Product settings
COLLECT_MAX_BODY_BYTES = 8 * 1024
COLLECT_RATE_LIMIT_PER_MINUTE = env.int("COLLECT_RATE_LIMIT_PER_MINUTE", default=120)
# A new visitor's first page view commits without waiting for PostgreSQL's
# log flush unless this is on (substitution/first_visit.py says what it risks).
COLLECT_WAIT_FOR_DISK = env.bool("COLLECT_WAIT_FOR_DISK", default=False)
HEARTBEAT_SECONDS = 60
SESSION_TIMEOUT = timedelta(minutes=30)
FIRST_SYNC_WINDOW = timedelta(hours=24)
IMAP_TIMEOUT_SECONDS = env.int("IMAP_TIMEOUT_SECONDS", default=30)
# A CA bundle (PEM) for mailbox servers with a private certificate authority; empty: the system's.
IMAP_CA_FILE = env.str("IMAP_CA_FILE", default="")
# Mailbox servers that may be on a private or loopback network (the installation's own), by the
# name the mailboxes use; any other host resolving to such an address is refused.
IMAP_ALLOWED_PRIVATE_HOSTS = env.list("IMAP_ALLOWED_PRIVATE_HOSTS", default=[])
IMAP_FETCH_BATCH = 200
# Processes parsing a large folder's letters in a first sync, beside the one fetching them.
SYNC_PARSE_PROCESSES = env.int("SYNC_PARSE_PROCESSES", default=2)
SYNC_CLAIM_SECONDS = 15 * 60
SYNC_MAX_BACKOFF = timedelta(hours=1)

# SMTP relay (python manage.py relay_smtp): where it listens, its TLS certificate for STARTTLS, its limits.
RELAY_HOST = env.str("RELAY_HOST", default="127.0.0.1")
RELAY_PORT = env.int("RELAY_PORT", default=2525)
RELAY_PUBLIC_PORT = env.int("RELAY_PUBLIC_PORT", default=RELAY_PORT)  # what mail clients are told
RELAY_HOSTNAME = env.str("RELAY_HOSTNAME", default="")
RELAY_TLS_CERT = env.str("RELAY_TLS_CERT", default="")
RELAY_TLS_KEY = env.str("RELAY_TLS_KEY", default="")
RELAY_ALLOW_PLAIN_AUTH_ON_LOOPBACK = env.bool("RELAY_ALLOW_PLAIN_AUTH_ON_LOOPBACK", default=False)
RELAY_ALLOW_PRIVATE_UPSTREAMS = env.bool("RELAY_ALLOW_PRIVATE_UPSTREAMS", default=False)
RELAY_MAX_MESSAGE_BYTES = env.int("RELAY_MAX_MESSAGE_BYTES", default=25 * 1024 * 1024)
RELAY_MAX_RECIPIENTS = env.int("RELAY_MAX_RECIPIENTS", default=100)
RELAY_RECIPIENTS_PER_HOUR = env.int("RELAY_RECIPIENTS_PER_HOUR", default=500)
RELAY_AUTH_FAILURES_PER_IP = env.int("RELAY_AUTH_FAILURES_PER_IP", default=10)
RELAY_UPSTREAM_TIMEOUT_SECONDS = env.float("RELAY_UPSTREAM_TIMEOUT_SECONDS", default=30)
RELAY_QUEUE_HOURS = env.float("RELAY_QUEUE_HOURS", default=24)
RELAY_KEEP_DAYS = env.int("RELAY_KEEP_DAYS", default=7)
CELERY_BEAT_SCHEDULE["send-due-relay-letters"] = {"task": "relay.tasks.send_due", "schedule": timedelta(minutes=1)}
CELERY_BEAT_SCHEDULE["purge-relay-queue"] = {"task": "relay.tasks.purge_queue", "schedule": timedelta(hours=6)}

# Engagement (opens, clicks and replies of sent letters)
# Comma-separated keys that sign the pixel and tracked links: the first signs,
# all verify (rotation: put the new key first, drop the old one later).
ENGAGEMENT_TOKEN_KEYS = env.list("ENGAGEMENT_TOKEN_KEYS", default=[]) or [SECRET_KEY]
# The public address pixels and tracked links point to.
ENGAGEMENT_BASE_URL = env.str("ENGAGEMENT_BASE_URL", default=PUBLIC_BASE_URL).rstrip("/")
ENGAGEMENT_MAX_HTML_BYTES = env.int("ENGAGEMENT_MAX_HTML_BYTES", default=1024 * 1024)
ENGAGEMENT_MAX_RECIPIENTS = env.int("ENGAGEMENT_MAX_RECIPIENTS", default=100)
# A relay client's own opens from its network within this many minutes are "self".
ENGAGEMENT_SELF_MINUTES = env.int("ENGAGEMENT_SELF_MINUTES", default=10)
# Clicks on this many different links of one letter within these seconds are a scanner's.
ENGAGEMENT_BURST_LINKS = env.int("ENGAGEMENT_BURST_LINKS", default=2)
ENGAGEMENT_BURST_SECONDS = env.int("ENGAGEMENT_BURST_SECONDS", default=2)
# Clicks this close to a followed hidden link are a scanner's.
ENGAGEMENT_HONEYPOT_SECONDS = env.int("ENGAGEMENT_HONEYPOT_SECONDS", default=10)
# A token replayed more often than this per minute is a flood: the rest of the minute is not recorded.
ENGAGEMENT_EVENTS_PER_RECIPIENT_PER_MINUTE = env.int("ENGAGEMENT_EVENTS_PER_RECIPIENT_PER_MINUTE", default=120)
ENGAGEMENT_DRAIN_BATCH = env.int("ENGAGEMENT_DRAIN_BATCH", default=500)
ENGAGEMENT_DRAIN_SECONDS = env.int("ENGAGEMENT_DRAIN_SECONDS", default=5)
CELERY_BEAT_SCHEDULE["drain-engagement-events"] = {
    "task": "engagement.tasks.drain_events",
    "schedule": timedelta(seconds=ENGAGEMENT_DRAIN_SECONDS),
}
CELERY_BEAT_SCHEDULE["purge-old-engagement-events"] = {
    "task": "engagement.tasks.purge_old_events",
    "schedule": timedelta(hours=6),
}

# Mailboxes: OAuth2 logins and the IMAP IDLE listener (README, "Mailboxes:
# leads in seconds (IMAP IDLE) and OAuth2"). Each provider's client is registered
# by the installation (its redirect URI: PUBLIC_BASE_URL + /admin/mailbox_sync/mailbox/oauth/callback/).
OAUTH_GOOGLE_CLIENT_ID = env.str("OAUTH_GOOGLE_CLIENT_ID", default="")
OAUTH_GOOGLE_CLIENT_SECRET = env.str("OAUTH_GOOGLE_CLIENT_SECRET", default="")
OAUTH_MICROSOFT_CLIENT_ID = env.str("OAUTH_MICROSOFT_CLIENT_ID", default="")
OAUTH_MICROSOFT_CLIENT_SECRET = env.str("OAUTH_MICROSOFT_CLIENT_SECRET", default="")
OAUTH_MICROSOFT_TENANT = env.str("OAUTH_MICROSOFT_TENANT", default="common")
OAUTH_YANDEX_CLIENT_ID = env.str("OAUTH_YANDEX_CLIENT_ID", default="")
OAUTH_YANDEX_CLIENT_SECRET = env.str("OAUTH_YANDEX_CLIENT_SECRET", default="")
# Any other provider ("Other" in admin, with the mailbox's own IMAP server):
# its authorization, token and (without an OpenID Connect id_token) user-info URLs, and scopes.
OAUTH_GENERIC_NAME = env.str("OAUTH_GENERIC_NAME", default="")
OAUTH_GENERIC_AUTHORIZE_URL = env.str("OAUTH_GENERIC_AUTHORIZE_URL", default="")
OAUTH_GENERIC_TOKEN_URL = env.str("OAUTH_GENERIC_TOKEN_URL", default="")
OAUTH_GENERIC_SCOPES = env.str("OAUTH_GENERIC_SCOPES", default="")
OAUTH_GENERIC_CLIENT_ID = env.str("OAUTH_GENERIC_CLIENT_ID", default="")
OAUTH_GENERIC_CLIENT_SECRET = env.str("OAUTH_GENERIC_CLIENT_SECRET", default="")
OAUTH_GENERIC_USERINFO_URL = env.str("OAUTH_GENERIC_USERINFO_URL", default="")
# An access token is refreshed this long before it expires.
OAUTH_REFRESH_MARGIN_SECONDS = env.int("OAUTH_REFRESH_MARGIN_SECONDS", default=300)
IDLE_PING_SECONDS = env.float("IDLE_PING_SECONDS", default=45)
IDLE_ANSWER_SECONDS = env.float("IDLE_ANSWER_SECONDS", default=10)
IDLE_REFRESH_SECONDS = env.float("IDLE_REFRESH_SECONDS", default=20)
IDLE_LEASE_SECONDS = env.int("IDLE_LEASE_SECONDS", default=60)
IDLE_MAX_MAILBOXES = env.int("IDLE_MAX_MAILBOXES", default=2000)
IDLE_SYNC_THREADS = env.int("IDLE_SYNC_THREADS", default=4)

# Content-Security-Policy of the pages people read (journal, admin, demo):
# scripts only from this server or inline with the request's nonce, nothing
# framing them. Programs' endpoints (API, snippet, tracking) carry none.
# Referrer-Policy comes from SecurityMiddleware (SECURE_REFERRER_POLICY, same-origin).
CONTENT_SECURITY_POLICY = {
    "EXCLUDE_URL_PREFIXES": ["/api/", "/s/", "/t/"],
    "DIRECTIVES": {
        "default-src": [csp_constants.SELF],
        "script-src": [csp_constants.SELF, csp_constants.NONCE],
        # Django admin and the journal's charts set colours in style attributes.
        "style-src": [csp_constants.SELF, "'unsafe-inline'"],
        "img-src": [csp_constants.SELF, "data:"],
        "connect-src": [csp_constants.SELF],
        "frame-ancestors": [csp_constants.NONE],
        # No form-action: saving a mailbox redirects to its OAuth provider's consent page.
        "base-uri": [csp_constants.SELF],
        "object-src": [csp_constants.NONE],
    },
}

# The sessions collect queued, added into the end-to-end report's days.
CELERY_BEAT_SCHEDULE["fold-session-deltas"] = {
    "task": "costs.tasks.fold_session_deltas",
    "schedule": timedelta(minutes=1),
}
# Health conditions (monitoring): opened and closed, and announced once each, every few minutes.
CELERY_BEAT_SCHEDULE["evaluate-health"] = {"task": "monitoring.tasks.evaluate_health", "schedule": timedelta(minutes=5)}
# Pool sizes simulated on each pool's own traffic (simulation): results missing or older than a day asked for again.
CELERY_BEAT_SCHEDULE["simulate-stale-pools"] = {
    "task": "simulation.tasks.simulate_stale_pools",
    "schedule": timedelta(hours=1),
}
