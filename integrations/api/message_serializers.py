"""What the messages API (engagement: tracked letters) shows and accepts."""

from django.conf import settings
from drf_spectacular.utils import OpenApiExample, extend_schema_serializer
from rest_framework import serializers

from engagement.models import EventKind, Origin, Verdict
from engagement.services import OPTED_OUT

from .serializers import TextField

PLAIN_TEXT_NOTE = "A plain-text part cannot carry a pixel: it is not tracked and its links are left as they are."


@extend_schema_serializer(
    examples=[
        OpenApiExample(
            "A letter to two recipients",
            value={
                "subject": "Your price list",
                "html": '<html><body><p>Hello! Here is <a href="https://shop.example/price">the price list</a>.</p>'
                "</body></html>",
                "text": "Hello! Here is the price list: https://shop.example/price",
                "recipients": ["anna@client.example", "boris@client.example"],
                "campaign": "autumn",
                "lead": 42,
            },
            request_only=True,
        )
    ]
)
class MessageCreateSerializer(serializers.Serializer):
    subject = TextField(max_length=500, allow_blank=True, default="")
    html = TextField(
        trim_whitespace=False,
        help_text="The letter's HTML; each recipient gets a copy with their own pixel and tracked links.",
    )
    text = TextField(required=False, allow_blank=True, trim_whitespace=False, default="", help_text=PLAIN_TEXT_NOTE)
    recipients = serializers.ListField(
        child=serializers.EmailField(max_length=320), min_length=1, max_length=settings.ENGAGEMENT_MAX_RECIPIENTS
    )
    campaign = TextField(max_length=200, required=False, allow_blank=True, default="")
    lead = serializers.IntegerField(
        required=False, allow_null=True, min_value=1, max_value=2**62, help_text="A lead of the project"
    )


class LinkSerializer(serializers.Serializer):
    url = serializers.CharField(help_text="The link as written in the letter")
    tracked_url = serializers.CharField(help_text="This recipient's signed redirect to it")


class RecipientCopySerializer(serializers.Serializer):
    email = serializers.CharField()
    tracked = serializers.BooleanField(
        help_text="False: the HTML is returned unchanged (no pixel, no tracked link), ready to send as it is; "
        "`reason` says why"
    )
    reason = serializers.ChoiceField(
        choices=[(OPTED_OUT, OPTED_OUT)],
        allow_null=True,
        help_text="Why the copy is not tracked: `opted_out`, the recipient is on the project's opt-out list "
        "(nothing about them is stored). Null for a tracked copy.",
    )
    html = serializers.CharField(help_text="The HTML to send to this recipient")
    pixel_url = serializers.CharField(allow_null=True)
    links = LinkSerializer(many=True)


class TextPartSerializer(serializers.Serializer):
    tracked = serializers.BooleanField()
    note = serializers.CharField()


class MessageCreatedSerializer(serializers.Serializer):
    id = serializers.IntegerField(
        help_text="The message, stored even when every recipient opted out (then with no tracked recipient)"
    )
    recipients = RecipientCopySerializer(many=True)
    text = TextPartSerializer(allow_null=True, help_text="Present when a plain-text part was given")


class OpensSerializer(serializers.Serializer):
    human = serializers.IntegerField(help_text="Recipients who opened it (a person's open)")
    machine = serializers.IntegerField(help_text="Opens by machines (proxies' prefetch, MPP, scanners, …)")
    inferred = serializers.IntegerField(help_text="Recipients whose open is inferred from a click or reply")
    machine_by_kind = serializers.DictField(child=serializers.IntegerField(), help_text="Machine opens by verdict")


class ClicksSerializer(serializers.Serializer):
    human = serializers.IntegerField()
    machine = serializers.IntegerField()


class TotalsSerializer(serializers.Serializer):
    recipients = serializers.IntegerField()
    delivered = serializers.IntegerField(help_text="Copies the upstream server accepted (SMTP relay)")
    opens = OpensSerializer()
    clicks = ClicksSerializer()
    replies = serializers.IntegerField()
    first_open_at = serializers.DateTimeField(allow_null=True)
    last_open_at = serializers.DateTimeField(allow_null=True)
    devices = serializers.DictField(child=serializers.IntegerField(), help_text="People's opens by device type")


class EventSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=EventKind.choices)
    verdict = serializers.ChoiceField(choices=Verdict.choices)
    probable = serializers.BooleanField()
    inferred = serializers.BooleanField()
    reason = serializers.CharField()
    at = serializers.DateTimeField()
    url = serializers.CharField(source="link.url", allow_null=True, default=None)
    device_type = serializers.CharField()
    ip_truncated = serializers.CharField(allow_null=True)
    user_agent = serializers.CharField()
    method = serializers.CharField()


class RecipientSerializer(serializers.Serializer):
    email = serializers.CharField()
    open_state = serializers.CharField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    first_opened_at = serializers.DateTimeField(allow_null=True)
    last_opened_at = serializers.DateTimeField(allow_null=True)
    replied_at = serializers.DateTimeField(allow_null=True)
    events = EventSerializer(many=True, source="events.all")


class LinkClicksSerializer(serializers.Serializer):
    url = serializers.CharField()
    position = serializers.IntegerField()
    human = serializers.IntegerField()
    machine = serializers.IntegerField()


class MessageSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    origin = serializers.ChoiceField(choices=Origin.choices)
    subject = serializers.CharField()
    campaign = serializers.CharField()
    lead = serializers.IntegerField(source="lead_id", allow_null=True)
    message_id = serializers.CharField(help_text="The letter's Message-ID header (relay)")
    created_at = serializers.DateTimeField()
    totals = serializers.SerializerMethodField()

    def get_totals(self, message) -> TotalsSerializer:
        return TotalsSerializer(self.context["totals"][message.pk]).data


class MessageDetailSerializer(MessageSerializer):
    recipients = serializers.SerializerMethodField()
    links = serializers.SerializerMethodField()

    def get_recipients(self, message) -> RecipientSerializer(many=True):
        return RecipientSerializer(self.context["recipients"], many=True).data

    def get_links(self, message) -> LinkClicksSerializer(many=True):
        return LinkClicksSerializer(self.context["links"], many=True).data


class MessageFilterSerializer(serializers.Serializer):
    campaign = TextField(required=False, max_length=200, allow_blank=True, help_text="Only this campaign's messages")


class MessageListTotalsSerializer(serializers.Serializer):
    campaign = serializers.CharField(allow_null=True)
    totals = TotalsSerializer(help_text="All the listed messages (every page) summed")
