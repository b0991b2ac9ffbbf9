"""When two letters are one letter.

A Message-ID alone does not tell: broken mailers, form and CRM senders that
reuse one, and spam that copies headers give the same Message-ID to letters
with different senders and text. And the same letter is delivered more than
once: a copy in a second watched folder, a letter sent to two of the
mailbox's addresses, a file ingested again. Those copies differ only in the
headers servers add on delivery.

So a letter is known by the digest of its bytes with those delivery headers
left out (line endings and trailing blank lines normalised): the same
Message-ID and the same content give the same digest; a reused Message-ID
with other content gives another. A letter without a Message-ID is known by
the same digest. Never raises: any bytes have a digest.
"""

import hashlib
import re

DIGEST_PREFIX = "c1:"

# Headers that receiving servers add or rewrite on delivery (RFC 5321 trace
# fields, delivery addresses, filters' verdicts, local delivery agents' and
# mail clients' bookkeeping), lower case.
DELIVERY_HEADERS = frozenset(
    {
        "received",
        "return-path",
        "delivered-to",
        "x-delivered-to",
        "x-original-to",
        "envelope-to",
        "x-envelope-to",
        "x-envelope-from",
        "x-received",
        "received-spf",
        "authentication-results",
        "x-original-authentication-results",
        "dkim-filter",
        "x-originalarrivaltime",
        "x-rcpt-to",
        "x-sieve",
        "x-sieve-redirected-from",
        "x-resolved-to",
        "x-antiabuse",
        "x-mras",
        "status",
        "x-status",
        "x-keywords",
        "x-uid",
        "content-length",
        "lines",
        "x-mozilla-status",
        "x-mozilla-status2",
        "x-mozilla-keys",
        "x-account-key",
        "x-uidl",
    }
)
DELIVERY_HEADER_PREFIXES = (
    "arc-",
    "x-spam",
    "x-virus",
    "x-rspamd",
    "x-amavis",
    "x-dspam",
    "x-kse-",
    "x-kaspersky",
    "x-yandex-",
    "x-mailru-",
    "x-mail-ru-",
    "x-gm-",
    "x-google-",
    "x-ms-exchange-organization-",
    "x-ms-exchange-transport-",
    "x-ms-exchange-crosstenant-",
    "x-microsoft-antispam",
    "x-forefront-",
    "x-eopattributedmessage",
    "x-proofpoint-",
    "x-mimecast-",
    "x-barracuda-",
)
FIELD_NAME_RE = re.compile(rb"^([!-9;-~]+)[ \t]*:")


def _is_delivery_header(name: bytes) -> bool:
    lowered = name.decode("ascii", "replace").lower()
    return lowered in DELIVERY_HEADERS or lowered.startswith(DELIVERY_HEADER_PREFIXES)


def content_digest(raw: bytes) -> str:
    """The letter's identity: a digest of its header fields other than the
    delivery ones, in their order and as written, and of its body."""
    text = raw.replace(b"\r\n", b"\n")
    head, separator, body = text.partition(b"\n\n")
    if not separator and not FIELD_NAME_RE.match(head):
        head, body = b"", text  # no header section at all: garbage is all body
    digest = hashlib.sha256()
    skipping = False
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            if not skipping:
                digest.update(line + b"\n")  # a folded field's continuation
            continue
        field = FIELD_NAME_RE.match(line)
        skipping = field is not None and _is_delivery_header(field.group(1))
        if not skipping:
            digest.update(line + b"\n")
    digest.update(b"\n")
    digest.update(body.rstrip(b"\n"))
    return DIGEST_PREFIX + digest.hexdigest()
