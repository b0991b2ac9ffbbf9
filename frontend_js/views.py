from django.http import HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_safe

from tracker.models import Site

from .services import render_snippet

NOT_FOUND = "/* emailtrack: unknown site key */\n"


@require_safe
def snippet(request, site_key):
    """GET /s/<site_key>.js: the snippet with this site's settings rendered in."""
    site = Site.objects.filter(site_key=site_key, active=True).first()
    if site is None:
        response = HttpResponse(NOT_FOUND, status=404, content_type="application/javascript; charset=utf-8")
        response["Cache-Control"] = "public, max-age=60"
        return response
    body = render_snippet(site, request.build_absolute_uri(reverse("collect")))
    response = HttpResponse(body, content_type="application/javascript; charset=utf-8")
    response["Cache-Control"] = "public, max-age=300, stale-while-revalidate=86400"
    response["Access-Control-Allow-Origin"] = "*"
    response["X-Content-Type-Options"] = "nosniff"
    return response
