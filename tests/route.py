"""A test client for the WSGI application as gunicorn serves it
(config.wsgi.application, where tracker.wsgi answers collect before Django),
with the same calls as django.test.Client for what collect's tests use."""

import io
import json

from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.test import RequestFactory
from django.utils.datastructures import CaseInsensitiveMapping

from config.wsgi import application


class RouteResponse:
    def __init__(self, status: str, headers: list, content: bytes):
        self.status_code = int(status.split()[0])
        self.headers = CaseInsensitiveMapping(headers)
        self.header_list = headers
        self.content = content

    def __getitem__(self, name):
        return self.headers[name]

    def __contains__(self, name):
        return name in self.headers

    def json(self):
        return json.loads(self.content)


class RouteClient:
    def __init__(self, application=application):
        self.application = application
        self.factory = RequestFactory()

    def request(self, method: str, path: str, data=b"", content_type="text/plain", environ=None, **extra):
        if isinstance(data, str):
            data = data.encode()
        wsgi = self.factory.generic(method, path, data, content_type=content_type, **extra).environ
        wsgi["wsgi.input"] = io.BytesIO(data)  # a server's stream: a read past the end gives what is left
        wsgi.update(environ or {})
        answer = {}

        def start_response(status, headers, exc_info=None):
            answer["status"], answer["headers"] = status, headers

        # What Django's test client does around a request: a test's transaction
        # is not closed by Django's request signals.
        request_started.disconnect(close_old_connections)
        request_finished.disconnect(close_old_connections)
        try:
            chunks = self.application(wsgi, start_response)
            try:
                content = b"".join(chunks)
            finally:
                getattr(chunks, "close", lambda: None)()
        finally:
            request_started.connect(close_old_connections)
            request_finished.connect(close_old_connections)
        return RouteResponse(answer["status"], answer["headers"], content)

    def post(self, path, data=b"", content_type="text/plain", **extra):
        return self.request("POST", path, data, content_type, **extra)

    def get(self, path, **extra):
        return self.request("GET", path, **extra)

    def options(self, path, **extra):
        return self.request("OPTIONS", path, **extra)
