"""The costs API: advertising costs per day and source / medium / campaign,
for scripts that pull them from ad networks. Validate, call costs' service."""

from django.core.validators import RegexValidator
from drf_spectacular.utils import OpenApiExample, OpenApiResponse, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response

from costs.csv_import import CostRow
from costs.models import Cost
from costs.services import costs_upsert, project_currency

from .serializers import AMOUNT_SCHEMA, TextField
from .views import ApiView, _errors, api_schema

MAX_ROWS = 5000
# Not empty or only spaces, no NUL.
VISIBLE = RegexValidator(r"^\s*[^\s\x00][^\x00]*$", "Must have a visible character and no NUL characters.")


@extend_schema_field(
    {**{k: v for k, v in AMOUNT_SCHEMA.items() if k != "nullable"}, "description": "Up to 999999999999.99"}
)
class CostAmountField(serializers.DecimalField):
    pass


class CostRowSerializer(serializers.Serializer):
    date = serializers.DateField(help_text="The day, in the project's time zone")
    source = TextField(
        max_length=200, validators=[VISIBLE], help_text="utm_source of the traffic paid for, e.g. `yandex`"
    )
    medium = TextField(max_length=200, required=False, allow_blank=True, default="", help_text="e.g. `cpc`")
    campaign = TextField(max_length=200, required=False, allow_blank=True, default="")
    amount = CostAmountField(
        max_digits=14,
        decimal_places=2,
        min_value=0,
        coerce_to_string=True,
        help_text="What was paid that day, in the project's currency",
    )


class CostUploadSerializer(serializers.Serializer):
    costs = serializers.ListField(
        child=CostRowSerializer(),
        min_length=1,
        max_length=MAX_ROWS,
        help_text="A date, source, medium and campaign given twice: the last one counts.",
    )


class CostResultSerializer(serializers.Serializer):
    created = serializers.IntegerField(help_text="Days and keys that had no cost before")
    updated = serializers.IntegerField(help_text="Days and keys whose cost was replaced")
    total = serializers.DecimalField(max_digits=20, decimal_places=2, help_text="Sum of the amounts sent")
    currency = serializers.CharField(help_text="The project's currency (ISO 4217)")


REQUEST_EXAMPLE = OpenApiExample(
    "Yesterday's costs of two campaigns",
    value={
        "costs": [
            {"date": "2025-07-31", "source": "yandex", "medium": "cpc", "campaign": "autumn", "amount": "1520.40"},
            {"date": "2025-07-31", "source": "google", "medium": "cpc", "campaign": "brand", "amount": "310.00"},
        ]
    },
    request_only=True,
)
RESULT_EXAMPLE = OpenApiExample(
    "Stored", value={"created": 1, "updated": 1, "total": "1830.40", "currency": "RUB"}, response_only=True
)


class CostView(ApiView):
    pagination_class = None
    serializer_class = CostUploadSerializer

    @api_schema(
        summary="Store advertising costs",
        description="Idempotent per date + source + medium + campaign: sending a day again replaces its amount, "
        f"never adds to it. All rows are stored or none (any invalid row: 400). At most {MAX_ROWS} rows a call. "
        "Source and medium are compared lowercase with the leads' utm_source and utm_medium.",
        request=CostUploadSerializer,
        examples=[REQUEST_EXAMPLE],
        responses={
            200: OpenApiResponse(CostResultSerializer, examples=[RESULT_EXAMPLE]),
            **_errors(400, 401, 403, 429),
        },
        tags=["reports"],
    )
    def post(self, request):
        given = CostUploadSerializer(data=request.data)
        given.is_valid(raise_exception=True)
        rows = {}
        for r in given.validated_data["costs"]:
            row = CostRow(
                day=r["date"],
                source=r["source"].strip().lower(),
                medium=r["medium"].strip().lower(),
                campaign=r["campaign"].strip(),
                amount=r["amount"],
            )
            rows[row.key] = row  # the last one of a key counts
        rows = list(rows.values())
        imported = costs_upsert(project=self.project, rows=rows, origin=Cost.Origin.API)
        data = {**imported.__dict__, "currency": project_currency(self.project)}
        return Response(CostResultSerializer(data).data)
