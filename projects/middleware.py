from django.middleware.locale import LocaleMiddleware
from django.utils import translation

from .languages import person_language

# Programs read these: their messages and field names stay English, and
# their answers do not vary by the reader's language.
ENGLISH_ONLY_PREFIXES = ("/api/", "/t/", "/s/")


class LanguageMiddleware(LocaleMiddleware):
    """Django's LocaleMiddleware (the language cookie, then Accept-Language,
    then LANGUAGE_CODE), after authentication, with two changes: a signed-in
    person's saved language comes first, and the API, the tracking endpoints
    and the snippet always speak English and carry no language headers (as
    the WSGI routes that answer them in production do not)."""

    def process_request(self, request):
        if request.path.startswith(ENGLISH_ONLY_PREFIXES):
            language = "en"
        else:
            user = getattr(request, "user", None)
            language = person_language(user) if user is not None else ""
        if not language:
            return super().process_request(request)
        translation.activate(language)
        request.LANGUAGE_CODE = language

    def process_response(self, request, response):
        if request.path.startswith(ENGLISH_ONLY_PREFIXES):
            return response
        return super().process_response(request, response)
