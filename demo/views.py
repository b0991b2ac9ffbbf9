from django.contrib import messages
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from . import services

# Where the demo keeps the last tracked letter sent to yourself (this browser only).
INBOX_KEY = "demo_tracked_letter"


def _site():
    if not services.demo_mode():
        raise Http404("Demo mode is off.")
    site = services.demo_site()
    if site is None:
        raise Http404("No demo project: run `python manage.py demo_setup` (make run does it).")
    return site


def page(request):
    site = _site()
    blocks = services.demo_blocks(site)
    hello, support = blocks.get(site.original_email.lower()), blocks.get(services.DEMO_SUPPORT_EMAIL)
    context = {
        "site": site,
        "original": site.original_email,
        "support": services.DEMO_SUPPORT_EMAIL,
        "hello_block": hello.pk if hello else "",
        "support_block": support.pk if support else "",
    }
    return render(request, "demo/page.html", context)


@require_POST
def send(request):
    site = _site()
    back = request.POST.get("back") or reverse("demo:page")
    if not back.startswith("/demo/"):
        back = reverse("demo:page")
    sender = (request.POST.get("sender") or "").strip()[:200] or "customer@example.net"
    subject = (request.POST.get("subject") or "").strip()[:200] or _("A question about your products")
    body = (request.POST.get("body") or "").strip()[:2000] or _("Hello! I would like to know more.")
    try:
        letter = services.send_test_letter(
            site=site, to=request.POST.get("to", ""), sender=sender, subject=subject, body=body
        )
    except ValueError as error:
        messages.error(request, str(error))
        return redirect(back)
    if letter and letter.lead_id:
        lead = letter.lead
        messages.success(
            request,
            _(
                "Letter stored; lead #%(lead)s: channel %(channel)s, source %(source)s, campaign %(campaign)s. "
                "See it in the journal."
            )
            % {
                "lead": lead.pk,
                "channel": lead.get_channel_display(),
                "source": lead.source or "—",
                "campaign": lead.campaign or "—",
            },
        )
    else:
        messages.warning(request, _("The letter was stored but did not become a lead."))
    return redirect(back)


@require_POST
def send_tracked(request):
    """Send a tracked letter to yourself and open it in the demo inbox."""
    site = _site()
    to = (request.POST.get("sender") or "").strip()[:200] or "customer@example.net"
    message, html = services.send_tracked_letter(site=site, to=to, base_url=request.build_absolute_uri("/").rstrip("/"))
    request.session[INBOX_KEY] = {"message": message.pk, "html": html}
    return redirect("demo:inbox")


def inbox(request):
    """The tracked letter as the recipient's mail client shows it: its pixel
    loads (an open), its link goes through the signed redirect (a click)."""
    _site()
    letter = request.session.get(INBOX_KEY)
    if not letter:
        return redirect("demo:page")
    return render(request, "demo/inbox.html", {"letter": letter})
