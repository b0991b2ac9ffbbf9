import logging

from django.http import HttpResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.cache import get_conditional_response
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_safe

from lib import ratelimit
from lib.http import client_ip
from tracker.endpoint import Reply, cors_headers, error, to_response
from tracker.models import Site
from tracker.services import CollectError

from . import install_check
from .services import render_snippet

log = logging.getLogger(__name__)

NOT_FOUND = "/* emailtrack: unknown site key */\n"
# Short enough that a changed setting reaches pages within 5 minutes; while a
# browser revalidates in the background it may use the copy it has.
CACHE_CONTROL = "public, max-age=300, stale-while-revalidate=86400"


@require_safe
def snippet(request, site_key):
    """GET /s/<site_key>.js: the snippet with this site's settings rendered in.
    An ETag lets a browser or CDN revalidate for a 304 instead of the script."""
    site = Site.objects.filter(site_key=site_key, active=True).first()
    if site is None:
        response = HttpResponse(NOT_FOUND, status=404, content_type="application/javascript; charset=utf-8")
        response["Cache-Control"] = "public, max-age=60"
        return response
    built = render_snippet(
        site, request.build_absolute_uri(reverse("collect")), request.build_absolute_uri(reverse("snippet_report"))
    )
    response = HttpResponse(built.body, content_type="application/javascript; charset=utf-8")
    response["Cache-Control"] = CACHE_CONTROL
    response["ETag"] = built.etag
    response["Access-Control-Allow-Origin"] = "*"
    response["X-Content-Type-Options"] = "nosniff"
    return get_conditional_response(request, etag=built.etag, response=response)


@csrf_exempt
def report(request):
    """POST /api/v1/report: the snippet's install check, a text/plain JSON body
    {"site", "url", "missing": [block ids]} (no CORS preflight), checked and
    limited as collect is. Answers 204, or 400/403/404/405/413/429 with
    {"error"}; an unexpected failure is logged and answered 503, never 500."""
    origin = request.headers.get("Origin", "")
    if request.method == "OPTIONS":
        return to_response(Reply(204, headers=cors_headers(origin)))
    if request.method != "POST":
        return to_response(error(405, "Use POST", origin))
    try:
        rule = ratelimit.Rule("report-ip", install_check.rate_limit_per_minute(), 60)
        verdict = ratelimit.hit(rule, client_ip(request))
        if not verdict.allowed:
            return to_response(error(429, "Too many requests", origin, verdict.retry_after))
        if int(request.headers.get("Content-Length") or 0) > install_check.max_body_bytes():
            raise CollectError(413, "Request body too large")
        parsed = install_check.parse_report(request.body)
        install_check.record_report(report=parsed, origin=origin, now=timezone.now())
        return to_response(Reply(204, headers=cors_headers(origin)))
    except CollectError as failure:
        return to_response(error(failure.status, failure.message, origin))
    except ValueError:
        return to_response(error(400, "Malformed request", origin))
    except Exception:
        log.exception("snippet report failed")
        return to_response(error(503, "Temporarily unavailable", origin))
