from django.utils import translation

from .languages import person_language

# Programs read these: their messages and field names stay English.
ENGLISH_ONLY_PREFIXES = ("/api/",)


class LanguageMiddleware:
    """After LocaleMiddleware and authentication: the API speaks English; a
    signed-in person's saved language beats the browser's."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.path.startswith(ENGLISH_ONLY_PREFIXES):
            language = "en"
        else:
            user = getattr(request, "user", None)
            language = person_language(user) if user is not None else ""
        if language:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        return self.get_response(request)
