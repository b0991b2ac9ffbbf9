"""The served snippet: the built script of the variant a site's settings need,
with those settings rendered in (so the snippet needs no second request)."""

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings

from substitution.models import Block
from substitution.rules import blocks_for_site
from tracker.models import Site

from .build import DIST, placeholders, render, variant_name
from .models import SnippetSettings


@lru_cache(maxsize=8)
def built_script(name: str) -> str:
    """A file of dist/, read once per process (they change only with a deploy)."""
    text = (DIST / name).read_text()
    if "site" not in placeholders(text):
        raise RuntimeError(f"frontend_js/dist/{name} lost its __site__ placeholder")
    return text


def snippet_settings(site: Site) -> SnippetSettings:
    """The site's settings, or the defaults while none were saved."""
    try:
        return site.snippet_settings
    except SnippetSettings.DoesNotExist:
        return SnippetSettings(site=site)


def features(options: SnippetSettings) -> frozenset:
    """The optional parts of the script these settings need (see build.py)."""
    wanted = set()
    if options.consent_mode or options.honour_gpc:
        wanted.add("consent")
    if options.anti_flicker:
        wanted.add("hide")
    if options.install_check:
        wanted.add("report")
    if options.shadow_dom:
        wanted.add("shadow")
    return frozenset(wanted)


def css_ident(name: str) -> str:
    """CSS.escape() of the CSSOM spec: a name made safe to use in a selector."""
    out = []
    for index, char in enumerate(name):
        code = ord(char)
        if code == 0:
            out.append("\ufffd")
        elif (
            0x01 <= code <= 0x1F
            or code == 0x7F
            or (char.isdigit() and char.isascii() and (index == 0 or (index == 1 and name[0] == "-")))
        ):
            out.append(f"\\{code:x} ")
        elif index == 0 and char == "-" and len(name) == 1:
            out.append("\\-")
        elif code >= 0x80 or char in "-_" or (char.isascii() and char.isalnum()):
            out.append(char)
        else:
            out.append("\\" + char)
    return "".join(out)


def block_selector(block: Block) -> str:
    """The CSS selector of the elements a block works inside; "" for "find in
    the page". An attribute block works inside the elements carrying the
    attribute, so the address in its value is replaced (and in their text)."""
    name = block.selector.strip()
    if block.kind == Block.Kind.FIND or not name:
        return ""
    if block.kind == Block.Kind.ID:
        return "#" + css_ident(name)
    if block.kind == Block.Kind.CLASS:
        return "." + css_ident(name)
    if block.kind == Block.Kind.ATTRIBUTE:
        return f"[{css_ident(name)}]"
    return name


def site_config(site: Site, collect_url: str, report_url: str) -> dict:
    """What the script is told about the site: the values of its variant's
    __name__ placeholders. Keys a variant does not read are left out: every
    byte is downloaded by every page."""
    options = snippet_settings(site)
    blocks = []
    # Blocks with a scope first: they take their elements before a "find in
    # the page" block (which may show another address) sees the same text.
    for block in sorted(blocks_for_site(site), key=lambda b: (b.kind == Block.Kind.FIND, b.pk)):
        if block.kind != Block.Kind.FIND and not block.selector.strip():
            continue  # misconfigured: nothing to select
        entry = {"id": block.pk}
        if selector := block_selector(block):
            entry["sel"] = selector
        # The block's own original address, else the site's (as the site
        # writes it: the page shows it back when a lease ends).
        if block.original_email and block.original_email != site.original_email.lower():
            entry["e"] = block.original_email
        else:
            entry["e"] = site.original_email
        blocks.append(entry)
    config = {
        "site": site.site_key,
        "blocks": blocks,
        "collect": collect_url,
        "hb": settings.HEARTBEAT_SECONDS,
    }
    wanted = features(options)
    if "report" in wanted:
        config["report"] = report_url
    if "consent" in wanted:
        config["consent"] = int(not options.consent_mode)  # tracking allowed before the page says so
        config["gpc"] = int(options.honour_gpc)
    if "hide" in wanted:
        config["hide"] = options.anti_flicker_timeout_ms
    return config


@dataclass
class Snippet:
    body: str
    etag: str


IDENTIFIER = re.compile(r"[A-Za-z_$][\w$]*")


def js_value(value) -> str:
    """A setting as a JavaScript literal: JSON, with the keys that are
    identifiers left unquoted (every byte is downloaded by every page), inert
    if the script is ever inlined into HTML."""
    if isinstance(value, dict):
        return "{" + ",".join(f"{_js_key(key)}:{js_value(item)}" for key, item in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ",".join(js_value(item) for item in value) + "]"
    text = json.dumps(value)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _js_key(key: str) -> str:
    return key if IDENTIFIER.fullmatch(key) else js_value(key)


def render_snippet(site: Site, collect_url: str, report_url: str) -> Snippet:
    config = site_config(site, collect_url, report_url)
    built = built_script(variant_name(features(snippet_settings(site))))
    body = render(built, {name: js_value(value) for name, value in config.items()})
    return Snippet(body=body, etag='"' + hashlib.sha256(body.encode()).hexdigest()[:32] + '"')
