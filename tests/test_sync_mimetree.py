"""The letter's MIME tree read without the feed parser's line-by-line loop
(mailbox_sync/mimetree.py) is the standard library's tree: for every letter
of the corpus, for letters shaped as a first sync's are, and for the awkward
shapes, either the same tree or a fall back to the standard library."""

import base64
import email
import random
from pathlib import Path

import pytest

from mailbox_sync import mimetree, parsing

CORPUS = Path(__file__).parent / "letters"
POLICY = parsing.RAW_VALUES


def shape(message) -> tuple:
    """Everything of a message tree the letters' parsing may read."""
    payload = message._payload
    if isinstance(payload, list):
        payload = [shape(part) for part in payload]
    return (
        type(message),
        message._unixfrom,
        list(message._headers),
        message._default_type,
        message.preamble,
        message.epilogue,
        payload,
    )


def fast(raw: bytes):
    """The tree mimetree builds itself, or None when it leaves the letter to the standard library."""
    text = raw.decode("ascii", "surrogateescape")
    if text.count("\r") != text.count("\r\n"):
        return None
    return mimetree._message(text, POLICY)


def standard(raw: bytes):
    return email.message_from_bytes(raw, policy=POLICY)


def enquiry(n: int, rng: random.Random, newline: bytes = b"\r\n") -> bytes:
    """A letter as the first-sync bench writes them: plain, or mixed with an
    alternative part and a PDF."""
    charset = rng.choice(["utf-8", "windows-1251", "koi8-r"])
    body = ("Добрый день! Прошу выставить счёт. " * rng.randint(1, 60)).encode(charset)
    encoding = rng.choice(["8bit", "base64"])
    payload = base64.encodebytes(body) if encoding == "base64" else body
    text_part = (
        f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: {encoding}\r\n\r\n".encode()
        + payload
    )
    head = f"From: client{n}@client.test\r\nTo: info+k7m2@site.test\r\nSubject: n{n}\r\nMIME-Version: 1.0\r\n".encode()
    if n % 2:
        raw = head + text_part
    else:
        raw = (
            head
            + b'Content-Type: multipart/mixed; boundary="m"\r\n\r\nThis is a multi-part message.\r\n--m\r\n'
            + b'Content-Type: multipart/alternative; boundary="a"\r\n\r\n--a\r\n'
            + text_part
            + b"\r\n--a\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<p>"
            + "Привет".encode()
            + b"</p>\r\n--a--\r\n--m\r\nContent-Type: application/pdf\r\n"
            + b'Content-Disposition: attachment; filename="rekvizity.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
            + base64.encodebytes(rng.randbytes(3000))
            + b"--m--\r\nepilogue\r\n"
        )
    return raw.replace(b"\r\n", newline)


@pytest.mark.parametrize("path", sorted(CORPUS.glob("*.eml")), ids=lambda path: path.name)
def test_each_corpus_letter_gets_the_standard_librarys_tree(path):
    raw = path.read_bytes()
    assert shape(mimetree.message_from_bytes(raw, POLICY)) == shape(standard(raw))


@pytest.mark.parametrize("newline", [b"\r\n", b"\n"], ids=["crlf", "lf"])
def test_letters_of_a_first_sync_are_read_without_the_feed_parser_and_alike(newline):
    rng = random.Random(7)
    for n in range(60):
        raw = enquiry(n, rng, newline)
        tree = fast(raw)
        assert tree is not None, n  # the shapes every sync meets take the quick way
        assert shape(tree) == shape(standard(raw)), n
        assert parsing.parse(raw, 1000) == _parsed_by_the_standard_library(raw)


def _parsed_by_the_standard_library(raw: bytes) -> parsing.ParsedLetter:
    original = mimetree.message_from_bytes
    mimetree.message_from_bytes = lambda raw, policy: email.message_from_bytes(raw, policy=policy)
    try:
        return parsing.parse(raw, 1000)
    finally:
        mimetree.message_from_bytes = original


MULTIPART = b'From: a@b.test\r\nContent-Type: multipart/mixed; boundary="zz"\r\n\r\n'
PART = b"Content-Type: text/plain\r\n\r\nhello\r\n"

