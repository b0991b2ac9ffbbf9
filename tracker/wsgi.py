"""The collect endpoint answered before Django's request handling.

Every page view of every customer's site calls POST /api/v1/collect, and a
returning visitor's call is answered from one Redis round trip. Django's
request cycle around it (request and response objects, URL resolution, eight
middleware, signals) cost about as much CPU as the answer itself. This route,
wrapped around the Django application in config.wsgi, takes collect's
requests (POST and its CORS preflight) and answers them with the same
tracker.endpoint.respond as the Django view; everything else, and collect
when an HTTPS redirect is due, goes to Django unchanged.

What the middleware did for collect is done here too: the Host header is
checked against ALLOWED_HOSTS, the security headers SecurityMiddleware and
XFrameOptionsMiddleware add are added, and database connections past their
age or broken are closed after the request as Django's request signals do.
"""

import logging

from django.conf import settings
from django.db import connections, reset_queries
from django.http.request import split_domain_port, validate_host

from lib.http import trusted_client_ip

from . import endpoint

PATH = "/api/v1/collect"
MAX_HOSTS_REMEMBERED = 64
security_log = logging.getLogger("django.security.DisallowedHost")


class CollectRoute:
    def __init__(self, django_application):
        self.django = django_application
        self._hosts: dict[str, bool] = {}
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
        start_response(reply.status_line, reply.headers + self._security_headers(secure))
        return [reply.body]

    def _reply(self, environ) -> endpoint.Reply:
        origin = environ.get("HTTP_ORIGIN", "")
        host = self._host(environ)
        if not self._host_allowed(host):
            security_log.warning("Invalid HTTP_HOST header: %r.", host)
            return endpoint.error(400, "Invalid Host header", origin)
        return endpoint.respond(
            method=environ.get("REQUEST_METHOD", ""),
            origin=origin,
            user_agent=environ.get("HTTP_USER_AGENT", ""),
            content_length=environ.get("CONTENT_LENGTH", ""),
            read_body=lambda: _read_body(environ),
            ip=trusted_client_ip(environ),
        )

    @staticmethod
    def _host(environ) -> str:
        if settings.USE_X_FORWARDED_HOST and "HTTP_X_FORWARDED_HOST" in environ:
            return environ["HTTP_X_FORWARDED_HOST"]
        if "HTTP_HOST" in environ:
            return environ["HTTP_HOST"]
        host, port = environ.get("SERVER_NAME", ""), environ.get("SERVER_PORT", "")
        default = "443" if environ.get("wsgi.url_scheme") == "https" else "80"
        return host if port == default else f"{host}:{port}"

    def _host_allowed(self, host: str) -> bool:
        """Django's own check (HttpRequest.get_host), remembered per Host value."""
        allowed = self._hosts.get(host)
        if allowed is None:
            patterns = settings.ALLOWED_HOSTS
            if settings.DEBUG and not patterns:
                patterns = [".localhost", "127.0.0.1", "[::1]"]
            domain, _port = split_domain_port(host)
            allowed = bool(domain) and validate_host(domain, patterns)
            if len(self._hosts) >= MAX_HOSTS_REMEMBERED:
                self._hosts.clear()
            self._hosts[host] = allowed
        return allowed

    @staticmethod
    def _secure(environ) -> bool:
        if settings.SECURE_PROXY_SSL_HEADER:
            header, secure_value = settings.SECURE_PROXY_SSL_HEADER
            if header in environ:
                return environ[header].split(",", 1)[0].strip() == secure_value
        return environ.get("wsgi.url_scheme") == "https"

    def _security_headers(self, secure: bool) -> list[tuple[str, str]]:
        """What SecurityMiddleware and XFrameOptionsMiddleware add to a response."""
        headers = self._headers.get(secure)
        if headers is None:
            headers = []
            if secure and settings.SECURE_HSTS_SECONDS:
                hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
                if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
                    hsts += "; includeSubDomains"
                if settings.SECURE_HSTS_PRELOAD:
                    hsts += "; preload"
                headers.append(("Strict-Transport-Security", hsts))
            if settings.SECURE_CONTENT_TYPE_NOSNIFF:
                headers.append(("X-Content-Type-Options", "nosniff"))
            policy = settings.SECURE_REFERRER_POLICY
            if policy:
                parts = [part.strip() for part in policy.split(",")] if isinstance(policy, str) else policy
                headers.append(("Referrer-Policy", ",".join(parts)))
            if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
                headers.append(("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY))
            headers.append(("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()))
            self._headers[secure] = headers
        return headers


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
