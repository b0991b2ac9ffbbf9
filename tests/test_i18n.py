"""The interface in Russian and English: the catalogue is complete and
current, the language is chosen as promised (a person's saved choice, then
Accept-Language, then LANGUAGE_CODE; English for the API), plurals are
Russian plurals, and no page a person reads in Russian keeps an English word
of the product's own."""

import csv
import io
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.pofile import read_po
from django.contrib import admin
from django.test import Client
from django.urls import NoReverseMatch, reverse
from django.utils import translation

from projects.languages import in_project_language, person_language
from projects.models import Membership, Project
from tests.factories import make_setup
from tests.test_journal_support import make_lead, member

pytestmark = pytest.mark.usefixtures("compiled_catalogue")

ROOT = Path(__file__).resolve().parent.parent
CATALOGUE = ROOT / "locale" / "ru" / "LC_MESSAGES" / "django.po"
PLACEHOLDER_RE = re.compile(r"%\(\w+\)[sdrf]|%[sdrf]|\{\{\s*\w+\s*\}\}|\{\w*\}|</?[a-z]+[^>]*>")
# The product's own English words: none may be left on a page read in Russian.
ENGLISH_WORDS = re.compile(
    r"\b(Leads?|Letters?|Pools?|Mailbox(es)?|Sources?|Campaigns?|Channels?|Rules?|Blocks?|Sites?|Sender|Subject|"
    r"Status|Visitors?|Sessions?|Reports?|Address(es)?|Leases?|Keyword|Medium|Deal amount|First contact|"
    r"Returning|Matched by|Tags?|Exclusions?|Static|Project|Save|Filter|Search|Sign in|Sign out|Date|"
    r"Unknown|Direct|Organic|Referral|Paid|Email|Created|Name|Active|Language|Show)\b"
)


def catalogue():
    with CATALOGUE.open("rb") as handle:
        return read_po(handle, locale="ru")


# --- The catalogue ------------------------------------------------------------------


def test_every_message_has_a_russian_translation_with_the_same_placeholders():
    catalog = catalogue()
    messages = [message for message in catalog if message.id]
    assert len(messages) > 300
    problems = []
    for message in messages:
        ids = list(message.id) if message.pluralizable else [message.id]
        strings = list(message.string) if message.pluralizable else [message.string]
        if message.fuzzy:
            problems.append(f"fuzzy: {ids[0]!r}")
        if message.pluralizable and len(strings) != catalog.num_plurals:
            problems.append(f"not {catalog.num_plurals} plural forms: {ids[0]!r}")
        if not all(strings):
            problems.append(f"untranslated: {ids[0]!r}")
            continue
        wanted = sorted(PLACEHOLDER_RE.findall(ids[-1]))
        for string in strings:
            if sorted(PLACEHOLDER_RE.findall(string)) != wanted and sorted(PLACEHOLDER_RE.findall(ids[0])) != sorted(
                PLACEHOLDER_RE.findall(string)
            ):
                problems.append(f"placeholders differ: {ids[0]!r} → {string!r}")
    assert problems == []


@pytest.mark.skipif(not shutil.which("xgettext"), reason="makemessages needs GNU gettext (make test installs it)")
def test_every_string_marked_in_the_code_is_in_the_catalogue(tmp_path):
    """makemessages over a copy of the code finds nothing the catalogue lacks."""
    copy = tmp_path / "src"
    ignore = shutil.ignore_patterns(".venv", "var", "staticfiles", "tests", "bench", ".git", "*.mo", "__pycache__")
    shutil.copytree(ROOT, copy, ignore=ignore, symlinks=True)
    (copy / "locale" / "ru" / "LC_MESSAGES" / "django.po").unlink()
    subprocess.run(
        [sys.executable, "manage.py", "makemessages", "-l", "ru", "--no-location", "-v", "0"],
        cwd=copy,
        check=True,
        env={"DEBUG": "1", "VAR_DIR": str(tmp_path / "var"), "PATH": "/usr/bin:/bin"},
    )
    with (copy / "locale" / "ru" / "LC_MESSAGES" / "django.po").open("rb") as handle:
        fresh = {
            message.id if isinstance(message.id, str) else message.id[0] for message in read_po(handle) if message.id
        }
    known = {message.id if isinstance(message.id, str) else message.id[0] for message in catalogue() if message.id}
    assert sorted(fresh - known) == []


# --- Choosing the language ---------------------------------------------------------------


