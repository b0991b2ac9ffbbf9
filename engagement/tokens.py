"""Signed tokens of the pixel and the tracked links.

A token names what it stands for by ids only (the kind, the recipient's id,
the link's id): no address, no URL, nothing personal. It is signed with an
HMAC-SHA256 (truncated to 96 bits) under ENGAGEMENT_TOKEN_KEYS: the first key
signs, every key verifies, so a key is rotated by putting a new one first and
dropping the old one once its letters no longer matter. A token that does
not verify under any key is refused; nothing in it is trusted before that.
"""

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

OPEN, CLICK, HONEYPOT = 1, 2, 3
KINDS = (OPEN, CLICK, HONEYPOT)
VERSION = 1
MAC_BYTES = 12
MAX_TOKEN_CHARS = 80


class BadToken(ValueError):
    """Forged, altered, truncated or not ours."""


@dataclass(frozen=True)
class Token:
    kind: int
    recipient_id: int
    link_id: int = 0


@lru_cache(maxsize=8)
def _keys(configured: tuple[str, ...]) -> tuple[bytes, ...]:
    return tuple(hashlib.sha256(b"engagement-token:" + key.encode()).digest() for key in configured)


def keys() -> tuple[bytes, ...]:
    return _keys(tuple(settings.ENGAGEMENT_TOKEN_KEYS))


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varint(data: bytes, at: int) -> tuple[int, int]:
    value, shift = 0, 0
    while at < len(data) and shift <= 63:
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at += 1
        if not byte & 0x80:
            return value, at
        shift += 7
    raise BadToken("truncated")


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:MAC_BYTES]


def sign(token: Token) -> str:
    if token.kind not in KINDS or token.recipient_id <= 0 or token.link_id < 0:
        raise ValueError("not a token")
    payload = bytes([VERSION << 4 | token.kind]) + _varint(token.recipient_id)
    if token.kind == CLICK:
        payload += _varint(token.link_id)
    raw = payload + _mac(keys()[0], payload)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def verify(text: str) -> Token:
    """The token's contents, once its signature holds under one of the keys."""
    if not text or len(text) > MAX_TOKEN_CHARS:
        raise BadToken("length")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise BadToken("encoding") from None
    if len(raw) <= MAC_BYTES + 1:
        raise BadToken("short")
    payload, mac = raw[:-MAC_BYTES], raw[-MAC_BYTES:]
    if not any(hmac.compare_digest(mac, _mac(key, payload)) for key in keys()):
        raise BadToken("signature")
    if payload[0] >> 4 != VERSION or payload[0] & 0x0F not in KINDS:
        raise BadToken("version")
    kind = payload[0] & 0x0F
    recipient_id, at = _read_varint(payload, 1)
    link_id = 0
    if kind == CLICK:
        link_id, at = _read_varint(payload, at)
    if at != len(payload) or recipient_id <= 0 or (kind == CLICK and link_id <= 0):
        raise BadToken("layout")
    return Token(kind, recipient_id, link_id)


def pixel_url(recipient_id: int) -> str:
    return f"{settings.ENGAGEMENT_BASE_URL}/t/o/{sign(Token(OPEN, recipient_id))}.gif"


def click_url(recipient_id: int, link_id: int) -> str:
    return f"{settings.ENGAGEMENT_BASE_URL}/t/c/{sign(Token(CLICK, recipient_id, link_id))}"


def honeypot_url(recipient_id: int) -> str:
    return f"{settings.ENGAGEMENT_BASE_URL}/t/c/{sign(Token(HONEYPOT, recipient_id))}"
