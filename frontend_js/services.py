"""The served snippet: the readable source with the site's settings rendered in."""

import json
from functools import lru_cache
from pathlib import Path

from django.conf import settings

from substitution.services import blocks_for_site
from tracker.models import Site

SOURCE = Path(__file__).with_name("snippet.js")
PLACEHOLDER = "/*CONFIG*/ {}"


@lru_cache(maxsize=1)
def _source() -> str:
    text = SOURCE.read_text()
    assert PLACEHOLDER in text, "snippet.js lost its CONFIG placeholder"
    return text


def site_config(site: Site, collect_url: str) -> dict:
    return {
        "site": site.site_key,
        "collect": collect_url,
        "blocks": [
            {"id": block.pk, "kind": block.kind, "sel": block.selector, "email": site.original_email}
            for block in blocks_for_site(site)
        ],
        "consent": True,
        "hb": settings.HEARTBEAT_SECONDS,
    }


def render_snippet(site: Site, collect_url: str) -> str:
    config = json.dumps(site_config(site, collect_url), separators=(",", ":"))
    # Keep the JSON inert if the script is ever inlined into HTML.
    config = config.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return _source().replace(PLACEHOLDER, config, 1)
