"""The messages API: tracked letters (engagement). Validate, call engagement's
services and selectors, serialize; every query starts from the key's project."""

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, OpenApiResponse
from rest_framework import exceptions, status
from rest_framework.response import Response

from attribution.models import Lead
from engagement import selectors, services
from engagement.models import Origin

from . import message_serializers as s
from .errors import PayloadTooLarge
from .serializers import ErrorSerializer
from .views import READ_ERRORS, ApiView, _errors, api_schema


class TrackingOff(exceptions.APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "Engagement tracking is off for this project: switch it on first."
    default_code = "tracking_off"


CREATED_EXAMPLE = OpenApiExample(
    "Two tracked copies",
    value={
        "id": 17,
        "recipients": [
            {
                "email": "anna@client.example",
                "tracked": True,
                "reason": None,
                "html": '<html><body><p>Hello! Here is <a href="https://track.example/t/c/EgEBuVx3…">the price '
                'list</a>.</p><img src="https://track.example/t/o/EQGR2…gif" width="1" height="1" alt="" />'
                "</body></html>",
                "pixel_url": "https://track.example/t/o/EQGR2…gif",
                "links": [{"url": "https://shop.example/price", "tracked_url": "https://track.example/t/c/EgEBuVx3…"}],
            }
        ],
        "text": {"tracked": False, "note": s.PLAIN_TEXT_NOTE},
    },
    response_only=True,
)
OPTED_OUT_HTML = (
    '<html><body><p>Hello! Here is <a href="https://shop.example/price">the price list</a>.</p></body></html>'
)
ALL_OPTED_OUT_EXAMPLE = OpenApiExample(
    "Every recipient opted out",
    description="The message is stored (its id works with `GET /api/v1/messages/{id}`, with no recipients and "
    "zero figures); each recipient gets the HTML as it was sent in, to send untracked.",
    value={
        "id": 18,
        "recipients": [
            {
                "email": "boris@client.example",
                "tracked": False,
                "reason": "opted_out",
                "html": OPTED_OUT_HTML,
                "pixel_url": None,
                "links": [],
            }
        ],
        "text": None,
    },
    response_only=True,
)
DETAIL_EXAMPLE = OpenApiExample(
    "A message opened and clicked",
    value={
        "id": 17,
        "origin": "api",
        "subject": "Your price list",
        "campaign": "autumn",
        "lead": 42,
        "message_id": "",
        "created_at": "2026-10-01T12:05:00Z",
        "totals": {
            "recipients": 1,
            "delivered": 0,
            "opens": {"human": 1, "machine": 1, "inferred": 0, "machine_by_kind": {"apple_mpp": 1}},
            "clicks": {"human": 1, "machine": 0},
            "replies": 0,
            "first_open_at": "2026-10-01T12:20:00Z",
            "last_open_at": "2026-10-01T12:20:00Z",
            "devices": {"mobile": 1},
        },
        "recipients": [
            {
                "email": "anna@client.example",
                "open_state": "person",
                "delivered_at": None,
                "first_opened_at": "2026-10-01T12:20:00Z",
                "last_opened_at": "2026-10-01T12:20:00Z",
                "replied_at": None,
                "events": [
                    {
                        "kind": "open",
                        "verdict": "apple_mpp",
                        "probable": False,
                        "inferred": False,
                        "reason": "Mozilla/5.0 from Apple's network",
                        "at": "2026-10-01T12:05:09Z",
                        "url": None,
                        "device_type": "",
                        "ip_truncated": "104.28.100.0",
                        "user_agent": "Mozilla/5.0",
                        "method": "GET",
                    },
                    {
                        "kind": "click",
                        "verdict": "human",
                        "probable": False,
                        "inferred": False,
                        "reason": "",
                        "at": "2026-10-01T12:25:00Z",
                        "url": "https://shop.example/price",
                        "device_type": "mobile",
                        "ip_truncated": "203.0.113.0",
                        "user_agent": "Mozilla/5.0 (iPhone; …)",
                        "method": "GET",
                    },
                ],
            }
        ],
        "links": [{"url": "https://shop.example/price", "position": 0, "human": 1, "machine": 0}],
    },
    response_only=True,
)


class MessageListView(ApiView):
    serializer_class = s.MessageSerializer

    def cursor_ordering(self, request):
        return ("-created_at", "-id")

    @api_schema(
        summary="Messages with their figures",
        description="Newest first. `campaign` narrows the list to one campaign; `totals` sums every listed "
        "message (all pages). HEAD requests are never counted; machine events are counted apart.",
        parameters=[s.MessageFilterSerializer],
        responses={200: s.MessageSerializer(many=True), **_errors(*READ_ERRORS)},
        tags=["messages"],
    )
    def get(self, request):
        query = self.query(s.MessageFilterSerializer)
        campaign = query.get("campaign")
        messages = selectors.project_messages(self.project, campaign)
        page = self.paginate_queryset(messages)
        figures = selectors.totals([m.pk for m in page])
        data = s.MessageSerializer(page, many=True, context={"totals": figures}).data
        response = self.get_paginated_response(data)
        every = selectors.totals(list(messages.values_list("pk", flat=True)))
        response.data["totals"] = s.TotalsSerializer(selectors.summed(list(every.values()))).data
        response.data["campaign"] = campaign
        return response

    @api_schema(
        summary="Track a letter",
        description="Registers the message and answers one copy of the HTML per recipient, each with its own "
        "pixel and every http(s) link rewritten to a signed redirect. Left alone: mailto:, tel:, anchors, links "
        "marked `data-emailtrack-skip` (unsubscribe), links in `<style>` and comments (Outlook's conditional "
        "comments too). Recipients on the project's opt-out list get the HTML unchanged, with `tracked: false` and "
        "`reason: opted_out`, and nothing about them is stored; the message is stored all the same, so the answer "
        "always carries its `id`, even when every recipient opted out. "
        f"HTML over {settings.ENGAGEMENT_MAX_HTML_BYTES} bytes: 413. Tracking switched off: 409.",
        request=s.MessageCreateSerializer,
        responses={
            201: OpenApiResponse(s.MessageCreatedSerializer, examples=[CREATED_EXAMPLE, ALL_OPTED_OUT_EXAMPLE]),
            **_errors(400, 401, 403, 429),
            404: OpenApiResponse(ErrorSerializer, description="The `lead` is not one of this project's leads."),
            409: OpenApiResponse(ErrorSerializer, description="Tracking is off for the project (`tracking_off`)."),
            413: OpenApiResponse(ErrorSerializer, description="The letter is too large (`too_large`)."),
        },
        tags=["messages"],
    )
    def post(self, request):
        given = s.MessageCreateSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        data = given.validated_data
        lead_id = data.get("lead")
        if lead_id is not None and not Lead.objects.filter(project=self.project, pk=lead_id).exists():
            raise exceptions.NotFound("No such lead in this project.")
        try:
            tracked = services.message_track(
                project_id=self.project.pk,
                origin=Origin.API,
                html=data["html"],
                recipients=data["recipients"],
                subject=data["subject"],
                has_text=bool(data["text"]),
                campaign=data["campaign"],
                lead_id=lead_id,
            )
        except services.EngagementError as error:
            if error.status == 413:
                raise PayloadTooLarge(error.message) from None
            if error.code == "tracking_off":
                raise TrackingOff() from None
            raise exceptions.ValidationError({"html": [error.message]}) from None
        answer = {
            "id": tracked.message.pk,
            "recipients": [
                {
                    "email": copy.email,
                    "tracked": copy.recipient is not None,
                    "reason": copy.untracked_reason,
                    "html": copy.html,
                    "pixel_url": copy.pixel_url,
                    "links": [{"url": url, "tracked_url": tracked_url} for url, tracked_url in copy.links],
                }
                for copy in tracked.copies
            ],
            "text": {"tracked": False, "note": s.PLAIN_TEXT_NOTE} if data["text"] else None,
        }
        return Response(answer, status=status.HTTP_201_CREATED)


class MessageDetailView(ApiView):
    serializer_class = s.MessageDetailSerializer
    noun = "message"

    @api_schema(
        summary="A message with each recipient's events and its figures",
        responses={
            200: OpenApiResponse(s.MessageDetailSerializer, examples=[DETAIL_EXAMPLE]),
            **_errors(401, 404, 429),
        },
        tags=["messages"],
    )
    def get(self, request, message_id: int):
        message = self.get_object_or_404(selectors.project_message(self.project, message_id))
        context = {
            "totals": selectors.totals([message.pk]),
            "recipients": selectors.recipients_with_events(message),
            "links": selectors.link_clicks(message),
        }
        return Response(s.MessageDetailSerializer(message, context=context).data)
