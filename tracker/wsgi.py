"""The collect endpoint answered before Django's request handling.

Every page view of every customer's site calls POST /api/v1/collect, and a
returning visitor's call is answered from one Redis round trip. Django's
request cycle around it (request and response objects, URL resolution, eight
middleware, signals) cost about as much CPU as the answer itself. This route,
wrapped around the Django application in config.wsgi, takes collect's
requests (POST and its CORS preflight) and answers them with the same
tracker.endpoint.respond as the Django view; everything else, and collect
when an HTTPS redirect is due, goes to Django unchanged.

What the middleware did for collect is done here too, by Django's own code:
the Host header is checked by HttpRequest.get_host (ALLOWED_HOSTS), the
headers SecurityMiddleware and XFrameOptionsMiddleware add to a response are
added (each computed once), and database connections past their age or
broken are closed as Django's request signals do.
"""

import logging
from functools import lru_cache

from django.conf import settings
from django.core.exceptions import DisallowedHost
from django.db import connections, reset_queries
from django.http import HttpRequest, HttpResponse
from django.http.cookie import parse_cookie
from django.utils.module_loading import import_string
from django.utils.translation import get_language_from_request

from lib.http import trusted_client_ip

from . import endpoint

PATH = "/api/v1/collect"
MAX_HOSTS_REMEMBERED = 64
HOST_KEYS = ("HTTP_X_FORWARDED_HOST", "HTTP_HOST", "SERVER_NAME", "SERVER_PORT", "wsgi.url_scheme")
# The middleware whose response headers collect's answers carry, when installed.
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


class CollectRoute:
    def __init__(self, django_application):
        self.django = django_application
        self._hosts: dict[tuple, bool] = {}
        self._headers: dict[bool, list[tuple[str, str]]] = {}

    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH:
            return self.django(environ, start_response)
        secure = self._secure(environ)
        if settings.SECURE_SSL_REDIRECT and not secure:
            return self.django(environ, start_response)  # SecurityMiddleware redirects
        if settings.DEBUG:
            reset_queries()
        _close_old_connections()
        try:
            reply = self._reply(environ)
        finally:
            _close_old_connections()
        start_response(reply.status_line, _with_language(environ, reply.headers) + self._security_headers(secure))
        return [reply.body]

    def _reply(self, environ) -> endpoint.Reply:
        origin = environ.get("HTTP_ORIGIN", "")
        if not self._host_allowed(environ):
            return endpoint.error(400, "Invalid Host header", origin)
        return endpoint.respond(
            method=environ.get("REQUEST_METHOD", ""),
            origin=origin,
            user_agent=environ.get("HTTP_USER_AGENT", ""),
            content_length=environ.get("CONTENT_LENGTH", ""),
            read_body=lambda: _read_body(environ),
            ip=trusted_client_ip(environ),
        )

    def _host_allowed(self, environ) -> bool:
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
    def _secure(environ) -> bool:
        """HttpRequest.is_secure on the environ, without building a request on
        every call (this one runs for every collect request)."""
        if settings.SECURE_PROXY_SSL_HEADER:
            header, secure_value = settings.SECURE_PROXY_SSL_HEADER
            if header in environ:
                return environ[header].split(",", 1)[0].strip() == secure_value
        return environ.get("wsgi.url_scheme") == "https"

    def _security_headers(self, secure: bool) -> list[tuple[str, str]]:
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


LOCALE_MIDDLEWARE = "django.middleware.locale.LocaleMiddleware"


def _with_language(environ, headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """What LocaleMiddleware adds to a response, when installed: the language
    the request asks for (Content-Language) and Accept-Language in Vary."""
    if LOCALE_MIDDLEWARE not in settings.MIDDLEWARE:
        return headers
    vary = [value for name, value in headers if name.lower() == "vary"]
    headers = [(name, value) for name, value in headers if name.lower() != "vary"]
    headers.append(("Vary", ", ".join([*vary, "Accept-Language"])))
    headers.append(
        ("Content-Language", _language(environ.get("HTTP_COOKIE", ""), environ.get("HTTP_ACCEPT_LANGUAGE", "")))
    )
    return headers


@lru_cache(maxsize=256)
def _language(cookie: str, accept_language: str) -> str:
    """LocaleMiddleware's choice for these headers (a browser sends the same
    ones on every page view)."""
    request = _EnvironRequest({"HTTP_COOKIE": cookie, "HTTP_ACCEPT_LANGUAGE": accept_language})
    request.COOKIES = parse_cookie(cookie)
    return get_language_from_request(request)


def _close_old_connections() -> None:
    """django.db.close_old_connections, as Django runs it at the start and end
    of a request; a connection inside a transaction block (a test's) is left
    alone, as Django's test client leaves it."""
    for connection in connections.all(initialized_only=True):
        if not connection.in_atomic_block:
            connection.close_if_unusable_or_obsolete()


def _read_body(environ) -> bytes:
    """The body, read only after respond checked the declared length. Without
    a length (chunked upload), at most one byte over the cap is read, so an
    endless body is refused without being read whole."""
    stream = environ["wsgi.input"]
    cap = settings.COLLECT_MAX_BODY_BYTES
    length = environ.get("CONTENT_LENGTH", "")
    if length:
        return stream.read(int(length))
    if environ.get("wsgi.input_terminated"):
        body = stream.read(cap + 1)
        if len(body) > cap:
            raise endpoint.services.CollectError(413, "Request body too large")
        return body
    return b""
