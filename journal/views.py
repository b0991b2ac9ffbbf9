"""The leads journal: list, lead page, report and CSV export.

Each view reads the user's projects first; a project, lead or filter value
of another tenant is a 404 (or, in a filter, an invalid choice).
"""

from datetime import date, timedelta
from zoneinfo import ZoneInfo

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django.views.i18n import set_language

from costs import views as cost_views
from engagement import selectors as engagement_selectors
from projects.languages import person_set_language, supported

from . import reports, sent
from .export import csv_lines, funnel_csv_lines
from .filters import LeadFilterForm, day_start, filter_leads, filter_query
from .forms import LeadEditForm
from .selectors import (
    MATCH_EXPLANATIONS,
    can_edit_leads,
    current_project,
    journal_page,
    journal_projects,
    lead_letters,
    lead_response_time,
    leads_for_user,
    with_tag_names,
)


def _no_projects(request, projects):
    return render(request, "journal/no_projects.html", {"projects": projects, "project": None})


@login_required
@require_GET
def lead_list(request):
    projects = journal_projects(request.user)
    project = current_project(request, projects)
    if project is None:
        return _no_projects(request, projects)
    form = LeadFilterForm(request.GET, project=project)
    page, cursor = journal_page(filter_leads(project, form), request.GET.get("before", ""))
    with_tag_names(page)
    context = {
        "projects": projects,
        "project": project,
        "form": form,
        "leads": page,
        "cursor": cursor,
        "paged": bool(request.GET.get("before")),
        "next_query": filter_query(form, before=cursor),
        "filter_query": filter_query(form),
    }
    return render(request, "journal/list.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def lead_detail(request, lead_id: int):
    lead = get_object_or_404(
        leads_for_user(request.user).select_related("project", "site", "session", "address", "lease"), pk=lead_id
    )
    projects = journal_projects(request.user)
    may_edit = can_edit_leads(request.user, lead.project)
    tags = list(lead.tags.all())
    status = 200
    if request.method == "POST":
        if not may_edit:
            raise PermissionDenied(_("Only members of the lead's project may change it."))
        form = LeadEditForm(request.POST)
        if form.is_valid() and form.changed_since_seen(lead):
            # Keep what was typed, show the newer state, and let a second save go through.
            data = request.POST.copy()
            data["seen"] = lead.updated_at.isoformat()
            form = LeadEditForm(data)
            form.is_valid()
            form.add_error(None, _("Someone changed this lead after you opened it. Check its details and save again."))
            status = 409
        elif form.is_valid():
            lead = form.save(lead)
            if not form.errors:
                messages.success(request, _("Lead saved."))
                return redirect("journal:lead", lead_id=lead.pk)
            status = 400
        else:
            status = 400
    else:
        form = LeadEditForm.for_lead(lead, [tag.name for tag in tags])
    letters = lead_letters(lead)
    context = {
        "projects": projects,
        "project": lead.project,
        "lead": lead,
        "tags": tags if request.method == "GET" else list(lead.tags.all()),
        "letters": letters,
        "session": lead.session,
        "response_time": lead_response_time(lead),
        "explanation": MATCH_EXPLANATIONS.get(lead.match_kind, ""),
        "timeline": sent.lead_timeline(lead, letters),
        "may_edit": may_edit,
        "form": form,
    }
    return render(request, "journal/lead.html", context, status=status)


def _report_form(request, project) -> tuple[LeadFilterForm, date, date]:
    """The list's filters and a period: the last 30 days (in the project's
    time zone) when none is given, and at most MAX_DAYS days."""
    today = timezone.localdate(timezone=ZoneInfo(project.time_zone))
    data = request.GET.copy()
    if not data.get("date_from") and not data.get("date_to"):
        start, end = reports.default_period(today)
        data["date_from"], data["date_to"] = start.isoformat(), end.isoformat()
    form = LeadFilterForm(data, project=project)
    values = form.values
    end = values.get("date_to") or max(values.get("date_from", today), today)
    start = values.get("date_from") or end - timedelta(days=reports.DEFAULT_DAYS - 1)
    if (end - start).days >= reports.MAX_DAYS:
        start = end - timedelta(days=reports.MAX_DAYS - 1)
        form.add_error(
            "date_from",
            _("A report covers at most %(days)s days: this one starts on %(start)s.")
            % {"days": reports.MAX_DAYS, "start": start},
        )
    return form, start, end


def _page_number(request) -> int:
    """`?page=N` of the report's tables: a number from 1 up; anything else is the first page."""
    try:
        return min(max(int(request.GET.get("page", "1")), 1), 1000)
    except ValueError:
        return 1


@login_required
@require_GET
def report(request):
    projects = journal_projects(request.user)
    project = current_project(request, projects)
    if project is None:
        return _no_projects(request, projects)
    form, start, end = _report_form(request, project)
    tz = ZoneInfo(project.time_zone)
    leads = filter_leads(project, form).filter(
        created_at__gte=day_start(start, tz), created_at__lt=day_start(end + timedelta(days=1), tz)
    )
    if reports.from_report_days(project, form):
        leads = None  # every lead of the period: the report reads its days
    as_csv = request.GET.get("format") == "csv"
    page = _page_number(request)
    funnel = reports.build_funnel(
        project,
        leads,
        start,
        end,
        request.GET.get("group", ""),
        site_id=form.values.get("site"),
        page=None if as_csv else page,
    )
    if as_csv:
        response = StreamingHttpResponse(funnel_csv_lines(funnel), content_type="text/csv; charset=utf-8")
        name = f"report-{project.pk}-{funnel.grouping}-{start:%Y%m%d}-{end:%Y%m%d}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response
    query = filter_query(form, date_from=start.isoformat(), date_to=end.isoformat())
    context = {
        "projects": projects,
        "project": project,
        "form": form,
        "report": reports.build_report(leads, project.time_zone, start, end, project=project, page=page),
        "funnel": funnel,
        "source_charts": reports.build_source_charts(project, leads, start, end, funnel.currency),
        "list_query": query,
        "funnel_csv_query": f"{query}&group={funnel.grouping}&format=csv",
        "funnel_query": f"{query}&group={funnel.grouping}",
    }
    return render(request, "journal/report.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def cost_upload(request):
    """Advertising costs from a CSV file: preview, then import on confirmation."""
    projects = journal_projects(request.user)
    project = current_project(request, projects)
    if project is None:
        return _no_projects(request, projects)
    if request.method == "POST" and not can_edit_leads(request.user, project):
        raise PermissionDenied(_("Only members of the project may import its costs."))
    context, done = cost_views.upload_step(request, project)
    if done:
        return redirect(f"{reverse('journal:costs')}?project={project.pk}")
    return render(request, "costs/upload.html", {"projects": projects, "project": project, **context})


@login_required
@require_GET
def export(request):
    projects = journal_projects(request.user)
    project = current_project(request, projects)
    leads = None
    if project is not None:
        leads = filter_leads(project, LeadFilterForm(request.GET, project=project))
    response = StreamingHttpResponse(csv_lines(project, leads), content_type="text/csv; charset=utf-8")
    tz = ZoneInfo(project.time_zone if project else "UTC")
    stamp = timezone.localtime(timezone=tz).strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="leads-{project.pk if project else 0}-{stamp}.csv"'
    return response


@login_required
@require_GET
def message_list(request):
    """Sent letters: the project's tracked messages, newest first, with their figures."""
    projects = journal_projects(request.user)
    project = current_project(request, projects)
    if project is None:
        return _no_projects(request, projects)
    form = sent.MessageFilterForm(request.GET, project=project)
    messages = sent.filter_messages(project, form)
    page, cursor = sent.message_page(messages, request.GET.get("before", ""))
    context = {
        "projects": projects,
        "project": project,
        "form": form,
        "messages_page": page,
        "campaign": form.values.get("campaign", ""),
        "campaign_figures": sent.campaign_figures(messages, form),
        "cursor": cursor,
        "paged": bool(request.GET.get("before")),
        "filter_query": form.query(),
        "next_query": form.query(before=cursor),
    }
    return render(request, "journal/messages.html", context)


@login_required
@require_GET
def message_detail(request, message_id: int):
    projects = journal_projects(request.user)
    message = sent.message_for_user([project.pk for project in projects], message_id)
    if message is None:
        raise Http404(_("No such message"))
    figures = engagement_selectors.totals([message.pk])[message.pk]
    machine_opens, devices = sent.figure_kinds(figures)
    context = {
        "projects": projects,
        "project": message.project,
        "message": message,
        "figures": figures,
        "machine_opens": machine_opens,
        "devices": devices,
        "recipients": engagement_selectors.recipients_with_events(message),
        "links": engagement_selectors.link_clicks(message),
        "timeline": sent.message_timeline(message),
    }
    return render(request, "journal/message.html", context)


@require_POST
def language(request):
    """The language switch of the journal and admin: the choice is kept in the
    language cookie and, for a signed-in person, on their profile, so that it
    follows them to another browser. Then back to the page it came from."""
    chosen = request.POST.get("language", "")
    if request.user.is_authenticated and supported(chosen):
        person_set_language(request.user, chosen)
    return set_language(request)
