"""A corpus of awkward letters (tests/letters/): Russian mail in windows-1251,
koi8-r, cp866 and UTF-8; quoted-printable and base64; RFC 2047 and RFC 2231
names; wrong, unknown and missing charsets; broken encodings. Each letter
has its decoded subject, sender and a body excerpt in expected.json, written
by hand, and must read exactly so."""

import json
from datetime import datetime
from pathlib import Path

import pytest

from mailbox_sync import parsing

CORPUS = Path(__file__).parent / "letters"
CASES = json.loads((CORPUS / "expected.json").read_text(encoding="utf-8"))


def test_the_corpus_has_at_least_40_letters_each_with_its_expectations():
    files = sorted(path.name for path in CORPUS.glob("*.eml"))
    assert len(files) >= 40
    assert sorted(case["file"] for case in CASES) == files


@pytest.mark.parametrize("case", CASES, ids=[case["file"] for case in CASES])
def test_each_letter_reads_as_its_sender_wrote_it(case):
    letter = parsing.parse((CORPUS / case["file"]).read_bytes(), 1000)
    assert letter.subject == case["subject"]
    assert letter.sender_email == case["sender_email"]
    assert letter.sender_name == case["sender_name"]
    assert case["text"] in letter.text
    for absent in case.get("text_absent", []):
        assert absent not in letter.text
    assert letter.malformed == case.get("malformed", False), letter.parse_error
    if not letter.malformed:
        for value in (letter.subject, letter.sender_name, letter.text):
            assert "\ufffd" not in value  # nothing lost to a wrong charset
    if "attachments" in case:
        assert [[a["name"], a["type"], a["size"]] for a in letter.attachments] == case["attachments"]
    if "attachment_names" in case:
        assert [a["name"] for a in letter.attachments] == case["attachment_names"]
    if "date" in case:
        expected = datetime.fromisoformat(case["date"]) if case["date"] else None
        assert (letter.date_header, letter.date_offset_minutes) == (expected, case["date_offset"])
    for name, value in case.get("headers", {}).items():
        assert letter.headers[name] == value
