"""Advertising costs: a CSV (our layout, Yandex Direct's and Google Ads'
exports, mapped by column name) previewed then imported in the journal and in
admin, bad rows reported by line with nothing half-imported; POST
/api/v1/costs idempotent per day + source + medium + campaign."""

import re
from datetime import date
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from costs.csv_import import parse_amount, parse_costs
from costs.models import Cost
from costs.services import set_project_currency
from integrations.keys import api_key_create
from projects.models import Membership
from tests.factories import make_setup
from tests.test_journal_support import member

pytestmark = pytest.mark.django_db

OWN_CSV = (
    "date,source,medium,campaign,cost\n"
    "2025-07-01,yandex,cpc,autumn,1000.50\n"
    "2025-07-01,google,cpc,brand,200\n"
    '2025-07-02,Yandex,CPC,autumn,"1 234,50"\n'
)
YANDEX_CSV = (
    "Статистика по кампаниям за период 01.07.2025 - 02.07.2025\n"
    "Дата;Кампания;Показы;Клики;Расход (руб.)\n"
    "01.07.2025;autumn;1000;50;1 000,00\n"
    "01.07.2025;autumn;500;10;250,50\n"
    "02.07.2025;spring;300;5;99,90\n"
    "Итого;;1800;65;1 350,40\n"
)
GOOGLE_CSV = (
    "Campaign report\n"
    '"July 1, 2025 - July 2, 2025"\n'
    "Day,Campaign,Currency code,Impr.,Clicks,Cost\n"
    '2025-07-01,brand,USD,100,4,"1,200.00"\n'
    "2025-07-02,brand,USD,90,3,15.25\n"
)


# --- Reading the layouts ----------------------------------------------------------


def test_it_reads_our_own_layout_and_lowercases_source_and_medium():
    parsed = parse_costs(OWN_CSV.encode())
    assert parsed.layout == "own" and parsed.errors == []
    by_key = {row.key: row.amount for row in parsed.rows}
    assert by_key == {
        (date(2025, 7, 1), "yandex", "cpc", "autumn"): Decimal("1000.50"),
        (date(2025, 7, 1), "google", "cpc", "brand"): Decimal("200.00"),
        (date(2025, 7, 2), "yandex", "cpc", "autumn"): Decimal("1234.50"),
    }


def test_it_maps_a_yandex_direct_export_by_column_name_summing_rows_and_skipping_the_total():
    parsed = parse_costs(YANDEX_CSV.encode("cp1251"))
    assert parsed.layout == "yandex_direct" and parsed.errors == []
    assert {row.key: row.amount for row in parsed.rows} == {
        (date(2025, 7, 1), "yandex", "cpc", "autumn"): Decimal("1250.50"),
        (date(2025, 7, 2), "yandex", "cpc", "spring"): Decimal("99.90"),
    }


def test_it_maps_a_google_ads_export_by_column_name():
    parsed = parse_costs(GOOGLE_CSV.encode())
    assert parsed.layout == "google_ads" and parsed.errors == []
    assert {row.key: row.amount for row in parsed.rows} == {
        (date(2025, 7, 1), "google", "cpc", "brand"): Decimal("1200.00"),
        (date(2025, 7, 2), "google", "cpc", "brand"): Decimal("15.25"),
    }


def test_bad_rows_are_reported_with_their_line_numbers():
    text = OWN_CSV + "2025-13-01,yandex,cpc,x,5\n\n2025-07-03,yandex,cpc,x,-5\n2025-07-03,,cpc,x,5\n"
    parsed = parse_costs(text.encode())
    assert [line for line, _ in parsed.errors] == [5, 7, 8]
    assert "not a date" in parsed.errors[0][1]
    assert "not an amount" in parsed.errors[1][1]
    assert "source" in parsed.errors[2][1]
    assert not parsed.ok


def test_a_file_without_a_known_header_says_which_columns_it_needs():
    parsed = parse_costs(b"a,b,c\n1,2,3\n")
    assert parsed.errors and parsed.errors[0][0] == 0 and "campaign" in parsed.errors[0][1]


@pytest.mark.parametrize(
    ("text", "value"), [("1 234,56", "1234.56"), ("1,234.56", "1234.56"), ("12", "12.00"), ("0,5 ₽", "0.50")]
)
def test_amounts_are_read_as_people_write_them(text, value):
    assert parse_amount(text) == Decimal(value)


# --- The journal's upload ----------------------------------------------------------


@pytest.fixture
def shop(client):
    setup = make_setup()
    set_project_currency(project=setup.project, currency="rub")
    client.force_login(member("mark", setup.project))
    return setup


def upload(client, project, text: str, name="costs.csv"):
    return client.post(
        f"/journal/costs/?project={project.pk}", {"file": SimpleUploadedFile(name, text.encode(), "text/csv")}
    )


def confirm(client, project, page):
    token = re.search(r'name="token" value="([^"]+)"', page.content.decode()).group(1)
    return client.post(f"/journal/costs/?project={project.pk}", {"token": token, "confirm": "1"})


def test_the_journal_shows_a_preview_and_imports_only_on_confirmation(client, shop):
    page = upload(client, shop.project, OWN_CSV)
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="cost-rows"' in html and "2435.00" in html and "RUB" in html
    assert not Cost.objects.exists()
    done = confirm(client, shop.project, page)
    assert done.status_code == 302
    assert Cost.objects.filter(project=shop.project).count() == 3
    assert sum(c.amount for c in Cost.objects.all()) == Decimal("2435.00")
    assert set(Cost.objects.values_list("origin", flat=True)) == {Cost.Origin.CSV}


