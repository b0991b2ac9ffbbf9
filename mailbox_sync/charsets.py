"""Text from bytes whose charset is missing or wrong: the everyday state of
Russian mail (windows-1251 declared as koi8-r, koi8-r with no charset at all,
raw 8-bit headers, UTF-8 read as windows-1251 and sent on).

Valid UTF-8 is taken as it is. Otherwise every plausible 8-bit Cyrillic
decoding (and the declared charset) is scored by how much it looks like
Russian text, and the best one wins: wrong decodings of Cyrillic bytes turn
common letters into rare ones, lower case into upper case, and letters into
box-drawing signs, which the score punishes.
"""

import base64
import binascii
import codecs
import functools
import math
import re

# Russian letter frequencies, per cent (ё is usually written as е).
_RU_FREQUENCY = {
    "о": 10.97, "е": 8.45, "а": 8.01, "и": 7.35, "н": 6.70, "т": 6.26, "с": 5.47, "р": 4.73,
    "в": 4.54, "л": 4.40, "к": 3.49, "м": 3.21, "д": 2.98, "п": 2.81, "у": 2.62, "я": 2.01,
    "ы": 1.90, "ь": 1.74, "г": 1.70, "з": 1.65, "б": 1.59, "ч": 1.44, "й": 1.21, "х": 0.97,
    "ж": 0.94, "ш": 0.73, "ю": 0.64, "ц": 0.48, "щ": 0.36, "э": 0.32, "ф": 0.26, "ъ": 0.04,
    "ё": 0.8, "і": 0.5, "ї": 0.2, "є": 0.2, "ґ": 0.05,
}  # fmt: skip
_LETTER_WEIGHT = {letter: math.log(share / (100 / 33)) for letter, share in _RU_FREQUENCY.items()}
# Punctuation that Russian text really uses from the 8-bit code pages.
_COMMON_SIGNS = set("«»—–…№“”„’‘•\u00a0")
_CYRILLIC_8BIT = ("cp1251", "koi8-r", "koi8-u", "iso8859-5", "cp866")
_UTF8 = "utf-8"
# Labels that mailers put on text of another charset all the time.
_OFTEN_WRONG = {
    _UTF8, "ascii", "cp1251", "koi8-r", "koi8-u", "iso8859-5", "cp866", "mac-cyrillic",
    "latin-1", "iso8859-1", "iso8859-15", "cp1252", "iso8859-2", "cp1250", "mac-roman",
}  # fmt: skip
_NON_ASCII_RE = re.compile(rb"[\x80-\xff]")
_ASCII = bytes(range(0x80))
# Each byte as its class: "a" a Latin letter, "h" a high byte, " " the rest.
_LATIN_OR_HIGH = bytes(
    ord("a") if chr(byte).isascii() and chr(byte).isalpha() else ord("h") if byte >= 0x80 else ord(" ")
    for byte in range(256)
)
# A high byte between Latin letters: "f\xfcr" is Latin-1 "für", never Russian.
_LATIN_NEIGHBOUR_RE = re.compile(rb"(?<=[A-Za-z])[\x80-\xff](?=[A-Za-z])")
# Windows-1251 mojibake of UTF-8 Cyrillic: "Р—Р°СЏРІРєР°" for "Заявка".
_MOJIBAKE_RE = re.compile(r"[РС][\u0400-\u045f\u2018-\u203a\u00a0-\u00bf]")

_ALIASES = {
    "win-1251": "cp1251",
    "windows1251": "cp1251",
    "cp-1251": "cp1251",
    "x-cp1251": "cp1251",
    "win1251": "cp1251",
    "koi8r": "koi8_r",
    "koi8": "koi8_r",
    "x-koi8-r": "koi8_r",
    "unicode-1-1-utf-8": _UTF8,
    "utf8": _UTF8,
    "x-unknown": "",
    "unknown-8bit": "",
    "x-user-defined": "",
    "default": "",
}


@functools.lru_cache(maxsize=512)
def codec_name(charset: str | None) -> str:
    """Python's codec name for a declared charset, or "" when it names none.
    Cached: codecs.lookup is slow for names it must search for, and a letter
    asks a few times."""
    if not charset:
        return ""
    charset = charset.strip().strip("\"'").lower()
    charset = _ALIASES.get(charset, charset)
    if not charset:
        return ""
    try:
        return codecs.lookup(charset).name
    except LookupError:
        return ""


