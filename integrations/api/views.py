"""The REST API for CRMs (`/api/v1/`): validate input, call a selector or a
service, serialize. Each view reaches only the API key's project."""

from django.utils import timezone
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import exceptions
from rest_framework.generics import GenericAPIView
from rest_framework.mixins import ListModelMixin
from rest_framework.parsers import JSONParser
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response

from attribution.leads import LeadChangeError, lead_update
from integrations import selectors
from substitution.selectors import pool_health

from . import serializers as s
from .auth import ApiKeyAuthentication, HasApiKey
from .errors import JsonErrors
from .pagination import Cursor
from .throttling import ApiKeyThrottle


def _errors(*codes, extra=None) -> dict:
    descriptions = {
        400: "Invalid input (`code`: `invalid`, messages per field in `fields`).",
        401: "No API key, or an invalid or revoked one.",
        403: "The key may not do this (a read-only key changing a lead).",
        404: "Not found in the key's project.",
        429: "Over the key's rate limit: wait `Retry-After` seconds.",
    }
    responses = {code: OpenApiResponse(s.ErrorSerializer, description=descriptions[code]) for code in codes}
    responses.update(extra or {})
    return responses


READ_ERRORS = (400, 401, 404, 429)


def api_schema(**kwargs):
    """drf-spectacular's extend_schema on a view method, based on its AutoSchema
    (DRF's DEFAULT_SCHEMA_CLASS is left alone for the rest of the project)."""

    def decorator(method):
        method.kwargs = {"schema": AutoSchema}
        return extend_schema(**kwargs)(method)

    return decorator


def documented(method, **kwargs):
    """A copy of a shared method, documented for one view."""

    def copy(self, *args, **kw):
        return method(self, *args, **kw)

    return api_schema(**kwargs)(copy)


class ApiView(JsonErrors, GenericAPIView):
    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]
    throttle_classes = [ApiKeyThrottle]
    renderer_classes = [JSONRenderer]
    parser_classes = [JSONParser]
    pagination_class = Cursor
    schema = AutoSchema()

    @property
    def project(self):
        return self.request.auth.project

    def finalize_response(self, request, response, *args, **kwargs):
        response = super().finalize_response(request, response, *args, **kwargs)
        limit = getattr(request, "rate_limit", None)
        if limit is not None:
            response["X-RateLimit-Limit"] = str(limit[0])
            response["X-RateLimit-Remaining"] = str(limit[1])
        return response

    def get_object_or_404(self, obj):
        if obj is None:
            raise exceptions.NotFound(f"No such {self.noun} in this project.")
        return obj

    def query(self, serializer_class):
        """Validated query parameters (unknown ones are ignored)."""
        serializer = serializer_class(data=self.request.query_params.dict())
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data


class ProjectView(ApiView):
    @api_schema(
        summary="The key's project",
        description="Which project this key reaches; a cheap call to check a key.",
        responses={200: s.ProjectSerializer, **_errors(401, 429)},
        tags=["project"],
    )
    def get(self, request):
        project, key = request.auth.project, request.auth
        data = {
            "id": project.pk,
            "name": project.name,
            "time_zone": project.time_zone,
            "key_name": key.name,
            "key_read_only": key.read_only,
        }
        return Response(s.ProjectSerializer(data).data)


class LeadListView(ListModelMixin, ApiView):
    serializer_class = s.LeadSerializer

    def cursor_ordering(self, request):
        return selectors.LEAD_ORDERINGS[self.filters["ordering"]]

    def get_queryset(self):
        self.filters = self.query(s.LeadFilterSerializer)
        return selectors.project_leads(self.project, self.filters)

    @api_schema(
        summary="Leads",
        description="Newest first by default. For incremental pulls keep the largest `updated_at` you have "
        "seen and ask for `updated_since=<it>&ordering=updated_at`, following `next` until it is null.",
        parameters=[s.LeadFilterSerializer],
        responses={200: s.LeadSerializer(many=True), **_errors(*READ_ERRORS)},
        tags=["leads"],
    )
    def get(self, request):
        return self.list(request)


class LeadDetailView(ApiView):
    serializer_class = s.LeadDetailSerializer
    noun = "lead"

    def lead(self, lead_id):
        return self.get_object_or_404(selectors.project_lead(self.project, lead_id))

    @api_schema(
        summary="A lead with its letters and the visitor's session",
        responses={200: s.LeadDetailSerializer, **_errors(401, 404, 429)},
        tags=["leads"],
    )
    def get(self, request, lead_id: int):
        return Response(s.LeadDetailSerializer(self.lead(lead_id)).data)

    @api_schema(
        summary="Change a lead's status, tags, comment or deal amount",
        description="Only the fields sent change. `tags` replaces the lead's tags. Subscribers of "
        "`lead.updated` hear of a change.",
        request=s.LeadChangeSerializer,
        responses={200: s.LeadDetailSerializer, **_errors(400, 401, 403, 404, 429)},
        tags=["leads"],
    )
    def patch(self, request, lead_id: int):
        lead = self.lead(lead_id)
        change = s.LeadChangeSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        try:
            lead_update(lead=lead, **change.validated_data)
        except LeadChangeError as error:
            raise exceptions.ValidationError({"non_field_errors": [str(error)]}) from None
        return Response(s.LeadDetailSerializer(self.lead(lead_id)).data)


