"""Serving the snippet: the build, its size, what a site's settings put into
it, its caching; and the site's admin page."""

import gzip
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.test import Client

from frontend_js import build, services
from frontend_js.models import MissingBlockReport, SnippetSettings
from frontend_js.services import css_ident
from projects.models import Membership
from substitution.models import Block
from tests.factories import make_setup
from tests.test_snippet_support import snippet_options, use_blocks
from tracker.models import SiteDomain

ROOT = Path(__file__).resolve().parent.parent
BUDGET_GZIP = 1500
HOST = "emailtrack.example-agency.com"


def served(site, client=None, **headers):
    return (client or Client()).get(f"/s/{site.site_key}.js", **headers)


# A JSON string, or an unquoted key (services.js_value leaves identifier keys bare).
JS_TOKEN = re.compile(r'"(?:\\.|[^"\\])*"|(?<=[{,])([A-Za-z_$][\w$]*)(?=:)')


def from_js(value: str):
    """A rendered setting read back: JSON once its bare keys are quoted."""
    return json.loads(JS_TOKEN.sub(lambda m: f'"{m.group(1)}"' if m.group(1) else m.group(0), value))


def config_of(response) -> dict:
    """The settings rendered into a served script, read back through the
    placeholders of the built variant it was made from."""
    text = response.content.decode()
    for built in build.build().values():
        pattern = re.escape(built)
        for name in build.placeholders(built):
            pattern = pattern.replace(re.escape(f"__{name}__"), f"(?P<{name}>.+?)", 1)
        if match := re.fullmatch(pattern, text, re.S):
            return {name: from_js(value) for name, value in match.groupdict().items()}
    raise AssertionError("not a built variant")


# The build


def test_the_committed_built_files_are_what_the_source_builds_to():
    built = build.build()
    assert len(built) == 16 and {"snippet.min.js", "snippet.consent.hide.report.shadow.min.js"} <= set(built)
    for name, text in built.items():
        assert (build.DIST / name).read_text() == text, f"run python -m frontend_js.build ({name} is stale)"
    assert build.main(["--check"]) == 0


def test_feature_regions_go_only_into_their_variants():
    source = "a();\n// @if consent\nb();\n  // @if hide\n  c();\n  // @else\n  e();\n  // @endif\n// @endif\nd();\n"
    assert build.preprocess(source, set()) == "a();\nd();\n"
    assert build.preprocess(source, {"hide"}) == "a();\nd();\n"
    assert build.preprocess(source, {"consent"}) == "a();\nb();\n  e();\nd();\n"
    assert build.preprocess(source, {"consent", "hide"}) == "a();\nb();\n  c();\nd();\n"
    twice_else = "// @if hide\n// @else\n// @else\n// @endif\n"
    for broken in ("// @if nosuch\n// @endif\n", "// @if hide\n", "// @endif\n", "// @else\n", twice_else):
        with pytest.raises(build.BuildError):
            build.preprocess(broken, set())


def test_the_minifier_keeps_meaning_and_the_placeholders():
    code = build.minify(
        "((w) => { var x = __site__, local = 1; if (a in b) { y = x + +z; w.v = /a/g instanceof RegExp; }"
        " try { f(local); } catch (e) {} })(window);"
    )
    assert "__site__" in code and "local" not in code  # a local renamed, the placeholder kept
    assert "x+ +z" not in code and "+ +z" in code and "a in b" in code and "/a/g instanceof RegExp" in code
    assert not code.endswith("\n")
    with pytest.raises(build.BuildError):
        build.minify("var x = __site__; var = ;")  # not JavaScript
    with pytest.raises(build.BuildError):
        build.minify("var x = 1;")  # no placeholder
    with pytest.raises(build.BuildError):
        build.minify("var x = __site__, y = __site__;")  # one twice
    assert build.render("f(__site__,__hb__)", {"site": '"__hb__"', "hb": "60"}) == 'f("__hb__",60)'


def test_only_the_variants_of_a_feature_carry_its_code():
    marks = {
        "consent": "globalPrivacyControl",
        "hide": "style.visibility",
        "report": "sendBeacon",
        "shadow": "attachShadow",
    }
    built = build.build()
    for features in build.variants():
        text = built[build.variant_name(features)]
        for feature, mark in marks.items():
            assert (mark in text) == (feature in features), (features, mark)
    for text in built.values():
        assert "eval(" not in text and "Function(" not in text and "innerHTML" not in text


# Size