class _Page:
    """What each high byte (0x80-0xFF) means in one 8-bit code page, for
    scoring: a weight; whether it is a Cyrillic letter or a letter at all;
    and a pattern for an upper-case Cyrillic letter right after a
    lower-case one ("зАЯВКА"), the mark of a wrong page."""

    def __init__(self, codec: str):
        chars = [bytes([byte]).decode(codec, "replace") for byte in range(256)]
        self.weight = [_char_weight(char) for char in chars]
        self.cyrillic = [_is_cyrillic(char) and char.isalpha() for char in chars]
        self.letter = [char.isalpha() for char in chars]
        lower = bytes(b for b in range(0x80, 0x100) if chars[b].isalpha() and chars[b].islower())
        upper = bytes(b for b in range(0x80, 0x100) if self.cyrillic[b] and chars[b] != chars[b].lower())
        self.case_flip = (
            re.compile(b"(?<=[" + re.escape(lower) + b"])[" + re.escape(upper) + b"]") if lower and upper else None
        )
        # The same count without a regex: each byte turned into its class
        # ("l" lower, "u" upper, " " other), an upper after a lower is one
        # "lu" (two never overlap). Half the parsing time of an 8-bit letter
        # went into the regex, once per code page.
        self.case_classes = None
        if self.case_flip is not None and not set(lower) & set(upper):
            classes = bytearray(b" " * 256)
            for byte in lower:
                classes[byte] = ord("l")
            for byte in upper:
                classes[byte] = ord("u")
            self.case_classes = bytes(classes)

    def case_flips(self, sample: bytes) -> int:
        """Upper-case Cyrillic letters right after a lower-case letter."""
        if self.case_classes is not None:
            return sample.translate(self.case_classes).count(b"lu")
        return len(self.case_flip.findall(sample)) if self.case_flip is not None else 0


def _is_cyrillic(char: str) -> bool:
    return "\u0400" <= char <= "\u04ff"


def _char_weight(char: str) -> float:
    if char < "\x80":
        return 0.0
    weight = _LETTER_WEIGHT.get(char.lower())
    if weight is not None:
        return weight
    if char in _COMMON_SIGNS:
        return 0.0
    if "\u00c0" <= char <= "\u00ff" and char.isalpha():
        return -1.0  # Latin accented letter: real in French, rare here
    if char == "\ufffd" or "\u0080" <= char <= "\u009f" or "\u2500" <= char <= "\u25ff":
        return -5.0  # replacement sign, C1 control, box drawing
    return -2.0


_PAGES: dict[str, _Page] = {}


def _page(codec: str) -> _Page:
    if codec not in _PAGES:
        _PAGES[codec] = _Page(codec)
    return _PAGES[codec]


def page_scores(sample: bytes, codecs_: list[str]) -> dict[str, float]:
    """How much `sample`, read in each 8-bit code page, looks like Russian
    (or like plain text in its own language). Bytes are counted once, at C
    speed: letter frequencies, upper case inside a lower-case word, and
    Cyrillic letters or signs glued between Latin ones ("Grьяe", "f№r")."""
    # The high bytes in the order they first appear (as Counter would list
    # them, so that the sums add up in the same order), each counted by C
    # code: Counter itself took two thirds of the scoring.
    high = sample.translate(None, _ASCII)
    counts = [(byte, high.count(byte)) for byte in sorted(set(high), key=high.index)]
    between_latin = []
    if b"aha" in sample.translate(_LATIN_OR_HIGH):  # rare: the regex only then
        between_latin = [match[0] for match in _LATIN_NEIGHBOUR_RE.findall(sample)]
    scores = {}
    for codec in codecs_:
        page = _page(codec)
        score = sum(n * page.weight[byte] for byte, n in counts)
        if page.case_flip is not None:
            score -= 3 * page.case_flips(sample)
        for byte in between_latin:
            score -= 5 if page.cyrillic[byte] else 0 if page.letter[byte] else 3
        scores[codec] = score
    return scores


def russian_score(text: str) -> float:
    """The same judgement for text already decoded (used rarely: to check a
    mojibake repair)."""
    return page_scores(text.encode("cp1251", "replace"), ["cp1251"])["cp1251"]


