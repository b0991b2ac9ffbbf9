"""A new lead reported as a conversion to the site's analytics.

- Google Analytics 4, Measurement Protocol: an `email_lead` event (name per
  site) for the visitor's GA client id, dated when the letter arrived.
- Yandex Metrica, offline conversions: a CSV with ClientId, Target (the
  goal's identifier) and DateTime uploaded as multipart/form-data to
  `/management/v1/counter/<id>/offline_conversions/upload?client_id_type=CLIENT_ID`
  with the OAuth token.

Only leads whose session carries the client id are reported; each lead once
per system, retried for two days.
"""

import csv
import io
import json
import secrets
from datetime import datetime, timedelta
from urllib.parse import urlencode

from django.db import IntegrityError, transaction
from django.utils import timezone

from attribution.models import Lead
from lib import crypto

from . import conf, http, outbox
from .models import Conversion, SiteAnalytics

RETRY_WINDOW = timedelta(hours=48)
GA4_BACKDATE_LIMIT = timedelta(hours=71)  # GA4 accepts events up to 72 hours old
GA4_PARAM_LIMIT = 100


def site_analytics_set_secrets(config: SiteAnalytics, *, ga4_api_secret=None, metrica_token=None) -> None:
    """Secrets are kept only encrypted; an empty value clears one, None keeps it."""
    if ga4_api_secret is not None:
        config.ga4_api_secret_encrypted = crypto.encrypt(ga4_api_secret) if ga4_api_secret else ""
    if metrica_token is not None:
        config.metrica_token_encrypted = crypto.encrypt(metrica_token) if metrica_token else ""


def _ga4_ready(config: SiteAnalytics) -> bool:
    return config.ga4_enabled and bool(config.ga4_measurement_id and config.ga4_api_secret_encrypted)


def _metrica_ready(config: SiteAnalytics) -> bool:
    return config.metrica_enabled and bool(
        config.metrica_counter_id and config.metrica_goal and config.metrica_token_encrypted
    )


def _lead_with_config(lead_id: int):
    lead = Lead.objects.select_related("session", "site").filter(pk=lead_id).first()
    if lead is None or lead.site_id is None or lead.session is None:
        return lead, None
    return lead, SiteAnalytics.objects.filter(site_id=lead.site_id).first()


def conversions_for_new_lead(lead_id: int, now: datetime | None = None) -> list[int]:
    """A conversion per analytics system the lead's site reports to, when the
    visitor's session has that system's client id."""
    now = now or timezone.now()
    lead, config = _lead_with_config(lead_id)
    if config is None:
        return []
    targets = []
    if _ga4_ready(config) and lead.session.ga_client_id:
        targets.append(Conversion.Target.GA4)
    if _metrica_ready(config) and lead.session.ym_client_id:
        targets.append(Conversion.Target.METRICA)
    ids = []
    for target in targets:
        try:
            with transaction.atomic():
                row = Conversion.objects.create(
                    lead=lead, target=target, next_attempt_at=now, give_up_at=now + RETRY_WINDOW
                )
        except IntegrityError:  # already made by an earlier run
            continue
        ids.append(row.pk)
    return ids


def _param(value) -> str:
    return str(value)[:GA4_PARAM_LIMIT]


def ga4_request(lead: Lead, config: SiteAnalytics, now: datetime) -> tuple[str, bytes]:
    """The Measurement Protocol request: URL (with the API secret) and JSON body."""
    query = urlencode(
        {"measurement_id": config.ga4_measurement_id, "api_secret": crypto.decrypt(config.ga4_api_secret_encrypted)}
    )
    event = {
        "name": config.ga4_event_name or "email_lead",
        "params": {
            "lead_id": _param(lead.pk),
            "channel": _param(lead.channel),
            "source": _param(lead.source),
            "medium": _param(lead.medium),
            "campaign": _param(lead.campaign),
            "first_contact": "yes" if lead.first_contact else "no",
            "engagement_time_msec": 1,
        },
    }
    body = {"client_id": lead.session.ga_client_id, "events": [event]}
    if now - lead.created_at < GA4_BACKDATE_LIMIT:
        body["timestamp_micros"] = int(lead.created_at.timestamp() * 1_000_000)
    return f"{conf.ga4_collect_url()}?{query}", json.dumps(body).encode()


def metrica_request(lead: Lead, config: SiteAnalytics) -> tuple[str, bytes, dict]:
    """The offline-conversions upload: URL, multipart body and headers (with the OAuth token)."""
    rows = io.StringIO()
    writer = csv.writer(rows, lineterminator="\n")
    writer.writerow(["ClientId", "Target", "DateTime"])
    writer.writerow([lead.session.ym_client_id, config.metrica_goal, int(lead.created_at.timestamp())])
    boundary = "----emailtrack" + secrets.token_hex(12)
    body = (
        f"--{boundary}\r\n"
        'Content-Disposition: form-data; name="file"; filename="conversions.csv"\r\n'
        "Content-Type: text/csv\r\n\r\n"
        f"{rows.getvalue()}\r\n"
        f"--{boundary}--\r\n"
    ).encode()
    query = urlencode({"client_id_type": "CLIENT_ID", "comment": f"emailtrack lead {lead.pk}"})
    url = f"{conf.metrica_api_base_url()}/management/v1/counter/{config.metrica_counter_id}/offline_conversions/upload"
    url += f"?{query}"
    headers = {
        "Authorization": f"OAuth {crypto.decrypt(config.metrica_token_encrypted)}",
        "Content-Type": f"multipart/form-data; boundary={boundary}",
    }
    return url, body, headers


def _error_for(answer: http.Answer, system: str) -> outbox.SendError:
    # 400: the data was refused; 401/403: the token or its rights; 404: no such counter.
    return outbox.SendError(
        f"{system} answered {answer.status}: {answer.text(200)}",
        permanent=answer.status in (400, 401, 403, 404),
        status_code=answer.status,
    )


def conversion_send(conversion_id: int, now: datetime | None = None) -> outbox.Outcome | None:
    """Send one conversion if it is due and no one else is sending it."""
    now = now or timezone.now()
    if not outbox.claim(Conversion, conversion_id, now):
        return None
    row = Conversion.objects.get(pk=conversion_id)
    lead, config = _lead_with_config(row.lead_id)
    is_ga4 = row.target == Conversion.Target.GA4
    if config is None or not (_ga4_ready(config) if is_ga4 else _metrica_ready(config)):
        return outbox.skipped(row, now, "Reporting to this system was switched off for the site.")
    system = "GA4" if is_ga4 else "Metrica"
    try:
        if is_ga4:
            url, body = ga4_request(lead, config, now)
            headers = {"Content-Type": "application/json"}
        else:
            url, body, headers = metrica_request(lead, config)
        answer = http.post(url, body, headers, timeout=conf.outbound_timeout())
    except ValueError as exc:  # a secret that ENCRYPTION_KEY cannot decrypt
        return outbox.failed(row, now, outbox.SendError(str(exc), permanent=True))
    except http.RequestFailed as exc:
        return outbox.failed(row, now, outbox.SendError(f"{system}: {exc}"))
    if not 200 <= answer.status < 300:
        return outbox.failed(row, now, _error_for(answer, system))
    upload_id = ""
    if not is_ga4:
        try:
            upload_id = str(json.loads(answer.body)["uploading"]["id"])[:64]
        except (ValueError, KeyError, TypeError):
            upload_id = ""
    return outbox.succeeded(row, now, upload_id=upload_id)
