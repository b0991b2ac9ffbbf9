"""Routes that answer a hot path before Django's request cycle, as collect
(tracker.wsgi) and the tracking pixel and clicks (engagement.wsgi) do.

What the middleware would do for such a request is done here by Django's own
code: the Host header is checked by HttpRequest.get_host (ALLOWED_HOSTS),
the headers SecurityMiddleware and XFrameOptionsMiddleware add to a response
are added (each computed once), and database connections past their age or
broken are closed as Django's request signals do.
"""

import logging

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import connections
from django.http import HttpRequest, HttpResponse
from django.utils.module_loading import import_string

MAX_HOSTS_REMEMBERED = 64
HOST_KEYS = ("HTTP_X_FORWARDED_HOST", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "wsgi.url_scheme")
# The middleware whose response headers the routes' answers carry, when installed.
HEADER_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)
security_log = logging.getLogger("django.security.DisallowedHost")


class _EnvironRequest(HttpRequest):
    """A bare request over a WSGI environ: enough for Django's get_host and
    is_secure, without parsing anything else."""

    def __init__(self, environ):
        super().__init__()
        self.META = environ

    def _get_scheme(self):
        return self.META.get("wsgi.url_scheme", "http")


class Route:
    """A WSGI application in front of Django's: a subclass answers its own
    paths in __call__ and hands every other request to `self.django`."""

    def __init__(self, django_application):
        self.django = django_application
        self._hosts: dict[tuple, bool] = {}
        self._headers: dict[bool, list[tuple[str, str]]] = {}

    def host_allowed(self, environ) -> bool:
        """Django's HttpRequest.get_host verdict, remembered per Host value."""
        key = tuple(environ.get(name) for name in HOST_KEYS)
        allowed = self._hosts.get(key)
        if allowed is None:
            try:
                _EnvironRequest(environ).get_host()
                allowed = True
            except DisallowedHost as refused:
                security_log.warning("%s", refused)
                allowed = False
            if len(self._hosts) >= MAX_HOSTS_REMEMBERED:
                self._hosts.clear()
            self._hosts[key] = allowed
        return allowed

    @staticmethod
    def secure(environ) -> bool:
        """HttpRequest.is_secure on the environ, without building a request on
        every call (this runs for every request)."""
        if settings.SECURE_PROXY_SSL_HEADER:
            header, secure_value = settings.SECURE_PROXY_SSL_HEADER
            if header in environ:
                return environ[header].split(",", 1)[0].strip() == secure_value
        return environ.get("wsgi.url_scheme") == "https"

    def security_headers(self, secure: bool) -> list[tuple[str, str]]:
        """The headers the installed SecurityMiddleware and XFrameOptionsMiddleware
        add to a response, over HTTPS (HSTS) or not."""
        headers = self._headers.get(secure)
        if headers is None:
            request = HttpRequest()
            request.is_secure = lambda: secure
            response = HttpResponse()
            bare = set(response.headers)
            for path in HEADER_MIDDLEWARE:
                if path in settings.MIDDLEWARE:
                    middleware = import_string(path)(get_response=lambda request: None)
                    response = middleware.process_response(request, response)
            headers = [(name, value) for name, value in response.items() if name not in bare]
            self._headers[secure] = headers
        return headers


def close_old_connections() -> None:
    """django.db.close_old_connections, as Django runs it at the start and end
    of a request; a connection inside a transaction block (a test's) is left
    alone, as Django's test client leaves it."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()
