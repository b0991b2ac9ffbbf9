"""The pixel and click endpoints answered before Django's request handling.

Every open of every tracked letter fetches the pixel, and scanners fetch it
and every link within seconds of delivery: the answer itself is one HMAC and
one Redis XADD, so Django's request cycle around it would cost more than the
answer. This route, wrapped around collect's route in config.wsgi, takes GET
and HEAD of /t/o/<token>.gif and /t/c/<token> and answers them with the same
engagement.endpoint as the Django views, with the same Host check and
security headers as collect's route (both are lib.wsgi_route routes);
everything else goes on to the wrapped application.
"""

from django.conf import settings
from django.db import reset_queries

from lib.http import trusted_client_ip
from lib.wsgi_route import Route
from tracker.endpoint import Reply

from . import endpoint

PIXEL_PREFIX, PIXEL_SUFFIX, CLICK_PREFIX = "/t/o/", ".gif", "/t/c/"


class TrackingRoute(Route):
    def __call__(self, environ, start_response):
        path = environ.get("PATH_INFO", "")
        if path.startswith(PIXEL_PREFIX) and path.endswith(PIXEL_SUFFIX):
            answer, token = endpoint.pixel, path[len(PIXEL_PREFIX) : -len(PIXEL_SUFFIX)]
        elif path.startswith(CLICK_PREFIX):
            answer, token = endpoint.click, path[len(CLICK_PREFIX) :]
        else:
            return self.django(environ, start_response)
        secure = self.secure(environ)
        if settings.SECURE_SSL_REDIRECT and not secure:
            return self.django(environ, start_response)  # SecurityMiddleware redirects
        if settings.DEBUG:
            reset_queries()
        if not self.host_allowed(environ):
            reply = Reply(400, b"Invalid Host header", [("Content-Type", "text/plain")])
        else:
            # A click's link is looked up once per process (engagement.links,
            # which checks the database connection around its query).
            reply = answer(
                token=token,
                method=environ.get("REQUEST_METHOD", ""),
                user_agent=environ.get("HTTP_USER_AGENT", ""),
                ip=trusted_client_ip(environ),
            )
        start_response(reply.status_line, reply.headers + self.security_headers(secure))
        return [reply.body]