AWKWARD = {
    "no blank line after the headers": b"From: a@b.test\r\nSubject: x\r\n",
    "a body line among the headers": b"From: a@b.test\r\nnot a header\r\nSubject: x\r\n\r\nbody\r\n",
    "a continuation first": b" folded\r\nFrom: a@b.test\r\n\r\nbody\r\n",
    "a bare CR": b"From: a@b.test\r\n\r\nbody\rmore\r\n",
    "an empty header block": b"\r\nbody only\r\n",
    "a unix From line": b"From someone Sat Jan  3 01:05:34 1996\r\nFrom: a@b.test\r\n\r\nbody\r\n",
    "no start boundary": MULTIPART + b"just text\r\n",
    "no close boundary": MULTIPART + b"--zz\r\n" + PART,
    "close boundary first": MULTIPART + b"--zz--\r\n" + PART,
    "two boundary lines in a row": MULTIPART + b"--zz\r\n--zz\r\n" + PART + b"--zz--\r\n",
    "a close right after a boundary": MULTIPART + b"--zz\r\n" + PART + b"--zz\r\n--zz--\r\ntail\r\n",
    "no boundary parameter": b"From: a@b.test\r\nContent-Type: multipart/mixed\r\n\r\n--zz\r\n" + PART,
    "a boundary with spaces after it": MULTIPART + b"--zz  \r\n" + PART + b"--zz-- \t\r\n",
    "a boundary without a line ending at the end": MULTIPART + b"--zz\r\n" + PART + b"--zz--",
    "a part without a body": MULTIPART + b"--zz\r\nContent-Type: text/plain\r\n\r\n--zz--\r\n",
    "a part of headers only": MULTIPART + b"--zz\r\nContent-Type: text/plain\r\n--zz--\r\n",
    "a part without headers": MULTIPART + b"--zz\r\n\r\nbare\r\n--zz--\r\n",
    "a boundary-like line": MULTIPART + b"--zz\r\n" + PART + b"--zzz\r\n--zz-x\r\n--zz--\r\n",
    "a boundary inside a line": MULTIPART
    + b"--zz\r\nContent-Type: text/plain\r\n\r\nsee --zz\r\nx--zz--\r\n--zz--\r\n",
    "preamble and epilogue": MULTIPART + b"pre\r\n\r\n--zz\r\n" + PART + b"--zz--\r\n\r\npost\r\n--zz\r\n",
    "an empty preamble line": MULTIPART + b"\r\n--zz\r\n" + PART + b"--zz--\r\n",
    "a regex character in the boundary": MULTIPART.replace(b"zz", b"a.b+(c)")
    + b"--a.b+(c)\r\n"
    + PART
    + b"--a.b+(c)--\r\n",
    "nested without an epilogue": MULTIPART
    + b'--zz\r\nContent-Type: multipart/alternative; boundary="in"\r\n\r\n--in\r\n'
    + PART
    + b"--in--\r\n--zz--\r\n",
    "nested with an epilogue": MULTIPART
    + b'--zz\r\nContent-Type: multipart/alternative; boundary="in"\r\n\r\n--in\r\n'
    + PART
    + b"--in--\r\ninner epilogue\r\n\r\n--zz\r\n"
    + PART
    + b"--zz--\r\n",
    "nested without its close": MULTIPART
    + b'--zz\r\nContent-Type: multipart/alternative; boundary="in"\r\n\r\n--in\r\n'
    + PART
    + b"--zz--\r\n",
    "a digest": b'From: a@b.test\r\nContent-Type: multipart/digest; boundary="zz"\r\n\r\n--zz\r\n\r\n'
    + b"From: c@d.test\r\n\r\nx\r\n--zz--\r\n",
    "an attached letter": MULTIPART
    + b"--zz\r\nContent-Type: message/rfc822\r\n\r\nFrom: c@d.test\r\n\r\nx\r\n--zz--\r\n",
    "a delivery status": b"From: a@b.test\r\nContent-Type: message/delivery-status\r\n\r\nA: b\r\n\r\nC: d\r\n",
    "8-bit bytes": "From: Иван <a@b.test>\r\n\r\nПривет\r\n".encode("cp1251"),
    "garbage": bytes(range(256)) * 4,
}


@pytest.mark.parametrize("name", list(AWKWARD))
def test_awkward_shapes_get_the_standard_librarys_tree(name):
    raw = AWKWARD[name]
    assert shape(mimetree.message_from_bytes(raw, POLICY)) == shape(standard(raw))
    tree = fast(raw)
    assert tree is None or shape(tree) == shape(standard(raw))
    raw_lf = raw.replace(b"\r\n", b"\n")
    assert shape(mimetree.message_from_bytes(raw_lf, POLICY)) == shape(standard(raw_lf))


@pytest.mark.parametrize(
    "name",
    [
        "no blank line after the headers",
        "a body line among the headers",
        "a bare CR",
        "no start boundary",
        "no close boundary",
        "close boundary first",
        "two boundary lines in a row",
        "a close right after a boundary",
        "nested without its close",
        "a digest",
        "an attached letter",
    ],
)
def test_shapes_it_does_not_reproduce_are_left_to_the_standard_library(name):
    assert fast(AWKWARD[name]) is None


def test_the_usual_multipart_shapes_are_read_without_the_feed_parser():
    for name in (
        "a boundary with spaces after it",
        "a boundary inside a line",
        "preamble and epilogue",
        "nested with an epilogue",
    ):
        assert fast(AWKWARD[name]) is not None, name