@pytest.mark.django_db
def test_the_login_page_speaks_the_browsers_language():
    client = Client()
    russian = client.get("/journal/login/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert '<html lang="ru">' in russian and "Журнал лидов" in russian and "Войти" in russian
    english = client.get("/journal/login/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert '<html lang="en">' in english and "Leads journal" in english and "Sign in" in english


@pytest.mark.django_db
def test_a_persons_saved_choice_beats_the_browsers_and_follows_them(client):
    setup = make_setup()
    user = member("olga", setup.project)
    client.force_login(user)
    page = client.get("/journal/", HTTP_ACCEPT_LANGUAGE="en")
    assert '<html lang="en">' in page.content.decode()
    switched = client.post("/journal/language/", {"language": "ru", "next": "/journal/?project=1"})
    assert switched.status_code == 302 and switched["Location"] == "/journal/?project=1"
    assert person_language(user) == "ru"
    other_browser = Client(HTTP_ACCEPT_LANGUAGE="en")
    other_browser.force_login(user)
    assert '<html lang="ru">' in other_browser.get("/journal/").content.decode()
    assert "Лиды" in other_browser.get("/journal/").content.decode()


@pytest.mark.django_db
def test_the_switch_refuses_a_language_the_product_does_not_speak_and_an_outside_redirect(client):
    user = member("olga")
    client.force_login(user)
    answer = client.post("/journal/language/", {"language": "xx", "next": "https://evil.test/"})
    assert answer.status_code == 302 and "evil.test" not in answer["Location"]
    assert person_language(user) == ""


@pytest.mark.django_db
def test_the_api_speaks_english_to_programs_whatever_the_browser_says(client):
    answer = client.get("/api/v1/leads", HTTP_ACCEPT_LANGUAGE="ru")
    assert answer.status_code in (401, 403)
    body = answer.content.decode()
    assert re.search(r"[А-Яа-я]", body) is None, body
    assert "Content-Language" not in answer and "Accept-Language" not in answer.get("Vary", "")


@pytest.mark.django_db
def test_a_project_speaks_its_own_language_whoever_asks():
    project = Project.objects.create(name="Магазин", language="ru")
    with translation.override("en"), in_project_language(project):
        assert str(Membership.Role.MANAGER.label) == "Менеджер (настраивает)"
    with in_project_language(project.pk):
        assert translation.get_language() == "ru"


# --- Russian plurals and formats ----------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("count", "words"), [(1, "1 лид"), (2, "2 лида"), (5, "5 лидов"), (21, "21 лид"), (12, "12 лидов")]
)
def test_russian_plurals_are_russian(client, count, words):
    setup = make_setup()
    for n in range(count):
        make_lead(setup.project, subject=f"Письмо {n}")
    client.force_login(member("olga", setup.project))
    page = client.get("/journal/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    shown = re.search(r'<p class="muted" id="shown">([^<]*)</p>', page).group(1)
    assert shown.startswith(words + " ")


@pytest.mark.django_db
def test_the_csv_header_is_in_the_readers_language(client):
    setup = make_setup()
    make_lead(setup.project, subject="Заявка")
    client.force_login(member("olga", setup.project))
    for language, first_columns in (("ru", ["id", "дата"]), ("en", ["id", "date"])):
        answer = client.get("/journal/export.csv", HTTP_ACCEPT_LANGUAGE=language)
        rows = list(csv.reader(io.StringIO(b"".join(answer.streaming_content).decode("utf-8-sig"))))
        assert [cell.lower() for cell in rows[0][:2]] == first_columns
        assert rows[1][5] == "Заявка"


# --- No English left on a Russian page ------------------------------------------------------


class _Text(HTMLParser):
    """The words a person reads: text and titles, not tags, scripts or styles."""

    def __init__(self):
        super().__init__()
        self.parts, self.skip = [], 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self.skip += 1
        for name, value in attrs:
            if name in ("title", "placeholder", "aria-label") and value:
                self.parts.append(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style") and self.skip:
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def english_left(html: str, allowed: set[str]) -> list[str]:
    parser = _Text()
    parser.feed(html)
    text = " ".join(parser.parts)
    return sorted({match.group(0) for match in ENGLISH_WORDS.finditer(text)} - allowed)


@pytest.fixture
def russian_data(db):
    """A project whose data has no English words (only the interface may be checked)."""
    setup = make_setup(name="Магазин", original="info@shop.test")
    for obj, name in ((setup.site, "Сайт магазина"), (setup.pool, "Пул магазина"), (setup.block, "Почта на странице")):
        obj.name = name
        obj.save()
    setup.rule.name = "Все посетители"
    setup.rule.save()
    setup.mailbox.name = "Входящие"
    setup.mailbox.save()
    make_lead(setup.project, subject="Прайс-лист", sender_email="ivan@client.test", source="яндекс")
    return setup


@pytest.mark.django_db
def test_journal_pages_read_in_russian_keep_no_english_word(client, russian_data):
    client.force_login(member("olga", russian_data.project, role=Membership.Role.MANAGER))
    lead = russian_data.project.leads.get()
    pages = ["/journal/", f"/journal/leads/{lead.pk}/", "/journal/reports/"]
    for url in pages:
        answer = client.get(url, HTTP_ACCEPT_LANGUAGE="ru")
        assert answer.status_code == 200, url
        assert english_left(answer.content.decode(), allowed=set()) == [], url
    anonymous = Client().get("/journal/login/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert english_left(anonymous, allowed=set()) == []


def admin_urls(obj_by_model) -> list[str]:
    urls = ["/admin/"]
    for model, model_admin in admin.site._registry.items():
        info = (model._meta.app_label, model._meta.model_name)
        urls.append(reverse("admin:{}_{}_changelist".format(*info)))
        try:
            urls.append(reverse("admin:{}_{}_add".format(*info)))
        except NoReverseMatch:
            pass
        obj = obj_by_model.get(model)
        if obj is not None:
            urls.append(reverse("admin:{}_{}_change".format(*info), args=[obj.pk]))
        del model_admin
    return urls


@pytest.mark.django_db
def test_admin_pages_read_in_russian_keep_no_english_word(client, russian_data, django_user_model):
    superuser = django_user_model.objects.create_superuser("boss", password="pw-boss-12345")
    client.force_login(superuser)
    objects = {}
    for model in admin.site._registry:
        objects[model] = model.objects.order_by("pk").first()
    problems = {}
    for url in admin_urls(objects):
        answer = client.get(url, HTTP_ACCEPT_LANGUAGE="ru")
        if answer.status_code == 403:  # no add form for read-only records
            continue
        assert answer.status_code == 200, url
        left = english_left(answer.content.decode(), allowed=set())
        if left:
            problems[url] = left
    assert problems == {}
