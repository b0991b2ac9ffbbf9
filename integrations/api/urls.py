"""Mounted at /api/ after /api/v1/collect, /api/v1/ping and /api/v1/report,
which stay outside the API key scheme."""

from django.urls import path, re_path

from . import costs, messages, views
from .errors import not_found
from .schema import DocsView, SchemaView

urlpatterns = [
    path("schema/", SchemaView.as_view(), name="api-schema"),
    path("docs/", DocsView.as_view(url_name="api-schema"), name="api-docs"),
    path("v1/project", views.ProjectView.as_view(), name="api-project"),
    path("v1/leads", views.LeadListView.as_view(), name="api-leads"),
    path("v1/leads/<int:lead_id>", views.LeadDetailView.as_view(), name="api-lead"),
    path("v1/sites", views.SiteListView.as_view(), name="api-sites"),
    path("v1/sites/<int:pk>", views.SiteDetailView.as_view(), name="api-site"),
    path("v1/pools", views.PoolListView.as_view(), name="api-pools"),
    path("v1/pools/<int:pk>", views.PoolDetailView.as_view(), name="api-pool"),
    path("v1/static-addresses", views.StaticAddressListView.as_view(), name="api-static-addresses"),
    path("v1/static-addresses/<int:pk>", views.StaticAddressDetailView.as_view(), name="api-static-address"),
    path("v1/mailboxes", views.MailboxListView.as_view(), name="api-mailboxes"),
    path("v1/mailboxes/<int:pk>", views.MailboxDetailView.as_view(), name="api-mailbox"),
    path("v1/summary", views.SummaryView.as_view(), name="api-summary"),
    path("v1/costs", costs.CostView.as_view(), name="api-costs"),
    path("v1/messages", messages.MessageListView.as_view(), name="api-messages"),
    path("v1/messages/<int:message_id>", messages.MessageDetailView.as_view(), name="api-message"),
    # Anything else under /api/ (but the public collect, ping and report endpoints, and the
    # slash-less schema and docs paths, which redirect): the API's JSON 404.
    re_path(r"^(?!v1/collect$|v1/ping$|v1/report|schema$|docs$)", not_found),
]
