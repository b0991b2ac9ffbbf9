"""The API against its own OpenAPI schema: schemathesis generates requests
(valid and invalid) for every operation and checks that nothing answers 5xx
and that every answer fits the schema. Bounded and derandomized, so it is
fast and gives the same cases on every run."""

from datetime import date

import pytest
import schemathesis
from django.core import signals
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import negative_data_rejection

from integrations.keys import api_key_create
from substitution.models import StaticAddress
from tests.factories import make_setup
from tests.test_api_support import lead_from_visitor, lead_to_main_address, visitor_with_session

MAX_EXAMPLES = 30


@pytest.fixture
def in_process_requests():
    """As Django's test client does: the WSGI app must not close the test's
    database connection (and its open transaction) after each request."""
    signals.request_started.disconnect(close_old_connections)
    signals.request_finished.disconnect(close_old_connections)
    yield
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.fixture
def api_data(db, settings, in_process_requests):
    settings.API_RATE_LIMIT_PER_MINUTE = 1_000_000
    setup = make_setup()
    lead = lead_from_visitor(setup, visitor_with_session(setup, ga_client_id="1.2", utm_campaign="autumn"))
    lead_to_main_address(setup)
    static = StaticAddress.objects.create(project=setup.project, name="Billboard", email="board@shop.test")
    _row, key = api_key_create(project=setup.project, name="schemathesis")
    return {
        "key": key,
        "lead": lead.pk,
        "site": setup.site.pk,
        "pool": setup.pool.pk,
        "static": static.pk,
        "mailbox": setup.mailbox.pk,
    }


# Loaded at import: generating the schema needs no database.
schema = schemathesis.openapi.from_wsgi("/api/schema/?format=json", get_wsgi_application())


@pytest.fixture
def api_schema():
    return schema


@schema.hook
def filter_query(context, query):
    """A summary period that ends before it starts is refused (400); OpenAPI
    cannot say so, so such cases are not offered as valid ones."""
    if context.operation is None or context.operation.path != "/api/v1/summary" or not isinstance(query, dict):
        return True
    try:
        end = date.fromisoformat(query["date_to"]) if query.get("date_to") else date.today()
        start = date.fromisoformat(query["date_from"]) if query.get("date_from") else end
    except (TypeError, ValueError):
        return True
    return start <= end


@schema.parametrize()
@settings(
    max_examples=MAX_EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
)
def test_no_operation_answers_5xx_or_outside_its_schema(case, api_data):
    case.call_and_validate(
        headers={"Authorization": f"Bearer {api_data['key']}"},
        # The key is always sent, so a case that drops the Authorization header
        # is valid by the time it is sent; and unknown query parameters are ignored by design.
        excluded_checks=[negative_data_rejection],
    )


@pytest.mark.django_db
def test_every_real_answer_fits_the_schema(api_data, api_schema):
    """The generated cases seldom hit a real id: here each operation is
    called with the ids that exist, and each 200 is validated too."""
    headers = {"Authorization": f"Bearer {api_data['key']}"}
    calls = [
        ("/api/v1/project", {}),
        ("/api/v1/leads", {}),
        ("/api/v1/leads/{lead_id}", {"lead_id": api_data["lead"]}),
        ("/api/v1/sites", {}),
        ("/api/v1/sites/{id}", {"id": api_data["site"]}),
        ("/api/v1/pools", {}),
        ("/api/v1/pools/{id}", {"id": api_data["pool"]}),
        ("/api/v1/static-addresses", {}),
        ("/api/v1/static-addresses/{id}", {"id": api_data["static"]}),
        ("/api/v1/mailboxes", {}),
        ("/api/v1/mailboxes/{id}", {"id": api_data["mailbox"]}),
        ("/api/v1/summary", {}),
    ]
    for path, parameters in calls:
        case = api_schema[path]["GET"].Case(path_parameters=parameters)
        response = case.call_and_validate(headers=headers)
        assert response.status_code == 200, (path, response.text)
    patch = api_schema["/api/v1/leads/{lead_id}"]["PATCH"].Case(
        path_parameters={"lead_id": api_data["lead"]},
        body={"status": "won", "tags": ["vip"], "comment": "ok", "deal_amount": "10.50"},
        media_type="application/json",
    )
    response = patch.call_and_validate(headers=headers)
    assert response.status_code == 200, response.text
