"""mailbox_sync.parsing and .charsets: raw RFC 822 bytes to the fields a
letter keeps, whatever charset the letter declares (or fails to)."""

import hashlib
from datetime import UTC, datetime, timedelta

import pytest

from mailbox_sync import bodystructure, charsets, parsing
from tests.factories import letter_bytes

T0 = datetime(2025, 7, 31, 12, 0, tzinfo=UTC)

MULTIPART = b"""\
From: =?utf-8?B?0JjQstCw0L0g0J/QtdGC0YDQvtCy?= <Ivan@Client.TEST>
To: "Shop" <Info+K7M2@Shop.TEST>, second@shop.test
Cc: Boss@Shop.Test
Delivered-To: Info+K7M2@Shop.test
X-Original-To: Alias@Shop.test
Subject: =?utf-8?Q?=D0=9F=D1=80=D0=B0=D0=B9=D1=81?= please
Date: Thu, 31 Jul 2025 15:00:00 +0300
Message-ID: <reply-2@client.test>
In-Reply-To: <first@shop.test>
References: <root@client.test> <first@shop.test>
MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="outer"

--outer
Content-Type: multipart/alternative; boundary="inner"

--inner
Content-Type: text/plain; charset=utf-8

Plain words here.
--inner
Content-Type: text/html; charset=utf-8

<p>Html words here.</p>
--inner--
--outer
Content-Type: application/pdf; name="offer.pdf"
Content-Disposition: attachment; filename="offer.pdf"
Content-Transfer-Encoding: base64

JVBERi0xLjQK
--outer--
"""

HTML_ONLY = b"""\
From: ivan@client.test
To: info@shop.test
Subject: html
Content-Type: text/html; charset=utf-8

<html><head><title>Title words</title><style>p {color: red}</style></head>
<body><p>Hello &amp; welcome</p><script>alert("stolen")</script><div>Second line</div></body></html>
"""


# --- Parsing ------------------------------------------------------------------


def test_it_decodes_the_subject_and_sender_from_rfc2047():
    letter = parsing.parse(MULTIPART, 1000)
    assert letter.subject == "Прайс please"
    assert letter.sender_name == "Иван Петров"
    assert letter.sender_email == "ivan@client.test"
    assert not letter.malformed


def test_it_lists_delivered_to_with_x_original_to_and_lower_cases_to_and_cc():
    letter = parsing.parse(MULTIPART, 1000)
    assert letter.delivered_to == ["info+k7m2@shop.test", "alias@shop.test"]
    assert letter.to == ["info+k7m2@shop.test", "second@shop.test"]
    assert letter.cc == ["boss@shop.test"]


def test_it_takes_the_text_from_text_plain_when_there_is_one():
    assert parsing.parse(MULTIPART, 1000).text == "Plain words here."


def test_it_takes_the_text_from_html_without_tags_or_script_contents():
    text = parsing.parse(HTML_ONLY, 1000).text
    assert "Hello & welcome" in text
    assert "Second line" in text
    assert "<" not in text
    assert "stolen" not in text
    assert "color: red" not in text


def test_it_cuts_the_text_to_the_limit():
    raw = letter_bytes(to="info@shop.test", body="x" * 5000)
    assert parsing.parse(raw, 1000).text == "x" * 1000
    assert parsing.parse(raw, 10).text == "x" * 10


def test_it_lists_attachments_with_name_type_and_decoded_size():
    attachments = parsing.parse(MULTIPART, 1000).attachments
    # "JVBERi0xLjQK" is the base64 of the 9 bytes "%PDF-1.4\n".
    assert attachments == [{"name": "offer.pdf", "type": "application/pdf", "size": 9}]


def test_it_keeps_in_reply_to_references_and_message_id():
    letter = parsing.parse(MULTIPART, 1000)
    assert letter.message_id == "<reply-2@client.test>"
    assert letter.in_reply_to == "<first@shop.test>"
    assert letter.references == ["<root@client.test>", "<first@shop.test>"]


