from django.views.decorators.csrf import csrf_exempt

from lib.http import client_ip

from . import endpoint


@csrf_exempt
def collect(request):
    """POST /api/v1/collect through Django. In production the WSGI route
    (tracker.wsgi) answers it first, with the same tracker.endpoint.respond."""
    meta = request.META
    reply = endpoint.respond(
        method=request.method,
        origin=meta.get("HTTP_ORIGIN", ""),
        user_agent=meta.get("HTTP_USER_AGENT", ""),
        content_length=meta.get("CONTENT_LENGTH", ""),
        read_body=lambda: request.body,
        ip=client_ip(request),
    )
    return endpoint.to_response(reply)