# The switches that change the script's code, alone or together (as
# bench/snippet_size.py prints them): six base settings, each also with the
# install check, shadow DOM, or both.
BASE_OPTIONS = [
    {},
    {"consent_mode": True},
    {"honour_gpc": True},
    {"anti_flicker": True},
    {"consent_mode": True, "anti_flicker": True},
    {"consent_mode": True, "honour_gpc": True, "anti_flicker": True},
]
EXTRA_OPTIONS = [{}, {"install_check": True}, {"shadow_dom": True}, {"install_check": True, "shadow_dom": True}]
ALL_OPTIONS = [{**base, **extra} for base in BASE_OPTIONS for extra in EXTRA_OPTIONS]


@pytest.mark.django_db
def test_the_served_script_for_a_site_with_three_blocks_is_within_the_size_budget_in_every_variant(settings):
    settings.ALLOWED_HOSTS = [HOST]
    setup = make_setup()
    setup.rule.blocks.add(
        Block.objects.create(project=setup.project, name="Footer", kind="id", selector="footer-email"),
        Block.objects.create(project=setup.project, name="Support", original_email="support@shop.test"),
    )
    switches = ("consent_mode", "honour_gpc", "anti_flicker", "install_check", "shadow_dom")
    sizes, names = {}, set()
    assert len(ALL_OPTIONS) == 24
    for options in ALL_OPTIONS:
        snippet_options(setup.site, **{name: options.get(name, False) for name in switches})
        response = served(setup.site, Client(HTTP_HOST=HOST), secure=True)
        config = config_of(response)
        assert len(config["blocks"]) == 3
        assert config["collect"] == f"https://{HOST}/api/v1/collect"
        sizes[tuple(sorted(options))] = len(gzip.compress(response.content, 9))
        names.add(build.variant_name(services.features(SnippetSettings.objects.get(site=setup.site))))
    assert len(names) == 16  # every built variant was served
    assert max(sizes.values()) <= BUDGET_GZIP, {k: v for k, v in sizes.items() if v > BUDGET_GZIP}


def test_the_size_script_prints_raw_gzip_and_brotli_sizes_within_budget():
    result = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "snippet_size.py")], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    rows = [row.split() for row in lines[2:-1]]
    assert len(rows) == 24  # six variants, each also with the opt-in parts
    assert lines[-1].endswith("over budget: 0 of 24")
    for row in rows:
        raw, gz, br = (int(n) for n in row[-3:])
        assert br < gz <= BUDGET_GZIP < raw, row


# What the site's settings put into the script


@pytest.mark.django_db
def test_each_block_kind_becomes_a_css_scope_and_scoped_blocks_come_first():
    setup = make_setup()
    blocks = use_blocks(
        setup,
        (Block.Kind.ID, "contact.main"),
        (Block.Kind.CLASS, "email"),
        (Block.Kind.SELECTOR, "footer .mail"),
        (Block.Kind.ATTRIBUTE, "data-Contact"),
    )
    setup.rule.blocks.add(setup.block)  # "find in the page"
    unusable = Block.objects.create(project=setup.project, name="No selector", kind=Block.Kind.CLASS, selector=" ")
    setup.rule.blocks.add(unusable)
    own = Block.objects.create(project=setup.project, name="Support", original_email="Support@Shop.test")
    setup.rule.blocks.add(own)
    setup.site.original_email = "Info@shop.test"  # shown back as the site writes it
    setup.site.save()

    config = config_of(served(setup.site))
    assert "email" not in config  # each block carries its original address
    site_email = "Info@shop.test"
    assert config["blocks"] == [
        {"id": blocks[0].pk, "sel": "#contact\\.main", "e": site_email},
        {"id": blocks[1].pk, "sel": ".email", "e": site_email},
        {"id": blocks[2].pk, "sel": "footer .mail", "e": site_email},
        {"id": blocks[3].pk, "sel": "[data-Contact]", "e": site_email},
        {"id": setup.block.pk, "e": site_email},
        {"id": own.pk, "e": "support@shop.test"},
    ]
    assert from_js('[{id:1,sel:"a[b=\\"x,y:z\\"]","e":"q"}]') == [{"id": 1, "sel": 'a[b="x,y:z"]', "e": "q"}]


@pytest.mark.parametrize(
    "name, escaped",
    [
        ("contact", "contact"),
        ("a.b:c", "a\\.b\\:c"),
        ("1st", "\\31 st"),
        ("-2x", "-\\32 x"),
        ("-", "\\-"),
        ("é_x-1", "é_x-1"),
        ("a b", "a\\ b"),
    ],
)
def test_names_are_escaped_for_css_as_css_escape_does(name, escaped):
    assert css_ident(name) == escaped


