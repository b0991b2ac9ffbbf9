"""The API's schema and interactive docs: the docs work offline (Swagger UI
comes from our own static files, never a CDN), and the schema and docs
endpoints answer errors in the API's one JSON shape."""

from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest

from integrations.api.schema import SchemaView


class _Assets(HTMLParser):
    def __init__(self):
        super().__init__()
        self.urls = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)


def test_the_docs_page_takes_swagger_ui_from_our_own_static_files(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    parser = _Assets()
    parser.feed(page.content.decode())
    assets = [url for url in parser.urls if not url.startswith("#")]
    assert any(url.endswith("swagger-ui-bundle.js") for url in assets)
    assert any(url.endswith("swagger-ui.css") for url in assets)
    for url in assets:
        parts = urlsplit(url)
        assert not parts.netloc and not parts.scheme, f"{url} is not served by us"
        assert url.startswith("/static/drf_spectacular_sidecar/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        assert b"".join(asset.streaming_content if asset.streaming else [asset.content])


@pytest.mark.parametrize(
    ("method", "url", "headers", "status", "code"),
    [
        ("get", "/api/schema/?format=xml", {}, 404, "not_found"),
        ("post", "/api/schema/", {}, 405, "method_not_allowed"),
        ("get", "/api/schema/", {"HTTP_ACCEPT": "text/html"}, 406, "not_acceptable"),
        ("get", "/api/docs/?format=json", {}, 404, "not_found"),
        ("delete", "/api/docs/", {}, 405, "method_not_allowed"),
    ],
)
def test_schema_and_docs_errors_have_the_api_shape(client, method, url, headers, status, code):
    response = getattr(client, method)(url, **headers)
    assert response.status_code == status
    assert response["Content-Type"] == "application/json"
    body = response.json()
    assert set(body) == {"error", "code"}
    assert body["code"] == code and body["error"]


@pytest.mark.parametrize("url", ["/api/", "/api/v2/leads", "/api/v1/", "/api/v1/nothing", "/api/schema/x"])
def test_any_unknown_api_path_is_a_json_404(client, url):
    response = client.get(url)
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"


def test_the_slashless_schema_and_docs_paths_still_redirect(client):
    assert client.get("/api/schema")["Location"] == "/api/schema/"
    assert client.get("/api/docs")["Location"] == "/api/docs/"


def test_an_unknown_schema_format_says_which_formats_exist(client):
    body = client.get("/api/schema/?format=xml").json()
    assert "json" in body["error"] and "yaml" in body["error"]


def test_the_schema_is_still_served_in_both_formats(client):
    assert client.get("/api/schema/?format=json").json()["info"]["title"] == "emailtrack API"
    yaml = client.get("/api/schema/?format=yaml")
    assert yaml.status_code == 200 and yaml.content.startswith(b"openapi: 3.")


def test_the_schema_is_generated_once_and_ignores_a_version_it_does_not_have(client, monkeypatch):
    generated = []

    class CountingGenerator(SchemaView.generator_class):
        def get_schema(self, *args, **kwargs):
            generated.append(1)
            return super().get_schema(*args, **kwargs)

    monkeypatch.setattr(SchemaView, "generator_class", CountingGenerator)
    monkeypatch.setattr(SchemaView, "_schema", None)
    first = client.get("/api/schema/?format=json&version=evil-version-string")
    second = client.get("/api/schema/?format=json&lang=zz")
    assert first.status_code == second.status_code == 200
    assert first.content == second.content
    assert b"evil-version-string" not in first.content
    assert first.json()["info"]["version"] == "1"
    assert generated == [1]


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_the_docs_render_every_endpoint_in_chromium_without_the_internet(live_server, page):
    own = urlsplit(live_server.url).netloc
    outside = []

    def only_ours(route):
        if urlsplit(route.request.url).netloc == own:
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    page.route("**/*", only_ours)
    page.goto(live_server.url + "/api/docs/")
    page.wait_for_selector(".opblock-summary-path", timeout=15000)
    paths = {
        element.get_attribute("data-path") or element.inner_text()
        for element in page.query_selector_all(".opblock-summary-path")
    }
    assert "/api/v1/leads" in {path.replace("\u200b", "") for path in paths}
    assert outside == []
