"""`Authorization: Bearer <key>`: a project's API key. The key decides the
project: every query in the API starts from `request.auth.project`."""

from django.contrib.auth.models import AnonymousUser
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import SAFE_METHODS, BasePermission

from integrations.keys import api_key_authenticate
from integrations.models import ApiKey


class ApiKeyAuthentication(BaseAuthentication):
    keyword = b"bearer"

    def authenticate(self, request):
        try:
            header = get_authorization_header(request).split()
        except UnicodeEncodeError:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.") from None
        if not header:
            return None
        if header[0].lower() != self.keyword:
            raise exceptions.AuthenticationFailed("Use the header Authorization: Bearer <API key>.")
        if len(header) != 2:
            raise exceptions.AuthenticationFailed("The Authorization header must be: Bearer <API key>.")
        try:
            key = header[1].decode("ascii")
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.") from None
        api_key = api_key_authenticate(key)
        if api_key is None:
            raise exceptions.AuthenticationFailed("Invalid or revoked API key.")
        return AnonymousUser(), api_key

    def authenticate_header(self, request):
        return 'Bearer realm="api"'


class HasApiKey(BasePermission):
    """Any valid key reads; only a key that is not read-only changes leads."""

    message = "This API key is read-only."

    def has_permission(self, request, view):
        if not isinstance(request.auth, ApiKey):
            return False
        return request.method in SAFE_METHODS or not request.auth.read_only


class ApiKeyScheme(OpenApiAuthenticationExtension):
    target_class = ApiKeyAuthentication
    name = "ApiKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A project's API key: `Authorization: Bearer etk_…`. Made in admin (API keys) or "
            "with `python manage.py create_api_key --project ID`; shown once.",
        }
