"""This app's settings, each with its default (config/settings.py may set them from the environment)."""

from django.conf import settings


def _get(name, default):
    return getattr(settings, name, default)


def allow_private_targets() -> bool:
    """Webhooks to private, loopback and link-local addresses (a local CRM, tests)."""
    return bool(_get("WEBHOOK_ALLOW_PRIVATE_TARGETS", False))


def webhook_timeout() -> float:
    return float(_get("WEBHOOK_TIMEOUT_SECONDS", 10))


def outbox_claim_seconds() -> int:
    """How long one attempt holds its row: longer than any attempt takes (its timeouts included)."""
    return int(_get("OUTBOX_CLAIM_SECONDS", 180))


def outbox_first_retry_seconds() -> int:
    """The wait after a first failure; each further failure doubles it, up to 4 hours."""
    return int(_get("OUTBOX_FIRST_RETRY_SECONDS", 30))


def api_rate_limit_per_minute() -> int:
    return int(_get("API_RATE_LIMIT_PER_MINUTE", 120))


def public_base_url() -> str:
    """Where people open the service, for links in notifications."""
    return str(_get("PUBLIC_BASE_URL", "http://127.0.0.1:8000")).rstrip("/")


def telegram_bot_token() -> str:
    return str(_get("TELEGRAM_BOT_TOKEN", ""))


def telegram_api_base_url() -> str:
    return str(_get("TELEGRAM_API_BASE_URL", "https://api.telegram.org")).rstrip("/")


def ga4_collect_url() -> str:
    return str(_get("GA4_COLLECT_URL", "https://www.google-analytics.com/mp/collect"))


def metrica_api_base_url() -> str:
    return str(_get("METRICA_API_BASE_URL", "https://api-metrika.yandex.net")).rstrip("/")


def outbound_timeout() -> float:
    """Telegram, GA4 and Metrica requests."""
    return float(_get("INTEGRATIONS_TIMEOUT_SECONDS", 15))