def test_it_reads_a_references_header_given_twice():
    raw = b"References: <a@x.test>\r\nReferences: <b@x.test>\r\n" + letter_bytes(to="info@shop.test", body="Hi")
    letter = parsing.parse(raw, 1000)
    assert letter.references == ["<a@x.test>", "<b@x.test>"]
    assert (letter.text, letter.malformed) == ("Hi", False)


def test_it_takes_the_arrival_time_from_the_top_received_header():
    raw = (
        b"Received: from mx2 by mx3; Thu, 31 Jul 2025 12:10:00 +0000\r\n"
        b"Received: from mx1 by mx2; Thu, 31 Jul 2025 12:05:00 +0000\r\n"
    ) + letter_bytes(to="info@shop.test", date=T0)
    letter = parsing.parse(raw, 1000)
    assert letter.received_header_at == T0 + timedelta(minutes=10)
    assert letter.date_header == T0


def test_it_reads_header_names_in_any_case():
    raw = letter_bytes(to="info@shop.test", headers={"LIST-ID": "<news.client.test>", "x-original-to": "A@shop.test"})
    letter = parsing.parse(raw, 1000)
    assert letter.headers["List-Id"] == "<news.client.test>"
    assert "a@shop.test" in letter.delivered_to


@pytest.mark.parametrize(
    "raw",
    [b"", b"\x00\xff\xfe\x81 garbage \x00", b"\xff" * 300, b"Subject: \xff\xfe\n\n\x00body", b"From: <<<@>>>\n\n"],
)
def test_it_flags_garbage_as_malformed_and_never_raises(raw):
    letter = parsing.parse(raw, 1000)
    assert letter.malformed
    assert letter.parse_error


def test_the_dedupe_key_is_the_message_id_else_a_hash_of_the_raw_letter():
    assert parsing.dedupe_key("<a@b.test>", b"raw") == "<a@b.test>"
    assert parsing.dedupe_key("", b"raw") == "sha256:" + hashlib.sha256(b"raw").hexdigest()


def test_it_keeps_the_date_with_its_time_zone():
    letter = parsing.parse(MULTIPART, 1000)
    assert letter.date_header == datetime(2025, 7, 31, 12, 0, tzinfo=UTC)
    assert letter.date_offset_minutes == 180


def test_a_letter_without_a_date_has_none():
    raw = b"From: a@client.test\r\nSubject: x\r\n\r\nbody\r\n"
    letter = parsing.parse(raw, 1000)
    assert (letter.date_header, letter.date_offset_minutes, letter.malformed) == (None, None, False)


def test_the_sender_falls_back_to_sender_then_reply_to():
    raw = b"Reply-To: Client <Client@Example.TEST>\r\nSubject: x\r\n\r\nbody\r\n"
    letter = parsing.parse(raw, 1000)
    assert (letter.sender_name, letter.sender_email, letter.malformed) == ("Client", "client@example.test", False)


def test_a_letter_without_any_sender_is_flagged_but_keeps_its_text():
    letter = parsing.parse(b"Subject: Hello\r\n\r\nJust text\r\n", 1000)
    assert (letter.subject, letter.text) == ("Hello", "Just text")
    assert letter.malformed and "no sender address" in letter.parse_error


def test_a_message_id_without_angle_brackets_is_kept():
    raw = b"From: a@client.test\r\nMessage-ID: bare-id@client.test\r\n\r\nx\r\n"
    assert parsing.parse(raw, 1000).message_id == "bare-id@client.test"


def test_a_long_body_in_an_unlabelled_charset_is_read_and_cut():
    text = "Добрый день! Нужен кирпич. " * 20_000  # about 540,000 characters of windows-1251
    raw = b"From: a@client.test\r\nContent-Type: text/plain\r\n\r\n" + text.encode("cp1251")
    assert parsing.parse(raw, 1000).text == text[:1000]


