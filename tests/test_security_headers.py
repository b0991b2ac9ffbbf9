"""The pages people read carry a Content-Security-Policy (scripts only from
this server or with the request's nonce, no framing) and a Referrer-Policy,
and Chromium reports no violation of it on any journal or admin page; the
programs' endpoints carry none."""

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import NoReverseMatch, reverse

from demo import services as demo
from tests.factories import make_setup
from tests.test_journal_support import make_lead

# Each page records the violations it sees, for the test to read.
VIOLATIONS_SCRIPT = """
window.__csp = [];
document.addEventListener("securitypolicyviolation", function (event) {
  window.__csp.push(event.violatedDirective + " " + event.blockedURI);
});
"""


def policy(answer) -> dict[str, str]:
    directives = [part.strip().split(None, 1) for part in answer["Content-Security-Policy"].split(";")]
    return {part[0]: part[1] if len(part) > 1 else "" for part in directives if part}


@pytest.mark.django_db
def test_journal_and_admin_pages_carry_the_policy_and_programs_endpoints_none(client, django_user_model):
    client.force_login(django_user_model.objects.create_superuser("boss", password="pw-boss-12345"))
    for url in ("/journal/", "/admin/", "/journal/login/"):
        answer = client.get(url)
        rules = policy(answer)
        assert rules["default-src"] == "'self'"
        assert rules["script-src"] == "'self'", rules  # no inline script on these pages: no nonce either
        assert rules["frame-ancestors"] == "'none'" and rules["object-src"] == "'none'"
        assert answer["Referrer-Policy"] == "same-origin"
        assert answer["X-Frame-Options"] == "DENY"
    setup = make_setup()
    assert "Content-Security-Policy" not in client.get("/api/v1/leads")
    assert "Content-Security-Policy" not in client.get(f"/s/{setup.site.site_key}.js")
    assert "Content-Security-Policy" not in client.get("/t/o/forged.gif")


@pytest.mark.django_db
def test_a_page_with_an_inline_script_runs_it_by_its_own_nonce(client, settings):
    settings.DEBUG = settings.DEMO = True
    demo.demo_setup()
    first, second = client.get("/demo/"), client.get("/demo/")
    nonces = []
    for answer in (first, second):
        script_src = policy(answer)["script-src"]
        assert script_src.startswith("'self' 'nonce-") and "unsafe-inline" not in script_src
        nonce = script_src.split("'nonce-")[1].rstrip("'")
        assert f'<script nonce="{nonce}">' in answer.content.decode()
        nonces.append(nonce)
    assert nonces[0] != nonces[1]


def page_urls() -> list[str]:
    urls = ["/journal/", "/journal/reports/", "/journal/sent/", "/journal/login/", "/admin/"]
    for model in admin.site._registry:
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        try:
            urls.append(reverse("admin:{}_{}_add".format(*info)))
        except NoReverseMatch:
            pass
        obj = model.objects.order_by("pk").first()
        if obj is not None:
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
    return urls


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_chromium_sees_no_policy_violation_on_any_journal_or_admin_page(browser, live_server, django_user_model):
    setup = make_setup()
    lead = make_lead(setup.project, subject="Прайс")
    superuser = django_user_model.objects.create_superuser("boss", password="pw-boss-12345")
    session = Client()
    session.force_login(superuser)
    context = browser.new_context()
    context.add_cookies([{"name": "sessionid", "value": session.cookies["sessionid"].value, "url": live_server.url}])
    context.add_init_script(VIOLATIONS_SCRIPT)
    page = context.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    seen, found = 0, {}
    for url in [*page_urls(), f"/journal/leads/{lead.pk}/"]:
        answer = page.goto(live_server.url + url)
        if answer.status >= 400:
            continue
        seen += 1
        violations = page.evaluate("window.__csp")
        if violations:
            found[url] = violations
    assert seen > 40
    assert found == {}
    assert not [text for text in console if "Content Security Policy" in text]
