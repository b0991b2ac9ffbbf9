# ruff: noqa: F811 - pytest fixtures imported from tests.test_notifications
"""A new-lead email and Telegram message speak the project's language,
whatever language the request or the worker happens to have active."""

import pytest
from django.utils import translation

from projects.models import Project
from tests.factories import make_setup
from tests.test_api_support import lead_from_visitor, lead_to_main_address, visitor_with_session
from tests.test_notifications import _subject, _text, eager, member, smtp, telegram  # noqa: F401 - fixtures

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("compiled_catalogue")]


def russian_project():
    setup = make_setup()
    Project.objects.filter(pk=setup.project.pk).update(language="ru")
    setup.project.refresh_from_db()
    return setup


def test_a_new_lead_email_is_in_the_projects_language(eager, smtp):
    setup = russian_project()
    member(setup.project, "anna", email_enabled=True)
    person = visitor_with_session(setup, source="google", utm_source="google", utm_medium="cpc")
    with translation.override("en"):
        lead_from_visitor(setup, person, subject="Кирпич: цена?", sender="Ivan Petrov <ivan@client.test>")
    _sender, _rcpts, raw = smtp.letters[0]
    assert _subject(raw) == "Новый лид: Кирпич: цена?"
    text = _text(raw)
    assert "От: Ivan Petrov <ivan@client.test>" in text
    assert "Тема: Кирпич: цена?" in text
    assert "Канал: Контекстная реклама" in text
    assert "Первичное обращение" in text


def test_a_new_lead_telegram_message_is_in_the_projects_language(eager, telegram):
    setup = russian_project()
    member(setup.project, "anna", telegram_enabled=True, telegram_chat_id="-100123")
    lead_to_main_address(setup, subject="Нужна смета", sender="Olga <olga@client.test>")
    text = telegram.requests[0].json()["text"]
    assert text.startswith("Новый лид в проекте ")
    assert "От: Olga <olga@client.test>" in text and "Канал: Неизвестно" in text
