"""A letter's attachments from its IMAP BODYSTRUCTURE: names, types and
sizes of every part, told by the server without sending the letter.

Used for letters over the size limit, of which only the start is fetched:
the parser would see only the attachments in that start. The rule for what
is an attachment is the parser's (`parsing._body`): any part but the
letter's own text/plain and text/html, an attached letter counting as one.
Sizes are of the decoded content, as the parser gives them; for base64 the
server tells the encoded size, so the decoded one is worked out from it
(for the usual 76-character lines exact up to the two padding bytes).
"""

import email.message
import math

from . import charsets, parsing

# Base64 lines: 76 characters and CRLF.
_BASE64_LINE = 78


def attachments(structure) -> list[dict]:
    """[{"name", "type", "size"}] for the attachments of a BODYSTRUCTURE as
    imapclient parses it; [] for a structure it cannot read."""
    found: list[dict] = []
    try:
        _walk(structure, found)
    except (IndexError, TypeError, ValueError, AttributeError):
        return found
    return found


def _walk(part, found: list[dict]) -> None:
    if _is_multipart(part):
        # imapclient: ([child, ...], subtype, params, disposition, language, location)
        subtype = _text(part[1]).lower() if len(part) > 1 else "mixed"
        disposition, disposition_params = _disposition(part[3] if len(part) > 3 else None)
        if disposition == "attachment":
            name = _filename(disposition, disposition_params, _pairs(part[2] if len(part) > 2 else None))
            size = sum(_decoded_size(leaf) for leaf in _leaves(part))
            found.append(_entry(name or "attached letter.eml", f"multipart/{subtype}", size))
            return
        for child in part[0]:
            _walk(child, found)
        return
    content_type = f"{_text(part[0]).lower()}/{_text(part[1]).lower()}"
    params = _pairs(part[2])
    disposition, disposition_params = _disposition(_disposition_field(part, content_type))
    filename = _filename(disposition, disposition_params, params)
    if content_type == "message/rfc822":
        # An attached letter is one attachment; its size, as the parser
        # counts it, is that of its parts' content.
        inner = part[8] if len(part) > 8 and isinstance(part[8], (list, tuple)) else None
        size = sum(_decoded_size(leaf) for leaf in _leaves(inner)) if inner else _int(part[6])
        found.append(_entry(filename or "attached letter.eml", content_type, size))
        return
    if content_type in ("text/plain", "text/html") and disposition != "attachment" and not filename:
        return  # the letter's own text
    found.append(_entry(filename, content_type, _decoded_size(part)))


def _is_multipart(part) -> bool:
    return isinstance(part, (list, tuple)) and len(part) > 0 and isinstance(part[0], list)


def _leaves(part):
    if _is_multipart(part):
        for child in part[0]:
            yield from _leaves(child)
    else:
        yield part


def _disposition_field(part, content_type: str):
    """Where the disposition sits among a single part's extension fields:
    after MD5, which comes after the line count for text parts and after
    envelope, body and lines for an attached letter."""
    index = 8
    if content_type.startswith("text/"):
        index = 9
    elif content_type == "message/rfc822":
        index = 11
    return part[index] if len(part) > index else None


def _disposition(field) -> tuple[str, dict]:
    if not isinstance(field, (list, tuple)) or not field:
        return "", {}
    return _text(field[0]).lower(), _pairs(field[1] if len(field) > 1 else None)


def _pairs(field) -> dict:
    if not isinstance(field, (list, tuple)):
        return {}
    items = list(field)
    return {_text(items[i]).lower(): _text(items[i + 1]) for i in range(0, len(items) - 1, 2)}


def _filename(disposition: str, disposition_params: dict, params: dict) -> str:
    """The name as the parser would read it from the same header parameters
    (RFC 2231 continuations and charsets, RFC 2047 words, 8-bit text)."""
    message = email.message.Message(policy=parsing.RAW_VALUES)
    if disposition_params:
        message["Content-Disposition"] = _header(disposition or "attachment", disposition_params)
    if params:
        message["Content-Type"] = _header("application/octet-stream", params)
    try:
        name = message.get_filename()
    except Exception:  # noqa: BLE001 - a broken parameter is no name
        return ""
    return charsets.decode_header(name) if name else ""


def _header(value: str, params: dict) -> str:
    pieces = [value]
    for key, item in params.items():
        if key.endswith("*"):  # RFC 2231 extended value: charset'lang'%XX, never quoted
            pieces.append(f"{key}={item}")
        else:
            escaped = item.replace("\\", "\\\\").replace('"', '\\"')
            pieces.append(f'{key}="{escaped}"')
    return "; ".join(pieces)


def _decoded_size(part) -> int:
    size = _int(part[6]) if len(part) > 6 else 0
    encoding = _text(part[5]).lower() if len(part) > 5 else ""
    if encoding != "base64" or size <= 0:
        return size
    breaks = max(math.ceil((size + 2) / _BASE64_LINE) - 1, 0)
    return (size - 2 * breaks) * 3 // 4


def _entry(name: str, content_type: str, size: int) -> dict:
    return {"name": name[:255], "type": content_type[:100], "size": size}


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "surrogateescape")
    return str(value)


def _int(value) -> int:
    try:
        return max(int(value), 0)
    except (TypeError, ValueError):
        return 0
