"""Provider presets: the IMAP server of the big mail services, and what the
account owner must do there before a mailbox can be connected."""

from dataclasses import dataclass

from django.db import models


class Provider(models.TextChoices):
    GMAIL = "gmail", "Gmail"
    YANDEX = "yandex", "Yandex Mail"
    MAILRU = "mailru", "Mail.ru"
    ICLOUD = "icloud", "iCloud Mail"
    OUTLOOK = "outlook", "Outlook / Microsoft 365"
    OTHER = "other", "Other (enter host and port)"


@dataclass(frozen=True)
class Preset:
    host: str
    port: int
    security: str
    note: str
    password_allowed: bool = True


PRESETS = {
    Provider.GMAIL: Preset(
        "imap.gmail.com",
        993,
        "ssl",
        "Turn on 2-Step Verification, then create an app password (Google Account → Security → App passwords) "
        "and use it here. Google Workspace admins can switch IMAP off for the domain.",
    ),
    Provider.YANDEX: Preset(
        "imap.yandex.ru",
        993,
        "ssl",
        "Allow IMAP access in Mail settings → Mail clients, then create an app password "
        "(Yandex ID → Security → App passwords) and use it here.",
    ),
    Provider.MAILRU: Preset(
        "imap.mail.ru",
        993,
        "ssl",
        "Create a password for external applications (Mail.ru account → Security) and use it here.",
    ),
    Provider.ICLOUD: Preset(
        "imap.mail.me.com",
        993,
        "ssl",
        "Create an app-specific password (appleid.apple.com → Sign-In and Security); "
        "the username is the full iCloud address.",
    ),
    Provider.OUTLOOK: Preset(
        "outlook.office365.com",
        993,
        "ssl",
        "Microsoft has switched off password sign-in for IMAP: choose OAuth2 and sign in with Microsoft.",
        password_allowed=False,
    ),
}


def preset(provider: str) -> Preset | None:
    """The preset of a named provider; None for "Other"."""
    return PRESETS.get(provider)


def auth_hint(provider: str) -> str:
    """What to check when the server refuses the password."""
    found = preset(provider)
    return f" ({found.note})" if found is not None and found.password_allowed else ""
