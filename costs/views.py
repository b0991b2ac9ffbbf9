"""The CSV upload's steps for a page (the journal's and admin's): upload →
preview with the rows or the errors by line → confirm → imported."""

from django.contrib import messages
from django.utils.translation import gettext as _

from .csv_import import LAYOUT_LABELS
from .forms import CostUploadForm
from .services import project_currency
from .uploads import PREVIEW_ROWS, upload_confirm, upload_preview


def upload_step(request, project, form=None) -> tuple[dict, bool]:
    """The page's context for this request, and whether the costs were
    imported (then the caller redirects). `form` may be a subclass of
    CostUploadForm bound by the caller (admin's adds the project)."""
    context = {"currency": project_currency(project) if project else "", "parsed": None}
    if request.method == "POST" and request.POST.get("confirm"):
        imported = upload_confirm(user_id=request.user.pk, project=project, token=request.POST.get("token", ""))
        if imported is None:
            messages.error(request, _("That preview has expired: upload the file again."))
        else:
            messages.success(
                request,
                _("Costs imported: %(created)s new, %(updated)s replaced, total %(total)s %(currency)s.")
                % {
                    "created": imported.created,
                    "updated": imported.updated,
                    "total": imported.total,
                    "currency": context["currency"],
                },
            )
            return context, True
        form = CostUploadForm()
    elif request.method == "POST":
        form = form or CostUploadForm(request.POST, request.FILES)
        if form.is_valid():
            parsed, token = upload_preview(
                user_id=request.user.pk, project_id=project.pk, data=form.cleaned_data["file"].read()
            )
            context.update(
                parsed=parsed,
                token=token,
                layout_label=LAYOUT_LABELS.get(parsed.layout, ""),
                preview_rows=parsed.rows[:PREVIEW_ROWS],
                more_rows=max(0, len(parsed.rows) - PREVIEW_ROWS),
            )
    context["form"] = form or CostUploadForm()
    return context, False
