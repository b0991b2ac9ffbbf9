"""Rewriting a letter for its recipients: a 200 KB HTML letter with 100 links,
for 1, 10 and 100 recipients, measured in one run.

    .venv/bin/python bench/rewrite.py [--repeat 5]

Two measures for each count of recipients (best of --repeat runs):
  - copies: the letter parsed once, then each recipient's copy (their pixel,
    100 signed links and the hidden link) rendered: what the API and the
    relay do, without the database;
  - relay: the same letter as a quoted-printable MIME part, each recipient's
    whole letter (decode, render, re-encode, join), without the database.
The time per recipient should stay flat as recipients grow (not quadratic);
the parse is paid once.
"""

import argparse
import os
import sys
import time
from email import policy
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-bench-secret-key-bench-secret-key")
os.environ.setdefault("ENCRYPTION_KEY", "Zk1pQmV2b3l3b2x2T1N0b0lQeGJYc3N2c2h6d0F0d0k=")
os.environ.setdefault("VAR_DIR", "/tmp/emailtrack-bench-rewrite")

import django  # noqa: E402

django.setup()

from engagement import relaying, rewriting, tokens  # noqa: E402

SIZE = 200 * 1024
LINKS = 100


def letter() -> str:
    rows = []
    for i in range(LINKS):
        rows.append(
            f'<tr><td style="padding:8px;font-family:Arial"><a href="https://shop.test/item/{i}?utm_source=mail'
            f'&amp;utm_campaign=autumn" style="color:#0645ad">Товар номер {i}</a> — описание товара и цена.</td></tr>'
        )
    body = "".join(rows)
    filler = '<p style="margin:0;color:#333">Lorem ipsum dolor sit amet, текст письма для объёма. </p>'
    html = f"<!doctype html><html><head><style>a{{color:#06c}}</style></head><body><table>{body}</table>"
    while len(html.encode()) < SIZE - 100:
        html += filler
    return html + "</body></html>"


def copies(html: str, recipients: int) -> float:
    started = time.perf_counter()
    template = rewriting.prepare(html)
    for recipient_id in range(1, recipients + 1):
        template.render(
            link_urls=[tokens.click_url(recipient_id, link_id) for link_id in range(1, len(template.links) + 1)],
            pixel_url=tokens.pixel_url(recipient_id),
            honeypot_url=tokens.honeypot_url(recipient_id),
        )
    return time.perf_counter() - started


def relay_copies(raw: bytes, recipients: int) -> float:
    started = time.perf_counter()
    parts = relaying.find_html_parts(raw)
    for part in parts:
        part.template = rewriting.prepare(relaying.decode_body(raw, part))
    for recipient_id in range(1, recipients + 1):
        pieces, position = [], 0
        for part in parts:
            body = part.template.render(
                link_urls=[tokens.click_url(recipient_id, i) for i in range(1, len(part.template.links) + 1)],
                pixel_url=tokens.pixel_url(recipient_id),
                honeypot_url=tokens.honeypot_url(recipient_id),
            )
            pieces += [raw[position : part.start], relaying.encode_body(body, raw[part.start : part.end], part)]
            position = part.end
        pieces.append(raw[position:])
        b"".join(pieces)
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    html = letter()
    assert len(rewriting.prepare(html).links) == LINKS
    message = EmailMessage()
    message["Subject"] = "Autumn offer"
    message.set_content("Plain text part")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    raw = message.as_bytes(policy=policy.SMTP)
    started = time.perf_counter()
    rewriting.prepare(html)
    parse = time.perf_counter() - started
    print(f"letter: {len(html.encode()) / 1024:.0f} KB HTML, {LINKS} links; one parse {parse * 1000:.1f} ms")
    print(f"{'recipients':>10}  {'copies':>10}  {'per recipient':>13}  {'relay (MIME)':>12}  {'per recipient':>13}")
    for count in (1, 10, 100):
        html_time = min(copies(html, count) for _ in range(args.repeat))
        mime_time = min(relay_copies(raw, count) for _ in range(args.repeat))
        print(
            f"{count:>10}  {html_time * 1000:>8.1f} ms  {html_time / count * 1000:>10.2f} ms"
            f"  {mime_time * 1000:>9.1f} ms  {mime_time / count * 1000:>10.2f} ms"
        )


if __name__ == "__main__":
    main()
