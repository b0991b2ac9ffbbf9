"""Secrets at rest: Fernet with the keys from ENCRYPTION_KEY (first encrypts, all decrypt)."""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(keys: str) -> MultiFernet:
    return MultiFernet([Fernet(k.strip().encode()) for k in keys.split(",") if k.strip()])


def encrypt(plain: str) -> str:
    return _fernet(settings.ENCRYPTION_KEY).encrypt(plain.encode()).decode()


def decrypt(token: str) -> str:
    try:
        return _fernet(settings.ENCRYPTION_KEY).decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("The secret cannot be decrypted with the configured ENCRYPTION_KEY") from exc


def rotate(token: str) -> str:
    """The same secret encrypted with the first key, so the older keys can
    be removed. Raises ValueError when no configured key decrypts it."""
    try:
        return _fernet(settings.ENCRYPTION_KEY).rotate(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("The secret cannot be decrypted with the configured ENCRYPTION_KEY") from exc
