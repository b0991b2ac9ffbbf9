"""Cursor pagination: `next` / `previous` are full URLs; a page is stable
however many leads arrive meanwhile."""

from rest_framework import exceptions
from rest_framework.pagination import CursorPagination


class Cursor(CursorPagination):
    page_size = 50
    page_size_query_param = "limit"
    max_page_size = 200
    ordering = "id"

    def get_ordering(self, request, queryset, view):
        ordering = getattr(view, "cursor_ordering", None)
        return ordering(request) if callable(ordering) else (self.ordering,)

    def get_page_size(self, request):
        text = request.query_params.get(self.page_size_query_param)
        if text is None:
            return self.page_size
        try:
            size = int(text)
        except ValueError:
            size = 0
        if not 1 <= size <= self.max_page_size:
            raise exceptions.ValidationError({"limit": [f"A whole number from 1 to {self.max_page_size}."]})
        return size

    def decode_cursor(self, request):
        # DRF's convention: a cursor that is not one of ours is 404.
        try:
            return super().decode_cursor(request)
        except exceptions.NotFound:
            raise exceptions.NotFound(
                "Invalid cursor: follow the `next` link as given.", code="invalid_cursor"
            ) from None

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = f"Items per page, at most {self.max_page_size} (default {self.page_size})."
                parameter["schema"] = {"type": "integer", "minimum": 1, "maximum": self.max_page_size}
        return parameters