def decode(data: bytes, declared: str | None = None) -> str:
    """Text from bytes: the declared charset when it is right, else the
    decoding that reads best. Never raises."""
    if not data:
        return ""
    codec = codec_name(declared)
    if codec and codec not in _OFTEN_WRONG:
        try:  # e.g. iso-2022-jp, big5: nobody declares these by mistake
            return data.decode(codec)
        except UnicodeDecodeError:
            pass
    if data.isascii():
        return data.decode("ascii")
    try:
        # Valid UTF-8 with non-ASCII in it is UTF-8 whatever the label says:
        # 8-bit Cyrillic text is almost never valid UTF-8 by chance.
        return repair_mojibake(data.decode(_UTF8))
    except UnicodeDecodeError:
        pass
    if codec == _UTF8:
        # A few bad bytes in real UTF-8 (a letter cut in the middle of a
        # character) are not a reason to read it as an 8-bit page.
        text = data.decode(_UTF8, "replace")
        if text.count("\ufffd") * 100 <= len(text):
            return text
    candidates = [codec] if codec in _OFTEN_WRONG and codec not in (_UTF8, "ascii") else []
    candidates += [name for name in _CYRILLIC_8BIT if name not in candidates]
    # All candidates are one byte per character, so a sample decides as well
    # as the whole text would, at a fraction of the cost on long bodies.
    start = _NON_ASCII_RE.search(data).start()
    sample = data[max(0, start - 64) : start + 2048]
    scores = page_scores(sample, candidates)
    if codec in scores:
        scores[codec] += 1  # the label is right more often than not
    # max() keeps the first of equal scores: the declared charset.
    return data.decode(max(candidates, key=scores.__getitem__), "replace")


def repair_mojibake(text: str) -> str:
    """UTF-8 Cyrillic that went through windows-1251 once on its way."""
    if len(_MOJIBAKE_RE.findall(text)) < 3:
        return text
    try:
        repaired = text.encode("cp1251").decode(_UTF8)
    except UnicodeError:
        return text
    return repaired if russian_score(repaired[:4000]) > russian_score(text[:4000]) else text


# --- Headers ------------------------------------------------------------------

_CONTROL_RE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_ENCODED_WORD_RE = re.compile(r"=\?([^?\s]+)\?([bBqQ])\?([^?]*)\?=")


def header_bytes(value) -> bytes:
    """The header's original octets: the email package keeps 8-bit header
    bytes as surrogate escapes."""
    if isinstance(value, bytes):
        return value
    return str(value).encode("utf-8", "surrogateescape")


def decode_header(value) -> str:
    """A header value as text: RFC 2047 encoded words (also inside quotes and
    split mid-character, as real mailers write them) and raw 8-bit text in
    whatever charset it really is."""
    if value is None:
        return ""
    text = header_bytes(value).decode("latin-1")  # one char per octet, reversible
    text = re.sub(r"\r?\n(?=[ \t])", "", text)
    pieces: list[str] = []
    pending_charset, pending = None, b""
    position = 0
    for match in _ENCODED_WORD_RE.finditer(text):
        between = text[position : match.start()]
        # Whitespace between two encoded words is not part of the text.
        if between and not (between.isspace() and pending_charset is not None):
            if pending_charset is not None:
                pieces.append(decode(pending, pending_charset))
                pending_charset, pending = None, b""
            pieces.append(decode(between.encode("latin-1")))
        charset = match.group(1).split("*")[0]
        data = _decode_word(match.group(2), match.group(3))
        if data is None:  # undecodable: keep the word as it was written
            if pending_charset is not None:
                pieces.append(decode(pending, pending_charset))
                pending_charset, pending = None, b""
            pieces.append(match.group(0))
        elif pending_charset is not None and codec_name(charset) == codec_name(pending_charset):
            pending += data  # a character may be split across two words
        else:
            if pending_charset is not None:
                pieces.append(decode(pending, pending_charset))
            pending_charset, pending = charset, data
        position = match.end()
    if pending_charset is not None:
        pieces.append(decode(pending, pending_charset))
    pieces.append(decode(text[position:].encode("latin-1")))
    # Control characters (NUL above all) have no place in a header's text.
    return " ".join(_CONTROL_RE.sub("", "".join(pieces)).split())


def _decode_word(encoding: str, payload: str) -> bytes | None:
    try:
        if encoding in "bB":
            cleaned = re.sub(r"[^A-Za-z0-9+/]", "", payload)
            if not cleaned and payload.strip("="):
                return None
            return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4))
        return binascii.a2b_qp(payload.encode("latin-1"), header=True)
    except (binascii.Error, ValueError):
        return None
