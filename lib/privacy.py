"""Plain helpers for a person's data (export and erasure), shared by the apps
that keep some: rows as JSON-ready dicts, raw bytes readable, and an address
found and replaced in text, bytes and JSON.

The address is matched case-insensitively and as a whole address, so that
erasing anna@example.ru never touches hanna@example.ru or
anna@example.ru.evil. Encoded forms (RFC 2047 words, base64 or
quoted-printable bodies) are not decoded: a raw source that must go entirely
is deleted by its owner instead.
"""

import base64
import re
from datetime import date, datetime
from decimal import Decimal
from uuid import UUID

# What an erased address becomes where one must stay (a recipient list keeps
# its length, a raw letter stays parseable): `.invalid` never resolves.
ERASED_ADDRESS = "erased@erased.invalid"

_ADDRESS_CHAR = r"A-Za-z0-9._%+\-"


def normalize_email(email: str) -> str:
    """An address as the apps store it: without spaces around, lower case."""
    return (email or "").strip().lower()


# A display name before an address in angle brackets ("Ivan Petrov" <ivan@…>,
# Ivan Petrov <ivan@…>): it names the person too, so it goes with the address.
_NAMED = r'(?P<lead>[ \t]*)(?:"[^"\r\n]*"|[^,:;<>"\r\n]*?)[ \t]*<[ \t]*{address}[ \t]*>'


def _pattern(email: str) -> re.Pattern:
    return re.compile(rf"(?<![{_ADDRESS_CHAR}]){re.escape(email)}(?!\.?[A-Za-z0-9\-])", re.IGNORECASE)


def _named_pattern(email: str) -> re.Pattern:
    return re.compile(_NAMED.format(address=re.escape(email)), re.IGNORECASE)


def _bytes_pattern(email: str) -> re.Pattern:
    escaped = re.escape(email.encode("utf-8"))
    return re.compile(rb"(?<![A-Za-z0-9._%+\-])" + escaped + rb"(?!\.?[A-Za-z0-9\-])", re.IGNORECASE)


def _named_bytes_pattern(email: str) -> re.Pattern:
    return re.compile(_NAMED.format(address=re.escape(email)).encode("utf-8"), re.IGNORECASE)


def mentions(value, email: str) -> bool:
    """Whether the address appears anywhere in `value` (text, bytes, or JSON)."""
    if isinstance(value, bytes | memoryview):
        return bool(_bytes_pattern(email).search(bytes(value)))
    if isinstance(value, str):
        return bool(_pattern(email).search(value))
    if isinstance(value, dict):
        return any(mentions(item, email) for item in value.values())
    if isinstance(value, list | tuple):
        return any(mentions(item, email) for item in value)
    return False


def redact(value, email: str):
    """`value` (text, bytes, or JSON) with every appearance of the address
    replaced by ERASED_ADDRESS, with the display name before it where it has
    one; anything else is left as it was."""
    if isinstance(value, bytes | memoryview):
        named = _named_bytes_pattern(email).sub(rb"\g<lead><" + ERASED_ADDRESS.encode() + rb">", bytes(value))
        return _bytes_pattern(email).sub(ERASED_ADDRESS.encode(), named)
    if isinstance(value, str):
        named = _named_pattern(email).sub(rf"\g<lead><{ERASED_ADDRESS}>", value)
        return _pattern(email).sub(ERASED_ADDRESS, named)
    if isinstance(value, dict):
        return {key: redact(item, email) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact(item, email) for item in value]
    return value


def readable_bytes(raw) -> dict:
    """Raw bytes for a person to read: as text when they are UTF-8 (plain
    ASCII letters are), else base64."""
    raw = bytes(raw or b"")
    try:
        return {"text": raw.decode("utf-8")}
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(raw).decode("ascii")}


def json_value(value):
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | UUID):
        return str(value)
    if isinstance(value, bytes | memoryview):
        return readable_bytes(value)
    return value


def row(obj, *, exclude=()) -> dict:
    """Every concrete field of a model row (foreign keys as their ids), JSON-ready."""
    return {
        field.attname: json_value(getattr(obj, field.attname))
        for field in obj._meta.concrete_fields
        if field.name not in exclude and field.attname not in exclude
    }
