"""A letter's MIME tree, as the standard library's parser builds it, without
reading the bodies line by line.

`email`'s feed parser reads every line of a letter through a Python loop
that also matches each line against every enclosing multipart boundary: for
a letter with an attached file that is most of its parsing time (a 10 KB
base64 attachment is some 140 lines). Here only the header blocks go
through that parser; a body is cut out of the text as one string, and a
multipart body is split at its boundary lines by one regular-expression
search.

`message_from_bytes` gives the same tree (headers, payloads, preambles,
epilogues) as `email.message_from_bytes(raw, policy=...)` for the letters
it understands, and falls back to it for all others: a bare CR, a header
block the parser finds a defect in, message/* parts, multipart/digest, a
multipart without its start or close boundary, or two boundary lines in a
row. The parser's defect list is not reproduced (the letters' parsing never
reads it).
"""

import email
import re
from email.feedparser import FeedParser

# The end of a header block: the first empty line (the block may be empty).
_HEAD_END_RE = re.compile(r"\A\r?\n|\n\r?\n")


def message_from_bytes(raw: bytes, policy):
    """`email.message_from_bytes(raw, policy=policy)`."""
    text = raw.decode("ascii", "surrogateescape")
    if text.count("\r") == text.count("\r\n"):  # lines end in LF or CRLF only
        message = _message(text, policy)
        if message is not None:
            return message
    return email.message_from_bytes(raw, policy=policy)


def _message(text: str, policy):
    """The message `text` holds, or None when the feed parser must read it."""
    end = _HEAD_END_RE.search(text)
    if end is None:
        return None
    parser = FeedParser(policy=policy)
    parser._set_headersonly()
    parser.feed(text[: end.end()])
    message = parser.close()
    if message.defects or message._payload != "":
        return None  # a line that is no header before the empty line, or a misplaced one
    maintype = message.get_content_maintype()
    body = text[end.end() :]
    if maintype == "message":
        return None
    if maintype != "multipart":
        message._payload = body
        return message
    return _multipart(message, body, policy)


def _multipart(message, body: str, policy):
    boundary = message.get_boundary()
    if boundary is None or message.get_content_type() == "multipart/digest":
        return None
    # Searched for as a literal first (a pattern that starts at a line's
    # start is tried at every character), then kept at lines' starts only.
    found = re.finditer(r"(?m)--" + re.escape(boundary) + r"(--)?[ \t]*\r?$", body)
    lines = [line for line in found if line.start() == 0 or body[line.start() - 1] == "\n"]
    if not lines or lines[0].group(1):
        return None  # no start boundary
    close = next((index for index, line in enumerate(lines) if line.group(1)), None)
    if close is None:
        return None  # no close boundary: the parser reads the last part to the end
    lines = lines[: close + 1]
    # Where each boundary line's line ending ends.
    ends = [line.end() + 1 if body.startswith("\n", line.end()) else line.end() for line in lines]
    preamble = body[: lines[0].start()]
    if preamble:
        message.preamble = _without_line_ending(preamble)
    message._payload = None
    for n in range(len(lines) - 1):
        part = _message(body[ends[n] : lines[n + 1].start()], policy)
        if part is None:
            # Two boundary lines in a row come here too (an empty part has
            # no header block): the parser skips the second, even a close one.
            return None
        # The line ending before a boundary belongs to the boundary.
        if part.get_content_maintype() == "multipart":
            if part.epilogue == "":
                part.epilogue = None
            elif part.epilogue is not None:
                part.epilogue = _without_line_ending(part.epilogue)
        elif isinstance(part._payload, str):
            part._payload = _without_line_ending(part._payload)
        message.attach(part)
    message.epilogue = body[ends[-1] :]
    return message


def _without_line_ending(text: str) -> str:
    """`text` without the line ending it ends with (the parser's NLCRE_eol,
    without its search from the start of a long text)."""
    if text.endswith("\r\n"):
        return text[:-2]
    if text.endswith(("\r", "\n")):
        return text[:-1]
    return text
