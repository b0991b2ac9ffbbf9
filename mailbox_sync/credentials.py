"""What a connection logs in with: the mailbox's password (kept encrypted),
or for a mailbox connected with OAuth2 an access token (`grants`). The
errors here never carry a secret."""

from lib import crypto

from .imap import Failure


class CredentialsError(Exception):
    """No usable secret; `kind` (a Failure) says what to fix."""

    def __init__(self, message: str, kind: str = Failure.CONFIG):
        super().__init__(message)
        self.kind = kind


class ReconnectNeeded(CredentialsError):
    """The provider refused the grant (revoked or expired): the account
    manager must connect the mailbox again. The message is the provider's."""

    def __init__(self, message: str):
        super().__init__(message, Failure.RECONNECT)


def password_of(encrypted: str) -> str:
    try:
        return crypto.decrypt(encrypted) if encrypted else ""
    except ValueError as error:
        raise CredentialsError(str(error)) from None
