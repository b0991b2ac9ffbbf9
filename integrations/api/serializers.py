"""What the API shows and accepts. Output fields are declared one by one (no
`__all__`), so a new model field, or a secret, never appears by accident."""

from django.core.validators import RegexValidator
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from attribution.models import Lead, MatchKind
from costs.response import lead_response_seconds, response_seconds
from substitution import pools
from tracker.models import Channel

NO_NUL = RegexValidator(r"^[^\x00]*$", "Text must not contain NUL characters.")
# A tag: no NUL, and not empty or only spaces (spaces around it are dropped).
TAG = RegexValidator(r"^\s*[^\s\x00][^\x00]*$", "A tag must have a visible character and no NUL characters.")
AMOUNT_SCHEMA = {
    "type": "string",
    "pattern": r"^\d{1,12}(\.\d{1,2})?$",
    "nullable": True,
    "example": "1500.00",
    "description": "Up to 999999999999.99; null clears it. A JSON number is accepted too.",
}


class TextField(serializers.CharField):
    """Text that PostgreSQL can store: no NUL (the validator also puts that in
    the schema) and no lone surrogates, which JSON can carry but UTF-8 cannot."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators.append(NO_NUL)

    def to_internal_value(self, data):
        value = super().to_internal_value(data)
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise serializers.ValidationError("Text must be valid Unicode.") from None
        return value


class ErrorSerializer(serializers.Serializer):
    error = serializers.CharField(help_text="What went wrong, for a person.")
    code = serializers.CharField(help_text="A stable machine-readable code, e.g. `not_found`, `invalid`, `throttled`.")
    fields = serializers.DictField(
        required=False, help_text="On `invalid`: the messages for each field that was wrong."
    )


class LeadSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    project = serializers.IntegerField(source="project_id")
    site = serializers.IntegerField(source="site_id", allow_null=True, help_text="The site the visitor was on")
    created_at = serializers.DateTimeField(help_text="Arrival of the lead's first letter")
    last_letter_at = serializers.DateTimeField()
    updated_at = serializers.DateTimeField(help_text="Last change of any kind; use with `updated_since`")
    sender_email = serializers.CharField()
    sender_name = serializers.CharField()
    subject = serializers.CharField()
    recipient = serializers.CharField(help_text="The tracked address the letter was sent to")
    match_kind = serializers.ChoiceField(choices=MatchKind.choices, help_text="How the letter was matched")
    first_contact = serializers.BooleanField(help_text="False: the sender had written to the project before")
    status = serializers.ChoiceField(choices=Lead.Status.choices)
    tags = serializers.SerializerMethodField()
    comment = serializers.CharField()
    response_seconds = serializers.SerializerMethodField(
        help_text="Manager response time: from the first letter to the first reply read from a Sent folder; "
        "null: no reply yet"
    )
    deal_amount = serializers.DecimalField(max_digits=14, decimal_places=2, allow_null=True)
    channel = serializers.ChoiceField(choices=Channel.choices)
    source = serializers.CharField()
    medium = serializers.CharField()
    campaign = serializers.CharField()
    term = serializers.CharField()
    content = serializers.CharField()
    keyword = serializers.CharField()
    landing_url = serializers.CharField()
    referrer = serializers.CharField()
    device_type = serializers.CharField()
    country = serializers.CharField()
    city = serializers.CharField()

    @extend_schema_field(serializers.IntegerField(allow_null=True))
    def get_response_seconds(self, lead):
        if hasattr(lead, "first_reply_at"):  # read with the list
            return response_seconds(lead.created_at, lead.first_reply_at)
        return lead_response_seconds([lead.pk]).get(lead.pk)

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_tags(self, lead) -> list[str]:
        return sorted(tag.name for tag in lead.tags.all())


class RecipientsSerializer(serializers.Serializer):
    delivered_to = serializers.ListField(child=serializers.CharField())
    to = serializers.ListField(child=serializers.CharField())
    cc = serializers.ListField(child=serializers.CharField())


class AttachmentSerializer(serializers.Serializer):
    name = serializers.CharField()
    type = serializers.CharField()
    size = serializers.IntegerField()


def _strings(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value if item]
    return []


class LetterSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    mailbox = serializers.IntegerField(source="mailbox_id")
    received_at = serializers.DateTimeField(help_text="Arrival in the mailbox (the attribution time)")
    date_header = serializers.DateTimeField(allow_null=True, help_text="The sender's Date header: shown, not trusted")
    sender_email = serializers.CharField()
    sender_name = serializers.CharField()
    subject = serializers.CharField()
    recipients = serializers.SerializerMethodField()
    text = serializers.CharField(help_text="Plain text, up to the mailbox's limit; never HTML")
    attachments = serializers.SerializerMethodField()

    @extend_schema_field(RecipientsSerializer)
    def get_recipients(self, letter) -> dict:
        value = letter.recipients if isinstance(letter.recipients, dict) else {}
        return {key: _strings(value.get(key)) for key in ("delivered_to", "to", "cc")}

    @extend_schema_field(AttachmentSerializer(many=True))
    def get_attachments(self, letter) -> list[dict]:
        found = letter.attachments if isinstance(letter.attachments, list) else []
        return [
            {"name": str(a.get("name", "")), "type": str(a.get("type", "")), "size": int(a.get("size") or 0)}
            for a in found
            if isinstance(a, dict)
        ]


class SessionSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    started_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    returning_visitor = serializers.BooleanField()
    channel = serializers.ChoiceField(choices=Channel.choices)
    source = serializers.CharField()
    keyword = serializers.CharField()
    search_engine = serializers.CharField()
    landing_url = serializers.CharField()
    referrer = serializers.CharField()
    utm_source = serializers.CharField()
    utm_medium = serializers.CharField()
    utm_campaign = serializers.CharField()
    utm_term = serializers.CharField()
    utm_content = serializers.CharField()
    click_ids = serializers.DictField(child=serializers.CharField())
    page_views = serializers.IntegerField()
    last_urls = serializers.ListField(child=serializers.CharField())
    device_type = serializers.CharField()
    os = serializers.CharField()
    browser = serializers.CharField()
    country = serializers.CharField()
    city = serializers.CharField()
    ga_client_id = serializers.CharField(help_text="Google Analytics client id, when the visitor had one")
    ym_client_id = serializers.CharField(help_text="Yandex Metrica ClientID, when the visitor had one")


class LeadDetailSerializer(LeadSerializer):
    letters = LetterSerializer(many=True, source="api_letters")
    session = SessionSerializer(allow_null=True)


@extend_schema_field(AMOUNT_SCHEMA)
class AmountField(serializers.DecimalField):
    pass


class CommentField(TextField):
    """Free text: NUL characters (which nobody types) are dropped rather than refused."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.validators = [v for v in self.validators if v is not NO_NUL]

    def to_internal_value(self, data):
        if isinstance(data, str):
            data = data.replace("\x00", "")
        return super().to_internal_value(data)


