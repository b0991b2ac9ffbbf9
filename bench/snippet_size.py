"""Size of the served snippet: raw, gzip -9 and brotli, for each variant.

    .venv/bin/python bench/snippet_size.py

Renders exactly what GET /s/<site_key>.js serves for a site with three blocks
("find in the page" for the site's address and for its own support@
address, and an id block) on a realistic host, without a database:
the budget (issues 4 and 17) is 1,500 bytes gzip -9 for every one of the 24
variants printed, the six of VARIANTS each also with the opt-in parts of
EXTRAS (install check, shadow DOM); tests/test_snippet_serving.py fails above
it. Exits 1 when one is over budget.
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
    """Unsaved rows shaped like a real site with three blocks."""
    from frontend_js.models import SnippetSettings
    from substitution.models import Block
    from tracker.models import Site

    site = Site(pk=1, name="Shop", original_email="info@shop-example.com", site_key="k7m2n8p3q4r5s6t9")
    blocks = [
        Block(pk=101, name="Email in page", kind=Block.Kind.FIND),
        Block(pk=102, name="Footer email", kind=Block.Kind.ID, selector="footer-email"),
        Block(pk=103, name="Support", kind=Block.Kind.FIND, original_email="support@shop-example.com"),
    ]
    site.snippet_settings = SnippetSettings(site=site, **settings)
    return site, blocks


# The variants the budget holds for: a site's default settings, and each of
# the switches that change the script's code, alone or together.
VARIANTS = {
    "default settings": {},
    "consent mode": {"consent_mode": True},
    "GPC": {"honour_gpc": True},
    "anti-flicker": {"anti_flicker": True},
    "consent mode + anti-flicker": {"consent_mode": True, "anti_flicker": True},
    "consent + GPC + anti-flicker": {"consent_mode": True, "honour_gpc": True, "anti_flicker": True},
}
# Opt-in parts a site turns on when it needs them (install check, shadow DOM),
# on top of each of the variants above: held to the same budget.
EXTRAS = {
    "+ install check": {"install_check": True},
    "+ shadow DOM": {"shadow_dom": True},
    "+ install check + shadow DOM": {"install_check": True, "shadow_dom": True},
}


def measure() -> dict[str, tuple[int, int, int]]:
    import django

    django.setup()
    from frontend_js import services

    rows = [(label, options) for label, options in VARIANTS.items()]
    rows += [
        (f"{label} {extra}", {**options, **more})
        for label, options in VARIANTS.items()
        for extra, more in EXTRAS.items()
    ]
    out = {}
    for label, options in rows:
        site, blocks = sample_site(**options)
        with mock.patch.object(services, "blocks_for_site", return_value=blocks):
            snippet = services.render_snippet(site, f"{HOST}/api/v1/collect", f"{HOST}/api/v1/report")
        out[label] = sizes(snippet.body)
    return out


def main() -> int:
    results = measure()
    print(f"snippet for a site with three blocks (budget {BUDGET_GZIP} bytes gzip -9):")
    print(f"  {'variant':<60} {'raw':>6} {'gzip -9':>8} {'brotli':>7}")
    for label, (raw, gz, br) in results.items():
        mark = "  over budget" if gz > BUDGET_GZIP else ""
        print(f"  {label:<60} {raw:>6} {gz:>8} {br:>7}{mark}")
    worst = max(results, key=lambda label: results[label][1])
    over = sum(gz > BUDGET_GZIP for _, gz, _ in results.values())
    print(f"  worst: {worst} ({results[worst][1]} bytes gzip -9); over budget: {over} of {len(results)}")
    return 1 if over else 0


if __name__ == "__main__":
    sys.exit(main())
