"""The OpenAPI schema of the CRM API (drf-spectacular): only `/api/v1/`."""

from django.http import Http404
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework import exceptions
from rest_framework.permissions import AllowAny
from rest_framework.response import Response

from .errors import JsonErrors

DESCRIPTION = """
Leads with their source, for CRMs. Every request carries a project's API key:
`Authorization: Bearer etk_…` (admin → API keys, or
`python manage.py create_api_key --project ID`; a key is shown once).
A key reaches only its own project.

Lists are cursor-paginated: follow `next` until it is null (`limit` sets the
page size, at most 200). Errors always have the shape
`{"error": "message", "code": "machine_code"}`, with `fields` on validation
errors. Each key may make `API_RATE_LIMIT_PER_MINUTE` requests a minute
(default 120); over it the answer is 429 with `Retry-After`.

Webhooks (`lead.created`, `lead.updated`) push the same lead object; see the
README for their payload and signature.
"""

SCHEMA_SETTINGS = {
    "TITLE": "emailtrack API",
    "VERSION": "1",
    "DESCRIPTION": DESCRIPTION,
    "COMPONENT_SPLIT_REQUEST": True,
    "PREPROCESSING_HOOKS": ["integrations.api.schema.only_v1"],
    "ENUM_NAME_OVERRIDES": {
        "ChannelEnum": "tracker.models.Channel",
        "LeadStatusEnum": "attribution.models.Lead.Status",
        "MatchKindEnum": "attribution.models.MatchKind",
    },
}


def only_v1(endpoints, **kwargs):
    return [endpoint for endpoint in endpoints if endpoint[0].startswith("/api/v1/")]


class SchemaView(JsonErrors, SpectacularAPIView):
    authentication_classes = []
    permission_classes = [AllowAny]
    custom_settings = SCHEMA_SETTINGS
    # Generated once per process: the schema does not change while the service
    # runs, and a public endpoint must not spend ~40 ms of CPU on every call.
    # `?version=` and `?lang=` are ignored (one version, one language).
    _schema = None

    def _get_schema_response(self, request):
        cls = type(self)
        if cls._schema is None:
            generator = self.generator_class(urlconf=self.urlconf, patterns=self.patterns)
            cls._schema = generator.get_schema(request=request, public=self.serve_public)
        filename = self._get_filename(request, None)
        return Response(data=cls._schema, headers={"Content-Disposition": f'inline; filename="{filename}"'})

    def perform_content_negotiation(self, request, force=False):
        try:
            return super().perform_content_negotiation(request, force)
        except Http404:  # DRF's answer to an unknown ?format=
            raise exceptions.NotFound("Unknown schema format: use ?format=json or ?format=yaml.") from None


class DocsView(JsonErrors, SpectacularSwaggerView):
    authentication_classes = []
    permission_classes = [AllowAny]
    title = "emailtrack API"