class LeadChangeSerializer(serializers.Serializer):
    """Only the fields sent are changed."""

    status = serializers.ChoiceField(choices=Lead.Status.choices, required=False)
    tags = serializers.ListField(
        child=TextField(max_length=50, validators=[TAG]),
        max_length=20,
        required=False,
        help_text="Replaces the lead's tags",
    )
    comment = CommentField(max_length=5000, allow_blank=True, required=False, trim_whitespace=False)
    deal_amount = AmountField(
        max_digits=14, decimal_places=2, min_value=0, allow_null=True, required=False, coerce_to_string=True
    )


class LeadFilterSerializer(serializers.Serializer):
    """The journal's filters, for pulling leads."""

    ORDERINGS = ["-created_at", "created_at", "-updated_at", "updated_at"]

    created_after = serializers.DateTimeField(required=False, help_text="Leads whose first letter came at or after")
    created_before = serializers.DateTimeField(required=False, help_text="… and before this")
    updated_since = serializers.DateTimeField(
        required=False, help_text="Leads created or changed at or after this (incremental pulls)"
    )
    site = serializers.IntegerField(required=False, min_value=1, max_value=2**62)
    channel = serializers.ChoiceField(choices=Channel.choices, required=False)
    source = TextField(required=False, max_length=200)
    medium = TextField(required=False, max_length=200)
    campaign = TextField(required=False, max_length=200)
    first_contact = serializers.BooleanField(required=False, help_text="true: first contact; false: returning")
    match_kind = serializers.ChoiceField(choices=MatchKind.choices, required=False)
    status = serializers.ChoiceField(choices=Lead.Status.choices, required=False)
    tag = TextField(required=False, max_length=50)
    q = TextField(required=False, max_length=200, help_text="Search in sender address, sender name and subject")
    ordering = serializers.ChoiceField(
        choices=ORDERINGS,
        required=False,
        default="-created_at",
        help_text="Use `updated_at` with `updated_since` for incremental pulls",
    )


class SiteSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    site_key = serializers.CharField(help_text="Public: it is in the snippet tag")
    original_email = serializers.CharField()
    active = serializers.BooleanField()
    created_at = serializers.DateTimeField()
    domains = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_domains(self, site) -> list[str]:
        return sorted(domain.domain for domain in site.domains.all())


class PoolPeakSerializer(serializers.Serializer):
    date = serializers.DateField()
    peak = serializers.IntegerField(help_text="Most leases held at once that day")


class PoolHealthSerializer(serializers.Serializer):
    size = serializers.IntegerField(help_text="Active addresses")
    live = serializers.IntegerField(help_text="Leases live now")
    peaks = PoolPeakSerializer(many=True, help_text="The last 7 days, in the project's time zone")
    exhaustions = serializers.IntegerField(help_text="Times the pool ran dry in the last 7 days")
    recommended = serializers.IntegerField(
        help_text="Recommended size: simulated on the pool's own traffic where a fresh simulation exists, "
        "else the peak of the last 7 days with a 25% margin (see recommended_basis)"
    )
    recommended_basis = serializers.ChoiceField(
        choices=[pools.SIMULATED, pools.PEAK],
        help_text="What the recommended size rests on: a simulation of the pool's traffic, or its peak",
    )
    too_small = serializers.BooleanField()


class PoolSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    base_email = serializers.CharField()
    hold_minutes = serializers.IntegerField()
    exhausted_policy = serializers.CharField()
    created_at = serializers.DateTimeField()
    health = serializers.SerializerMethodField()

    @extend_schema_field(PoolHealthSerializer)
    def get_health(self, pool) -> dict:
        health = self.context["health"](pool)
        return PoolHealthSerializer(
            {
                "size": health.size,
                "live": health.live,
                "peaks": [{"date": day, "peak": peak} for day, peak in health.peaks],
                "exhaustions": health.exhaustions,
                "recommended": health.recommended,
                "recommended_basis": health.basis,
                "too_small": health.too_small,
            }
        ).data


class StaticAddressSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    email = serializers.CharField()
    channel = serializers.CharField()
    source = serializers.CharField()
    medium = serializers.CharField()
    campaign = serializers.CharField()
    active = serializers.BooleanField()


class MailboxSerializer(serializers.Serializer):
    """Sync state only: the password (and anything else secret) is never shown."""

    id = serializers.IntegerField()
    name = serializers.CharField()
    host = serializers.CharField()
    port = serializers.IntegerField()
    security = serializers.CharField()
    username = serializers.CharField()
    folders = serializers.CharField()
    active = serializers.BooleanField()
    state = serializers.CharField(help_text="new, ok or failing")
    last_sync_at = serializers.DateTimeField(allow_null=True)
    last_success_at = serializers.DateTimeField(allow_null=True)
    next_sync_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField(help_text="Why the last sync failed (empty when it worked)")
    last_error_at = serializers.DateTimeField(allow_null=True)
    failure_count = serializers.IntegerField(help_text="Failed syncs in a row")
    created_at = serializers.DateTimeField()


class ProjectSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    time_zone = serializers.CharField()
    key_name = serializers.CharField(help_text="The name of the API key used")
    key_read_only = serializers.BooleanField()


class SummaryFilterSerializer(serializers.Serializer):
    date_from = serializers.DateField(required=False, help_text="First day (project time zone); default 29 days ago")
    date_to = serializers.DateField(required=False, help_text="Last day, included; default today")
    group_by = serializers.ChoiceField(
        choices=["channel", "source", "medium", "campaign", "keyword", "site", "block", "mailbox"],
        required=False,
        default="channel",
        help_text="channel; source (source and medium); medium; campaign (source, medium and campaign); "
        "keyword; site; block; mailbox (the replying address). Costs are split by channel, source, medium and "
        "campaign only.",
    )

    def validate(self, data):
        if data.get("date_from") and data.get("date_to") and data["date_from"] > data["date_to"]:
            raise serializers.ValidationError({"date_from": ["Must not be after date_to."]})
        return data


MONEY = {"max_digits": 20, "decimal_places": 2, "allow_null": True}


class SummaryRowSerializer(serializers.Serializer):
    channel = serializers.CharField(allow_null=True)
    source = serializers.CharField(allow_null=True, help_text="Lowercase, as costs are matched")
    medium = serializers.CharField(allow_null=True, help_text="Lowercase")
    campaign = serializers.CharField(allow_null=True, help_text="Lowercase")
    keyword = serializers.CharField(allow_null=True, required=False)
    site = serializers.IntegerField(allow_null=True, required=False, help_text="Site id")
    block = serializers.IntegerField(allow_null=True, required=False, help_text="Block id")
    mailbox = serializers.IntegerField(
        allow_null=True,
        required=False,
        help_text="Mailbox id: the one the first letter reached, whose Sent folder "
        "holds the replies (so also the replying address)",
    )
    sessions = serializers.IntegerField(
        allow_null=True, help_text="Visits that started in the period; null by block (a visit has no block)"
    )
    leads = serializers.IntegerField()
    first_contact = serializers.IntegerField(help_text="Leads from senders new to the project")
    won = serializers.IntegerField(help_text="Deals: leads marked won")
    deal_amount = serializers.DecimalField(max_digits=20, decimal_places=2, help_text="Sum over the leads")
    conversion = serializers.FloatField(allow_null=True, help_text="Leads per 100 sessions; null without sessions")
    cost = serializers.DecimalField(
        **MONEY,
        help_text="Advertising cost in the project's currency; null where costs are not split (keyword, site, block)",
    )
    cost_per_lead = serializers.DecimalField(**MONEY)
    cost_per_deal = serializers.DecimalField(**MONEY)
    roi = serializers.FloatField(allow_null=True, help_text="(deal amount - cost) / cost, per cent; null without cost")
    response_median_seconds = serializers.IntegerField(
        allow_null=True, help_text="Median time from a lead's first letter to the first reply; null: no replies"
    )
    answered_within_1h = serializers.FloatField(
        allow_null=True, help_text="Per cent of the leads (unanswered ones too)"
    )
    answered_within_1d = serializers.FloatField(
        allow_null=True, help_text="Per cent of the leads (unanswered ones too)"
    )
    unanswered = serializers.IntegerField(help_text="Leads with no reply yet")


class SummarySerializer(serializers.Serializer):
    date_from = serializers.DateField()
    date_to = serializers.DateField()
    time_zone = serializers.CharField()
    group_by = serializers.CharField()
    currency = serializers.CharField(help_text="Of costs and amounts (ISO 4217)")
    total = SummaryRowSerializer()
    rows = SummaryRowSerializer(many=True)
