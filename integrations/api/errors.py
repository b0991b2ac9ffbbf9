"""One JSON shape for every error the API answers:
`{"error": "message", "code": "machine_code"}`, plus `"fields"` on validation
errors. An unexpected failure is logged and answered 503, never 500."""

import logging

from django.core.exceptions import PermissionDenied, RequestDataTooBig, SuspiciousOperation
from django.http import Http404, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework import exceptions, status
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import set_rollback

log = logging.getLogger(__name__)


def _flatten(detail):
    if isinstance(detail, dict):
        return {str(key): _flatten(value) for key, value in detail.items()}
    if isinstance(detail, list):
        return [_flatten(item) for item in detail]
    return str(detail)


def _first_message(detail) -> str:
    if isinstance(detail, dict):
        for key, value in detail.items():
            message = _first_message(value)
            return message if key == "non_field_errors" else f"{key}: {message}"
    if isinstance(detail, list):
        return _first_message(detail[0]) if detail else "Invalid input."
    return str(detail)


class PayloadTooLarge(exceptions.APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "too_large"


def api_exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = exceptions.PermissionDenied()
    elif isinstance(exc, RequestDataTooBig):
        exc = PayloadTooLarge()
    elif isinstance(exc, SuspiciousOperation):  # e.g. too many query parameters
        exc = exceptions.ParseError("The request is malformed.")
    if not isinstance(exc, exceptions.APIException):
        view = context.get("view")
        log.exception("API request failed in %s", type(view).__name__ if view else "?")
        set_rollback()
        return Response(
            {"error": "The service could not answer just now; try again shortly.", "code": "unavailable"},
            status=status.HTTP_503_SERVICE_UNAVAILABLE,
            headers={"Retry-After": "30"},
        )
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, exceptions.ValidationError):
        data = {"error": _first_message(exc.detail), "code": "invalid", "fields": _flatten(exc.detail)}
        if not isinstance(exc.detail, dict):
            data["fields"] = {"non_field_errors": _flatten(exc.detail)}
    else:
        codes = exc.get_codes()
        code = codes if isinstance(codes, str) else exc.default_code
        data = {"error": str(exc.detail), "code": code}
    set_rollback()
    return Response(data, status=exc.status_code, headers=headers)


class JsonErrors:
    """A view mixin: every error in the API's shape and as JSON, whatever
    renderer the request asked for (the schema's YAML, the docs' HTML)."""

    def get_exception_handler(self):
        return api_exception_handler

    def handle_exception(self, exc):
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response


@csrf_exempt
def not_found(request, *args, **kwargs):
    """Any other path under /api/v1/: the API's 404, in its shape."""
    is_endpoint_with_slash = request.path.endswith("/") and request.path.rstrip("/").count("/") > 2
    hint = " (API paths end without a slash)" if is_endpoint_with_slash else ""
    return JsonResponse({"error": f"No such API endpoint{hint}.", "code": "not_found"}, status=404)
