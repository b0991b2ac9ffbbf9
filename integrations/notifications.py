"""New-lead notifications to project members: by email (Django's email
backend) and to a Telegram chat (the service's bot, TELEGRAM_BOT_TOKEN).
Each (lead, member, channel) is sent once, retried for a few hours."""

import json
import smtplib
from datetime import datetime, timedelta

from django.conf import settings
from django.core.mail import EmailMessage
from django.db import IntegrityError, transaction
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.translation import gettext as _

from attribution.models import Lead
from projects.languages import in_project_language

from . import conf, http, outbox
from .models import Notification, NotificationSetting

RETRY_WINDOW = timedelta(hours=6)


def lead_link(lead: Lead) -> str:
    try:
        path = reverse("journal:lead", args=[lead.pk])
    except NoReverseMatch:
        path = reverse("admin:attribution_lead_change", args=[lead.pk])
    return conf.public_base_url() + path


def _one_line(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def lead_message(lead: Lead) -> tuple[str, str]:
    """The subject and plain text of a new-lead message, in the project's
    language whoever is told (never HTML: the sender's name and subject are
    the sender's words)."""
    sender = f"{lead.sender_name} <{lead.sender_email}>" if lead.sender_name else lead.sender_email
    source = " / ".join(part for part in (lead.source, lead.medium, lead.campaign, lead.keyword) if part) or "—"
    with in_project_language(lead.project):
        lines = [
            _("New lead in %(project)s") % {"project": lead.project.name},
            "",
            _("From: %(sender)s") % {"sender": _one_line(sender, 200) or "—"},
            _("Subject: %(subject)s") % {"subject": _one_line(lead.subject, 200) or "—"},
            _("Channel: %(channel)s") % {"channel": lead.get_channel_display()},
            _("Source: %(source)s") % {"source": _one_line(source, 300)},
            _("First contact") if lead.first_contact else _("Returning customer"),
            "",
            lead_link(lead),
        ]
        about = lead.subject or lead.sender_email or _("no subject")
        subject = _one_line(_("New lead: %(about)s") % {"about": about}, 150)
    return subject, "\n".join(lines)


def notifications_for_new_lead(lead_id: int, now: datetime | None = None) -> list[int]:
    """One notification per member and channel the member has switched on."""
    now = now or timezone.now()
    lead = Lead.objects.filter(pk=lead_id).first()
    if lead is None:
        return []
    ids = []
    wanted = NotificationSetting.objects.filter(membership__project_id=lead.project_id).select_related(
        "membership__user"
    )
    for setting in wanted:
        channels = []
        if setting.email_enabled and setting.email_address:
            channels.append(Notification.Channel.EMAIL)
        if setting.telegram_enabled and setting.telegram_chat_id and conf.telegram_bot_token():
            channels.append(Notification.Channel.TELEGRAM)
        for channel in channels:
            try:
                with transaction.atomic():
                    row = Notification.objects.create(
                        lead=lead,
                        membership=setting.membership,
                        channel=channel,
                        next_attempt_at=now,
                        give_up_at=now + RETRY_WINDOW,
                    )
            except IntegrityError:  # already made by an earlier run of this task
                continue
            ids.append(row.pk)
    return ids


def send_email(setting: NotificationSetting, subject: str, text: str) -> None:
    message = EmailMessage(subject, text, settings.DEFAULT_FROM_EMAIL, [setting.email_address])
    try:
        message.send()
    except smtplib.SMTPRecipientsRefused as exc:
        raise outbox.SendError(f"The mail server refused the address: {exc}"[:500], permanent=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise outbox.SendError(f"Sending the email failed: {type(exc).__name__} {exc}"[:500]) from None


def send_telegram(setting: NotificationSetting, text: str) -> None:
    token = conf.telegram_bot_token()
    if not token:
        raise outbox.SendError("TELEGRAM_BOT_TOKEN is not set.", permanent=True)
    chat = setting.telegram_chat_id
    body = json.dumps({"chat_id": chat, "text": text, "disable_web_page_preview": True}).encode()
    url = f"{conf.telegram_api_base_url()}/bot{token}/sendMessage"
    try:
        answer = http.post(url, body, {"Content-Type": "application/json"}, timeout=conf.outbound_timeout())
    except http.RequestFailed as exc:
        raise outbox.SendError(f"Telegram: {exc}") from None
    if answer.status == 200:
        return
    try:
        reply = json.loads(answer.body)
        description = str(reply.get("description", ""))[:200]
        retry_after = (reply.get("parameters") or {}).get("retry_after")
    except (ValueError, AttributeError):
        description, retry_after = answer.text(200), None
    # 400 (chat not found), 401 (bad token), 403 (bot blocked or removed): waiting will not help.
    raise outbox.SendError(
        f"Telegram answered {answer.status}: {description}",
        permanent=answer.status in (400, 401, 403, 404),
        retry_after=retry_after if isinstance(retry_after, int) else None,
        status_code=answer.status,
    )


def notification_send(notification_id: int, now: datetime | None = None) -> outbox.Outcome | None:
    """Send one notification if it is due and no one else is sending it."""
    now = now or timezone.now()
    if not outbox.claim(Notification, notification_id, now):
        return None
    row = Notification.objects.select_related("lead__project", "membership__user").get(pk=notification_id)
    setting = NotificationSetting.objects.filter(membership=row.membership).first()
    if setting is None:
        return outbox.skipped(row, now, "The member's notification settings were removed.")
    subject, text = lead_message(row.lead)
    try:
        if row.channel == Notification.Channel.EMAIL:
            if not (setting.email_enabled and setting.email_address):
                return outbox.skipped(row, now, "Email notifications were switched off.")
            send_email(setting, subject, text)
        else:
            if not (setting.telegram_enabled and setting.telegram_chat_id):
                return outbox.skipped(row, now, "Telegram notifications were switched off.")
            send_telegram(setting, text)
    except outbox.SendError as error:
        return outbox.failed(row, now, error)
    return outbox.succeeded(row, now)
