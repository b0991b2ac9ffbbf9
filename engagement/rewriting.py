"""A letter's HTML with one recipient's pixel and tracked links.

The HTML is parsed once (`prepare`) into literal stretches and slots: the
value of each trackable link, and the place of the pixel. A recipient's copy
(`Template.render`) only joins the stretches with that recipient's URLs, so
ten recipients cost one parse and ten joins, not ten parses.

Everything that is not a slot is kept byte for byte: the parser only finds
positions, it never re-serialises. What is left alone: links that are not
http(s) once resolved against `<base href>` (mailto:, tel:, anchors, odd
schemes, relative links without a base), links the sender marked with
`data-emailtrack-skip` (unsubscribe links), mailer merge tags, and anything
inside `<style>`, `<script>` or comments (Outlook's conditional comments and
their VML buttons included). HTML the parser cannot follow still goes out:
unchanged, with the pixel at its end.
"""

import html
import logging
from dataclasses import dataclass, field
from html.parser import HTMLParser, attrfind_tolerant, tagfind_tolerant
from urllib.parse import urljoin, urlsplit

log = logging.getLogger(__name__)

LINK_TAGS = {"a", "area"}
SKIP_ATTRIBUTE = "data-emailtrack-skip"
MERGE_TAG_MARKS = ("{{", "}}", "%%", "*|", "|*", "[[", "]]")
MAX_URL_CHARS = 4000
PIXEL = '<img src="{pixel}" width="1" height="1" alt="" style="display:block;width:1px;height:1px;border:0" />'
# A link no person can see or reach: only machines that follow every href hit it.
HONEYPOT = (
    '<a href="{honeypot}" aria-hidden="true" tabindex="-1" '
    'style="display:none!important;mso-hide:all;font-size:0;line-height:0;max-height:0;overflow:hidden"></a>'
)


@dataclass
class Template:
    """A parsed letter: `parts[i]` comes before slot i; `slots` name a link
    (its index in `links`) or None for the pixel's place."""

    parts: list[str]
    slots: list[int | None]
    links: list[str] = field(default_factory=list)

    def render(self, *, link_urls: list[str], pixel_url: str, honeypot_url: str) -> str:
        tail = HONEYPOT.format(honeypot=html.escape(honeypot_url)) + PIXEL.format(pixel=html.escape(pixel_url))
        out = []
        for part, slot in zip(self.parts, self.slots, strict=False):
            out.append(part)
            out.append(tail if slot is None else '"' + html.escape(link_urls[slot]) + '"')
        out.append(self.parts[-1])
        return "".join(out)


def trackable(value: str, base: str) -> str | None:
    """The absolute http(s) URL a link's href stands for, or None to leave it alone."""
    url = html.unescape(value).strip()
    if not url or url.startswith("#") or len(url) > MAX_URL_CHARS:
        return None
    if any(mark in url for mark in MERGE_TAG_MARKS):
        return None
    if base:
        try:
            url = urljoin(base, url)
        except ValueError:
            return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return None
    if any(ord(char) < 0x20 or char in " \x7f" for char in url):
        return None
    return url


class _Finder(HTMLParser):
    """Finds the offsets of trackable hrefs, of <base href> and of </body>."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.text = text
        self.line_starts = [0]
        position = text.find("\n")
        while position != -1:
            self.line_starts.append(position + 1)
            position = text.find("\n", position + 1)
        self.base = ""
        self.hrefs: list[tuple[int, int, str]] = []  # start, end of the quoted value, URL
        self.body_end: int | None = None
        self.html_end: int | None = None

    def _offset(self) -> int:
        line, column = self.getpos()
        return self.line_starts[line - 1] + column

    def handle_starttag(self, tag, attrs):
        if tag == "base" and not self.base:
            href = dict(attrs).get("href") or ""
            if urlsplit(href.strip()).scheme.lower() in ("http", "https"):
                self.base = href.strip()
            return
        if tag not in LINK_TAGS or any(name == SKIP_ATTRIBUTE for name, _v in attrs):
            return
        start = self._offset()
        raw = self.get_starttag_text() or ""
        if self.text[start : start + len(raw)] != raw:
            return  # positions lost: leave this link alone
        match = tagfind_tolerant.match(raw, 1)
        k = match.end() if match else len(raw)
        while k < len(raw):
            found = attrfind_tolerant.match(raw, k)
            if not found:
                break
            name, rest, value = found.group(1, 2, 3)
            if name.lower() == "href" and rest:
                url = trackable(value.strip("'\"") if value[:1] in "'\"" else value, self.base)
                if url is not None:
                    self.hrefs.append((start + found.start(3), start + found.end(3), url))
                break
            k = found.end()

    handle_startendtag = handle_starttag

    def handle_endtag(self, tag):
        if tag == "body":
            self.body_end = self._offset()
        elif tag == "html":
            self.html_end = self._offset()


def prepare(text: str) -> Template:
    """Parse a letter's HTML once; never raises."""
    try:
        finder = _Finder(text)
        finder.feed(text)
        finder.close()
        hrefs, pixel_at = finder.hrefs, finder.body_end
        if pixel_at is None:
            pixel_at = finder.html_end
    except Exception:  # noqa: BLE001 - a letter the parser cannot follow goes out unchanged
        log.warning("HTML not parsed; links left as they are", exc_info=True)
        hrefs, pixel_at = [], None
    if pixel_at is None:
        pixel_at = len(text)
    cuts = sorted([*hrefs, (pixel_at, pixel_at, None)], key=lambda cut: (cut[0], cut[1]))
    parts, slots, links, index_of = [], [], [], {}
    position = 0
    for start, end, url in cuts:
        if start < position:  # overlapping (cannot happen with a sane parser): keep the text
            continue
        parts.append(text[position:start])
        if url is None:
            slots.append(None)
        else:
            if url not in index_of:
                index_of[url] = len(links)
                links.append(url)
            slots.append(index_of[url])
        position = end
    parts.append(text[position:])
    return Template(parts=parts, slots=slots, links=links)
