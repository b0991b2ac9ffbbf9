"""What a connection logs in with: the mailbox's password (kept encrypted),
or for a mailbox connected with OAuth2 an access token (`oauth`). The
secrets never leave this module's callers in a message or a log."""

from lib import crypto

from .imap import Failure


class CredentialsError(Exception):
    kind = Failure.CONFIG


class ReconnectNeeded(CredentialsError):
    """The provider refused the grant (revoked or expired): the account
    manager must connect the mailbox again. The message is the provider's."""

    kind = Failure.AUTH


def password_of(encrypted: str) -> str:
    try:
        return crypto.decrypt(encrypted) if encrypted else ""
    except ValueError as error:
        raise CredentialsError(str(error)) from None


def access_token(mailbox_id: int) -> tuple[str, str]:
    """The mailbox's username and a live access token."""
    raise CredentialsError("OAuth2 is not available")


def forget_access_token(mailbox_id: int) -> None:
    """The server refused the cached access token: the next login refreshes it."""