def test_the_reply_parser_reads_only_what_a_reply_needs():
    raw = (
        b"From: manager@shop.test\r\nTo: Client <Client@Example.test>, other@example.test\r\n"
        b"Cc: boss@example.test\r\nBcc: hidden@example.test\r\nMessage-ID: <r1@shop.test>\r\n"
        b"In-Reply-To: <q1@example.test>\r\nReferences: <q0@example.test> <q1@example.test>\r\n\r\n"
    )
    reply = parsing.parse_reply(raw)
    assert reply.message_id == "<r1@shop.test>"
    assert reply.in_reply_to == "<q1@example.test>"
    assert reply.references == ["<q0@example.test>", "<q1@example.test>"]
    assert reply.recipients == ["client@example.test", "other@example.test", "boss@example.test", "hidden@example.test"]


# --- charsets -----------------------------------------------------------------------

PHRASE = "Здравствуйте! Прошу выставить счёт на оплату кирпича — «М150», 3 поддона."


@pytest.mark.parametrize("actual", ["cp1251", "koi8_r", "utf-8", "cp866", "iso8859_5"])
@pytest.mark.parametrize("label", [None, "windows-1251", "koi8-r", "utf-8", "iso-8859-1", "us-ascii", "no-such"])
def test_russian_text_is_read_whatever_its_label_says(actual, label):
    # Only windows-1251 and UTF-8 have the typographic signs.
    data = PHRASE if actual in ("cp1251", "utf-8") else PHRASE.replace("«", '"').replace("»", '"').replace("—", "-")
    assert charsets.decode(data.encode(actual), label) == data


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Grüße aus München, schöne Ziegel", "iso-8859-1"),
        ("Ça va très bien, à bientôt", "windows-1252"),
        ("询价：红砖的价格", "gb2312"),
        ("価格を教えてください", "iso-2022-jp"),
    ],
)
def test_a_right_label_on_other_languages_is_kept(text, label):
    assert charsets.decode(text.encode(label), label) == text


@pytest.mark.parametrize("codec", ["cp1251", "koi8_r", "cp866", "iso8859_5", "latin-1"])
def test_a_code_page_score_counts_what_its_patterns_match(codec):
    # Counted without regexes in page_scores: the same numbers as the patterns give.
    samples = [
        PHRASE.encode(codec, "replace"),
        "зАЯВКА нА ДОСТАВКУ, ПРИВЕТ ВсЕм".encode(codec, "replace"),
        "Grüße für Zoë, façade".encode("latin-1") + b" f\xfc\xfcr a\xe9b\xe9c",
        bytes(range(256)) * 3,
    ]
    codecs_ = ["cp1251", "koi8-r", "koi8-u", "iso8859-5", "cp866"]
    for sample in samples:
        between_latin = [match[0] for match in charsets._LATIN_NEIGHBOUR_RE.findall(sample)]
        high = [byte for byte in sample if byte >= 0x80]
        for name, score in charsets.page_scores(sample, codecs_).items():
            page = charsets._page(name)
            expected = sum(high.count(byte) * page.weight[byte] for byte in dict.fromkeys(high))
            expected -= 3 * len(page.case_flip.findall(sample))
            expected -= sum(5 if page.cyrillic[b] else 0 if page.letter[b] else 3 for b in between_latin)
            assert score == expected, (sample[:20], name)


def test_utf8_that_went_through_windows_1251_is_repaired():
    mojibake = "Заявка на кирпич".encode().decode("cp1251")
    assert mojibake.startswith("Р—Р°")
    assert charsets.decode(mojibake.encode(), "utf-8") == "Заявка на кирпич"


