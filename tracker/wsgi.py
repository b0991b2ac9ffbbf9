"""The collect endpoint answered before Django's request handling.

Every page view of every customer's site calls POST /api/v1/collect, and a
returning visitor's call is answered from one Redis round trip. Django's
request cycle around it (request and response objects, URL resolution, eight
middleware, signals) cost about as much CPU as the answer itself. This route,
wrapped around the Django application in config.wsgi, takes collect's
requests (POST and its CORS preflight) and answers them with the same
tracker.endpoint.respond as the Django view; everything else, and collect
when an HTTPS redirect is due, goes to Django unchanged.

What the middleware did for collect is done here too, by Django's own code
(lib.wsgi_route: the Host check, the security headers, the database
connections' upkeep).
"""

from django.conf import settings
from django.db import reset_queries

from lib.http import trusted_client_ip
from lib.wsgi_route import Route, close_old_connections

from . import endpoint

PATH = "/api/v1/collect"


class CollectRoute(Route):
    def __call__(self, environ, start_response):
        if environ.get("PATH_INFO") != PATH:
            return self.django(environ, start_response)
        secure = self.secure(environ)
        if settings.SECURE_SSL_REDIRECT and not secure:
            return self.django(environ, start_response)  # SecurityMiddleware redirects
        if settings.DEBUG:
            reset_queries()
        close_old_connections()
        try:
            reply = self._reply(environ)
        finally:
            close_old_connections()
        start_response(reply.status_line, reply.headers + self.security_headers(secure))
        return [reply.body]

    def _reply(self, environ) -> endpoint.Reply:
        origin = environ.get("HTTP_ORIGIN", "")
        if not self.host_allowed(environ):
            return endpoint.error(400, "Invalid Host header", origin)
        return endpoint.respond(
            method=environ.get("REQUEST_METHOD", ""),
            origin=origin,
            user_agent=environ.get("HTTP_USER_AGENT", ""),
            content_length=environ.get("CONTENT_LENGTH", ""),
            read_body=lambda: _read_body(environ),
            ip=trusted_client_ip(environ),
        )


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
