"""Which language a person reads, and the language a project speaks to people.

A person's own choice is saved on their profile and beats the browser's
Accept-Language; without one, LocaleMiddleware's choice stands (the language
cookie, then Accept-Language, then LANGUAGE_CODE). Notifications are written
in the project's language, whoever triggers them.
"""

from django.conf import settings
from django.utils import translation

from .models import Profile, Project


def supported(language: str) -> bool:
    return language in dict(settings.LANGUAGES)


def person_language(user) -> str:
    """The language a signed-in person chose, or "" for none."""
    if not user.is_authenticated:
        return ""
    return Profile.objects.filter(user=user).values_list("language", flat=True).first() or ""


def person_set_language(user, language: str) -> None:
    """Save a person's choice ("" clears it). Raises ValueError for a language the product does not speak."""
    if language and not supported(language):
        raise ValueError(f"Unsupported language {language!r}")
    Profile.objects.update_or_create(user=user, defaults={"language": language})


def project_language(project: Project | int) -> str:
    if isinstance(project, int):
        language = Project.objects.filter(pk=project).values_list("language", flat=True).first()
    else:
        language = project.language
    return language if language and supported(language) else settings.LANGUAGE_CODE


def in_project_language(project: Project | int):
    """A context in which gettext speaks the project's language (for notifications)."""
    return translation.override(project_language(project))