def test_a_few_broken_bytes_do_not_turn_utf8_into_another_charset():
    data = ("Длинный текст письма. " * 20).encode() + "Ж".encode()[:1]  # cut inside the last letter
    assert charsets.decode(data, "utf-8").startswith("Длинный текст письма.")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("=?utf-8?B?0JfQsNGP?= =?utf-8?B?0LLQutCw?=", "Заявка"),  # one letter split over two words
        ('"=?utf-8?B?0JjQstCw0L0=?=" <a@b.test>', '"Иван" <a@b.test>'),  # inside quotes
        ("Re:=?utf-8?Q?=D0=A6=D0=B5=D0=BD=D0=B0?=", "Re:Цена"),  # glued to text
        ("=?utf-8?B?0KbQtdC90LA?=", "Цена"),  # no padding
        ("=?UTF-8*ru?Q?=D0=A6=D0=B5=D0=BD=D0=B0?=", "Цена"),  # RFC 2231 language tag
        ("=?utf-8?B?###?=", "=?utf-8?B?###?="),  # undecodable: kept as written
        ("Hello,\r\n world", "Hello, world"),
        ("Nul\x00 and\x07 bell", "Nul and bell"),
    ],
)
def test_header_values_are_decoded_leniently(header, expected):
    assert charsets.decode_header(header) == expected


def test_raw_8bit_header_bytes_are_read_in_their_real_charset():
    raw = "Заказ кирпича".encode("koi8_r").decode("ascii", "surrogateescape")  # as the email package keeps them
    assert charsets.decode_header(raw) == "Заказ кирпича"


@pytest.mark.parametrize("limit", [1, 5, 7, 10, 999])
def test_a_long_utf8_body_cut_before_decoding_keeps_whole_characters(limit):
    text = "Жёлтый кирпич, ёмкость 🧱 " * 5000
    raw = b"From: a@client.test\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + text.encode()
    assert parsing.parse(raw, limit).text == text[:limit]


# --- Attachments from a BODYSTRUCTURE (letters over the size limit) -------------


def test_a_bodystructure_lists_attachments_as_the_parser_would():
    # As imapclient parses Dovecot's answer: a forwarded archive (a multipart
    # with an attachment disposition), an 8-bit koi8-r name, inline text.
    zipped = (b"application", b"zip", None, None, None, b"base64", 1370, None, None, None, None)
    structure = (
        [
            (b"text", b"plain", (b"charset", b"utf-8"), None, None, b"8bit", 40, 2, None, None, None, None),
            ([zipped], b"mixed", (b"boundary", b"z"), (b"attachment", (b"filename", b"archive.zip")), None, None),
            (
                b"text",
                b"csv",
                (b"name", "Прайс.csv".encode("koi8_r")),
                None,
                None,
                b"quoted-printable",
                300,
                10,
                None,
                None,
                None,
                None,
            ),
        ],
        b"mixed",
        (b"boundary", b"b"),
        None,
        None,
        None,
    )
    assert bodystructure.attachments(structure) == [
        {"name": "archive.zip", "type": "multipart/mixed", "size": 1002},
        {"name": "Прайс.csv", "type": "text/csv", "size": 300},
    ]


@pytest.mark.parametrize("structure", [(), (None,), ([],), ([(b"text",)], b"mixed"), "nonsense", 42])
def test_a_bodystructure_that_cannot_be_read_lists_what_it_can_and_never_raises(structure):
    assert isinstance(bodystructure.attachments(structure), list)


def test_an_attachment_named_in_raw_8bit_koi8r_keeps_its_name():
    raw = (
        b'From: a@client.test\r\nContent-Type: multipart/mixed; boundary="b"\r\n\r\n'
        b"--b\r\nContent-Type: text/plain\r\n\r\nSee the price list.\r\n"
        b'--b\r\nContent-Type: text/csv; name="' + "Прайс.csv".encode("koi8_r") + b'"\r\n\r\na,b\r\n--b--\r\n'
    )
    assert parsing.parse(raw, 100).attachments == [{"name": "Прайс.csv", "type": "text/csv", "size": 3}]
