from django.views.decorators.csrf import csrf_exempt

from lib.http import client_ip
from tracker.endpoint import to_response

from . import endpoint


def _call(answer, request, token):
    meta = request.META
    reply = answer(
        token=token, method=request.method, user_agent=meta.get("HTTP_USER_AGENT", ""), ip=client_ip(request)
    )
    return to_response(reply)


@csrf_exempt
def pixel(request, token: str):
    """GET /t/o/<token>.gif through Django; the WSGI route (engagement.wsgi) answers it first in production."""
    return _call(endpoint.pixel, request, token)


@csrf_exempt
def click(request, token: str):
    """GET /t/c/<token> through Django; the WSGI route answers it first in production."""
    return _call(endpoint.click, request, token)