def test_a_bad_row_is_shown_by_line_and_nothing_is_imported(client, shop):
    page = upload(client, shop.project, OWN_CSV + "2025-07-05,yandex,cpc,autumn,lots\n")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'data-line="5"' in html and "lots" in html
    assert 'name="token"' not in html
    assert not Cost.objects.exists()


def test_importing_the_same_file_again_replaces_rather_than_adds(client, shop):
    confirm(client, shop.project, upload(client, shop.project, OWN_CSV))
    confirm(client, shop.project, upload(client, shop.project, OWN_CSV.replace("1000.50", "900")))
    assert Cost.objects.count() == 3
    assert sum(c.amount for c in Cost.objects.all()) == Decimal("2334.50")


def test_a_token_of_another_project_imports_nothing(client, shop):
    other = make_setup(name="Other")
    Membership.objects.create(project=other.project, user=shop.project.memberships.get().user)
    page = upload(client, shop.project, OWN_CSV)
    token = re.search(r'name="token" value="([^"]+)"', page.content.decode()).group(1)
    client.post(f"/journal/costs/?project={other.project.pk}", {"token": token, "confirm": "1"})
    assert not Cost.objects.exists()


def test_the_admin_upload_previews_and_imports_into_a_managed_project(client):
    setup = make_setup()
    client.force_login(member("boss", setup.project, role=Membership.Role.MANAGER))
    page = client.post(
        "/admin/costs/cost/upload/",
        {"project": setup.project.pk, "file": SimpleUploadedFile("y.csv", YANDEX_CSV.encode(), "text/csv")},
    )
    assert page.status_code == 200 and "1250.50" in page.content.decode()
    assert not Cost.objects.exists()
    done = confirm_admin(client, page)
    assert done.status_code == 302
    assert Cost.objects.filter(project=setup.project, source="yandex").count() == 2


def confirm_admin(client, page):
    token = re.search(r'name="token" value="([^"]+)"', page.content.decode()).group(1)
    return client.post("/admin/costs/cost/upload/", {"token": token, "confirm": "1"})


def test_the_admin_upload_refuses_a_project_the_person_does_not_manage(client):
    setup = make_setup()
    other = make_setup(name="Other")
    client.force_login(member("boss", setup.project, role=Membership.Role.MANAGER))
    page = client.post(
        "/admin/costs/cost/upload/",
        {"project": other.project.pk, "file": SimpleUploadedFile("y.csv", OWN_CSV.encode(), "text/csv")},
    )
    assert 'name="token"' not in page.content.decode()
    assert not Cost.objects.exists()


# --- POST /api/v1/costs ----------------------------------------------------------


@pytest.fixture
def api(db):
    setup = make_setup()
    _row, key = api_key_create(project=setup.project, name="Costs script")
    return setup, {"HTTP_AUTHORIZATION": f"Bearer {key}"}


BODY = {
    "costs": [
        {"date": "2025-07-01", "source": "Yandex", "medium": "cpc", "campaign": "autumn", "amount": "100.10"},
        {"date": "2025-07-01", "source": "google", "medium": "cpc", "campaign": "brand", "amount": "50"},
    ]
}


def test_posting_costs_is_idempotent_per_day_source_medium_and_campaign(client, api):
    setup, auth = api
    first = client.post("/api/v1/costs", BODY, content_type="application/json", **auth)
    assert first.status_code == 200
    assert first.json() == {"created": 2, "updated": 0, "total": "150.10", "currency": "RUB"}
    again = client.post("/api/v1/costs", BODY, content_type="application/json", **auth)
    assert again.json()["created"] == 0 and again.json()["updated"] == 2
    assert Cost.objects.filter(project=setup.project).count() == 2
    assert Cost.objects.get(source="yandex").amount == Decimal("100.10")


def test_an_invalid_row_is_a_400_and_stores_nothing(client, api):
    _setup, auth = api
    body = {"costs": [*BODY["costs"], {"date": "2025-07-02", "source": "x", "amount": "-1"}]}
    response = client.post("/api/v1/costs", body, content_type="application/json", **auth)
    assert response.status_code == 400
    assert response.json()["code"] == "invalid"
    assert not Cost.objects.exists()


def test_a_read_only_key_may_not_post_costs(client, db):
    setup = make_setup()
    _row, key = api_key_create(project=setup.project, name="Reader", read_only=True)
    response = client.post("/api/v1/costs", BODY, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {key}")
    assert response.status_code == 403
    assert not Cost.objects.exists()


def test_the_schema_declares_the_costs_endpoint_with_an_example(client, api):
    schema = client.get("/api/schema/?format=json").json()
    post = schema["paths"]["/api/v1/costs"]["post"]
    assert {"200", "400", "401", "403", "429"} <= set(post["responses"])
    assert "examples" in post["requestBody"]["content"]["application/json"]


def test_a_key_writes_costs_only_into_its_own_project(client, api):
    setup, auth = api
    other = make_setup(name="Other")
    client.post("/api/v1/costs", BODY, content_type="application/json", **auth)
    assert Cost.objects.filter(project=setup.project).count() == 2
    assert not Cost.objects.filter(project=other.project).exists()


def test_a_binary_or_broken_file_is_an_error_not_a_crash():
    for data in (b"\x00\x01\xff" * 100, b'date,source,cost\n"' + b"x" * 200_000, b""):
        parsed = parse_costs(data)
        assert parsed.errors and not parsed.ok