@pytest.mark.django_db
def test_the_sites_settings_choose_the_scripts_variant_and_what_it_is_told():
    setup = make_setup()
    default = served(setup.site)
    config = config_of(default)
    assert config["hb"] == 60
    assert not {"consent", "gpc", "hide", "report"} & set(config)
    assert b"globalPrivacyControl" not in default.content and b"style.visibility" not in default.content

    options = {"consent_mode": True, "anti_flicker": True, "anti_flicker_timeout_ms": 800}
    snippet_options(setup.site, **options, install_check=True, shadow_dom=True)
    all_on = served(setup.site)
    config = config_of(all_on)
    assert (config["consent"], config["gpc"], config["hide"]) == (0, 0, 800)
    assert config["report"] == "http://testserver/api/v1/report"
    for mark in (b"globalPrivacyControl", b"style.visibility", b"sendBeacon", b"attachShadow"):
        assert mark in all_on.content

    snippet_options(setup.site, consent_mode=False, honour_gpc=True, anti_flicker=False, install_check=False)
    config = config_of(served(setup.site))
    assert (config["consent"], config["gpc"]) == (1, 1)
    assert "hide" not in config and "report" not in config


@pytest.mark.django_db
def test_the_config_stays_inert_if_the_script_is_inlined_into_html():
    setup = make_setup()
    use_blocks(setup, (Block.Kind.SELECTOR, "a[title='</script><b>&']"))
    body = served(setup.site).content.decode()
    assert "</script>" not in body and "<b>" not in body
    assert config_of(served(setup.site))["blocks"][0]["sel"] == "a[title='</script><b>&']"


# Caching


@pytest.mark.django_db
def test_the_script_is_cached_briefly_with_an_etag_and_a_changed_setting_changes_it():
    setup = make_setup()
    first = served(setup.site)
    assert first.status_code == 200
    assert first["Content-Type"] == "application/javascript; charset=utf-8"
    assert first["Cache-Control"] == "public, max-age=300, stale-while-revalidate=86400"
    etag = first["ETag"]
    assert etag.startswith('"') and etag.endswith('"')

    again = served(setup.site, HTTP_IF_NONE_MATCH=etag)
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == etag and again["Cache-Control"] == first["Cache-Control"]
    assert Client().head(f"/s/{setup.site.site_key}.js", HTTP_IF_NONE_MATCH=etag).status_code == 304

    snippet_options(setup.site, anti_flicker=True)
    changed = served(setup.site, HTTP_IF_NONE_MATCH=etag)
    assert changed.status_code == 200
    assert changed["ETag"] != etag
    assert config_of(changed)["hide"] == 500


@pytest.mark.django_db
def test_an_unknown_or_inactive_site_gets_a_short_lived_404_script():
    setup = make_setup()
    setup.site.active = False
    setup.site.save()
    for key in (setup.site.site_key, "nosuchkey"):
        response = Client().get(f"/s/{key}.js")
        assert response.status_code == 404
        assert response["Content-Type"].startswith("application/javascript")
        assert response["Cache-Control"] == "public, max-age=60"


# The site's admin page


@pytest.mark.django_db
def test_the_sites_admin_page_shows_its_install_check_and_snippet_settings(client):
    setup = make_setup()
    other = make_setup(name="Other")
    SiteDomain.objects.filter(site=setup.site, domain="shop.test").update(last_seen_at="2026-01-02T03:04:05Z")
    for site, block, url in (
        (setup.site, setup.block, "https://shop.test/delivery"),
        (other.site, other.block, "https://shop.test/secret-page-of-another-project"),
    ):
        MissingBlockReport.objects.create(
            site=site, block=block, page_url=url, first_seen_at="2026-01-01T00:00Z", last_seen_at="2026-01-02T00:00Z"
        )
    user = get_user_model().objects.create_user("anna", password="pw", is_staff=True)
    Membership.objects.create(project=setup.project, user=user, role=Membership.Role.MANAGER)
    client.force_login(user)

    page = client.get(f"/admin/tracker/site/{setup.site.pk}/change/").content.decode()
    assert "https://shop.test/delivery" in page
    assert "Jan. 2, 2026, 3:04 a.m." in page  # when the snippet last reported from shop.test
    assert "Consent mode" in page and "Anti-flicker timeout, ms" in page
    listing = client.get("/admin/frontend_js/missingblockreport/").content.decode()
    assert "https://shop.test/delivery" in listing
    assert "secret-page-of-another-project" not in listing
