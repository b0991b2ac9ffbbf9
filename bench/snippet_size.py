"""Size of the served snippet: raw, gzip -9 and brotli, for each variant.

    .venv/bin/python bench/snippet_size.py

Renders exactly what GET /s/<site_key>.js serves for a site with two blocks
("find in the page" and an id block) on a realistic host, without a database:
the budget from issue 4 is 1,500 bytes gzip -9 (tests/test_snippet_serving.py
fails above it). Exits 1 when a variant with default settings is over budget.
"""

import gzip
import os
import sys
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
os.environ.setdefault("SECRET_KEY", "bench-secret-key-bench-secret-key-bench-secret-key")
os.environ.setdefault("ENCRYPTION_KEY", "Zk1pQmV2b3l3b2x2T1N0b0lQeGJYc3N2c2h6d0F0d0k=")

BUDGET_GZIP = 1500
HOST = "https://emailtrack.example-agency.com"


def sizes(body: str) -> tuple[int, int, int]:
    import brotli

    raw = body.encode()
    return len(raw), len(gzip.compress(raw, 9)), len(brotli.compress(raw, quality=11))


def sample_site(**settings):
    """Unsaved rows shaped like a real site with two blocks."""
    from frontend_js.models import SnippetSettings
    from substitution.models import Block
    from tracker.models import Site

    site = Site(pk=1, name="Shop", original_email="info@shop-example.com", site_key="k7m2n8p3q4r5s6t9")
    blocks = [
        Block(pk=101, name="Email in page", kind=Block.Kind.FIND),
        Block(pk=102, name="Footer email", kind=Block.Kind.ID, selector="footer-email"),
    ]
    site.snippet_settings = SnippetSettings(site=site, **settings)
    return site, blocks


VARIANTS = {
    "default settings": {},
    "consent mode": {"consent_mode": True, "honour_gpc": True},
    "anti-flicker": {"anti_flicker": True},
    "consent mode + anti-flicker": {"consent_mode": True, "honour_gpc": True, "anti_flicker": True},
}


def measure() -> dict[str, tuple[int, int, int]]:
    import django

    django.setup()
    from frontend_js import services

    out = {}
    for label, options in VARIANTS.items():
        site, blocks = sample_site(**options)
        with mock.patch.object(services, "blocks_for_site", return_value=blocks):
            snippet = services.render_snippet(site, f"{HOST}/api/v1/collect", f"{HOST}/api/v1/report")
        out[label] = sizes(snippet.body)
    return out


def main() -> int:
    results = measure()
    print(f"snippet for a site with two blocks (budget {BUDGET_GZIP} bytes gzip -9):")
    print(f"  {'variant':<30} {'raw':>6} {'gzip -9':>8} {'brotli':>7}")
    for label, (raw, gz, br) in results.items():
        print(f"  {label:<30} {raw:>6} {gz:>8} {br:>7}")
    return 0 if results["default settings"][1] <= BUDGET_GZIP else 1


if __name__ == "__main__":
    sys.exit(main())
