import logging
import re

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from lib.http import client_ip

from . import services

log = logging.getLogger(__name__)
# What a browser sends as Origin; anything else (a forged header with line breaks) is not echoed.
ORIGIN_RE = re.compile(r"\A[A-Za-z][A-Za-z0-9+.-]*://[^\s/]+\Z")


def _cors(response, origin):
    if origin and ORIGIN_RE.match(origin):
        response["Access-Control-Allow-Origin"] = origin
        response["Access-Control-Allow-Methods"] = "POST"
        response["Access-Control-Max-Age"] = "86400"
    response["Vary"] = "Origin"
    response["Cache-Control"] = "no-store"
    return response


@csrf_exempt
def collect(request):
    """POST /api/v1/collect: a text/plain JSON body from the snippet (no CORS
    preflight). Answers 200, or 400/403/404/405/413/429 with {"error"}; an
    unexpected failure is logged and answered 503, never 500."""
    origin = request.headers.get("Origin", "")
    if request.method == "OPTIONS":
        return _cors(HttpResponse(status=204), origin)
    if request.method != "POST":
        return _cors(JsonResponse({"error": "Use POST"}, status=405), origin)
    try:
        ip = client_ip(request)
        length = int(request.headers.get("Content-Length") or 0)
        if length > settings.COLLECT_MAX_BODY_BYTES:
            raise services.CollectError(413, "Request body too large")
        parsed = services.parse_request(request.body)
        body = services.collect(
            request=parsed, origin=origin, user_agent=request.headers.get("User-Agent", ""), now=timezone.now(), ip=ip
        )
        return _cors(JsonResponse(body), origin)
    except services.CollectError as error:
        response = JsonResponse({"error": error.message}, status=error.status)
        if error.status == 429:
            response["Retry-After"] = "60"
        return _cors(response, origin)
    except ValueError:
        return _cors(JsonResponse({"error": "Malformed request"}, status=400), origin)
    except Exception:
        log.exception("collect failed")
        response = JsonResponse({"error": "Temporarily unavailable"}, status=503)
        response["Retry-After"] = "30"
        return _cors(response, origin)