class _ProjectList(ListModelMixin, ApiView):
    selector = None

    def get_queryset(self):
        return type(self).selector(self.project)

    def get(self, request):
        return self.list(request)


class _ProjectDetail(ApiView):
    selector = None

    def get(self, request, pk: int):
        obj = type(self).selector(self.project).filter(pk=pk).first()
        return Response(self.get_serializer(self.get_object_or_404(obj)).data)


def _list_get(serializer, noun, tag):
    return documented(
        _ProjectList.get,
        summary=noun[0].upper() + noun[1:],
        responses={200: serializer(many=True), **_errors(*READ_ERRORS)},
        tags=[tag],
    )


def _detail_get(serializer, noun, tag):
    return documented(
        _ProjectDetail.get, summary=f"One {noun}", responses={200: serializer, **_errors(401, 404, 429)}, tags=[tag]
    )


class SiteListView(_ProjectList):
    serializer_class, selector = s.SiteSerializer, selectors.project_sites
    get = _list_get(s.SiteSerializer, "sites", "sites")


class SiteDetailView(_ProjectDetail):
    serializer_class, selector, noun = s.SiteSerializer, selectors.project_sites, "site"
    get = _detail_get(s.SiteSerializer, "site", "sites")


class _PoolContext:
    def get_serializer_context(self):
        now = timezone.now()
        return {**super().get_serializer_context(), "health": lambda pool: pool_health(pool, now)}


class PoolListView(_PoolContext, _ProjectList):
    serializer_class, selector = s.PoolSerializer, selectors.project_pools
    get = _list_get(s.PoolSerializer, "pools with their health", "pools")


class PoolDetailView(_PoolContext, _ProjectDetail):
    serializer_class, selector, noun = s.PoolSerializer, selectors.project_pools, "pool"
    get = _detail_get(s.PoolSerializer, "pool with its health", "pools")


class StaticAddressListView(_ProjectList):
    serializer_class, selector = s.StaticAddressSerializer, selectors.project_static_addresses
    get = _list_get(s.StaticAddressSerializer, "static channel addresses", "static addresses")


class StaticAddressDetailView(_ProjectDetail):
    serializer_class, selector, noun = s.StaticAddressSerializer, selectors.project_static_addresses, "address"
    get = _detail_get(s.StaticAddressSerializer, "static channel address", "static addresses")


class MailboxListView(_ProjectList):
    serializer_class, selector = s.MailboxSerializer, selectors.project_mailboxes
    get = _list_get(s.MailboxSerializer, "mailboxes with their sync state", "mailboxes")


class MailboxDetailView(_ProjectDetail):
    serializer_class, selector, noun = s.MailboxSerializer, selectors.project_mailboxes, "mailbox"
    get = _detail_get(s.MailboxSerializer, "mailbox with its sync state", "mailboxes")


class SummaryView(ApiView):
    pagination_class = None

    @api_schema(
        summary="Sessions, leads, deals and costs by channel, source, campaign, keyword, site or block",
        description="Days in the project's time zone, both ends included; default the last 30 days. Conversion is "
        "leads per 100 sessions; cost per lead and per deal and ROI ((deal amount - cost) / cost) follow from the "
        "costs sent to `POST /api/v1/costs` or uploaded. Costs with no matching traffic are rows of their own.",
        parameters=[s.SummaryFilterSerializer],
        responses={
            200: s.SummarySerializer,
            **_errors(
                401,
                429,
                extra={
                    400: OpenApiResponse(
                        s.ErrorSerializer,
                        description="Invalid input (`code`: `invalid`): an unknown `group_by`, a malformed day, or "
                        "`date_from` after `date_to` (or after today when `date_to` is left out).",
                    )
                },
            ),
        },
        tags=["reports"],
    )
    def get(self, request):
        query = self.query(s.SummaryFilterSerializer)
        date_from, date_to = selectors.summary_period(self.project, query.get("date_from"), query.get("date_to"))
        if date_from > date_to:  # one of them was left to its default
            raise exceptions.ValidationError({"date_from": ["Must not be after date_to (default: today)."]})
        summary = selectors.lead_summary(self.project, date_from, date_to, query["group_by"])
        return Response(s.SummarySerializer(summary).data)
