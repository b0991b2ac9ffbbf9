"""What is wrong with a project right now: each check reads the owners'
tables and returns the conditions that hold at `now`, as
{(kind, subject): (summary, details)}. Thresholds are the product's:

- a mailbox that has not synced for 30 minutes while failing (auth,
  connection), or at once when it waits to be reconnected (its OAuth2
  grant was refused: no sync will succeed until someone acts);
- a pool with exhaustions in the last hour, or whose peak over the health
  window is above 90% of its size (with the recommended size, and whether
  it was simulated on the pool's own traffic or is the peak with a margin);
- a site domain that sent no visit for 24 hours after visits in the week
  before;
- a block whose original address the install check did not find on pages
  in the last 24 hours (only while the site's install check is on);
- a webhook whose every attempt for the last hour failed.
"""

from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.db.models import Max, Min, Q
from django.utils.translation import gettext as _

from frontend_js.models import MissingBlockReport, SnippetSettings
from integrations.models import Webhook, WebhookAttempt
from mailbox_sync.models import Mailbox
from substitution.models import Pool, PoolExhaustion
from substitution.pools import SIMULATED
from substitution.selectors import pool_health
from tracker.models import Session, SiteDomain

from .models import Kind

MAILBOX_GRACE = timedelta(minutes=30)
EXHAUSTION_WINDOW = timedelta(hours=1)
NEARLY_FULL = 0.9
SILENT_AFTER = timedelta(hours=24)
TRAFFIC_WEEK = timedelta(days=7)
MISSING_WINDOW = timedelta(hours=24)
WEBHOOK_WINDOW = timedelta(hours=1)


def mailboxes_failing(project_id: int, now: datetime) -> dict:
    """Failing with no successful sync for 30 minutes, or waiting to be reconnected."""
    found = {}
    boxes = Mailbox.objects.filter(
        project_id=project_id, active=True, state__in=[Mailbox.State.FAILING, Mailbox.State.RECONNECT_NEEDED]
    )
    for box in boxes:
        since = box.last_success_at or box.created_at
        if box.state != Mailbox.State.RECONNECT_NEEDED and now - since < MAILBOX_GRACE:
            continue
        found[(Kind.MAILBOX_FAILING, f"mailbox:{box.pk}")] = (
            _("Mailbox %(name)s <%(address)s> has not synced since %(since)s UTC (%(state)s)")
            % {
                "name": box.name,
                "address": box.username,
                "since": f"{since:%Y-%m-%d %H:%M}",
                "state": box.get_state_display(),
            },
            {"mailbox": box.pk, "state": box.state, "error": (box.last_error or "")[:300]},
        )
    return found


def _basis(basis: str) -> str:
    if basis == SIMULATED:
        return _("simulated on its own traffic")
    return _("the peak with a margin")


def pools(project_id: int, now: datetime) -> dict:
    found = {}
    dry = set(
        PoolExhaustion.objects.filter(pool__project_id=project_id, at__gte=now - EXHAUSTION_WINDOW)
        .values_list("pool_id", flat=True)
        .distinct()
    )
    for pool in Pool.objects.filter(project_id=project_id):
        health = pool_health(pool, now)
        peak = max((p for _d, p in health.peaks), default=0)
        details = {
            "pool": pool.pk,
            "size": health.size,
            "peak": peak,
            "recommended_size": health.recommended,
            "recommended_basis": health.basis,
        }
        if pool.pk in dry:
            found[(Kind.POOL_EXHAUSTED, f"pool:{pool.pk}")] = (
                _("Pool %(name)s ran dry in the last hour; recommended size %(size)s (%(basis)s)")
                % {"name": pool.name, "size": health.recommended, "basis": _basis(health.basis)},
                details,
            )
        elif health.size and peak > NEARLY_FULL * health.size:
            found[(Kind.POOL_NEARLY_FULL, f"pool:{pool.pk}")] = (
                _(
                    "Pool %(name)s peaked at %(peak)s of %(size)s addresses; "
                    "recommended size %(recommended)s (%(basis)s)"
                )
                % {
                    "name": pool.name,
                    "peak": peak,
                    "size": health.size,
                    "recommended": health.recommended,
                    "basis": _basis(health.basis),
                },
                details,
            )
    return found


def _host(url: str) -> str:
    host = (urlsplit(url).hostname or "").lower()
    return host[4:] if host.startswith("www.") else host


def snippets_silent(project_id: int, now: datetime) -> dict:
    """Per site domain: visits in the week before the last 24 hours, none since."""
    found = {}
    week = Session.objects.filter(
        visitor__site__project_id=project_id, started_at__gte=now - SILENT_AFTER - TRAFFIC_WEEK
    ).values_list("visitor__site_id", "landing_url", "started_at")
    seen: dict[tuple[int, str], tuple[bool, bool]] = {}
    for site_id, url, started in week.iterator():
        key = (site_id, _host(url))
        before, recent = seen.get(key, (False, False))
        seen[key] = (before or started < now - SILENT_AFTER, recent or started >= now - SILENT_AFTER)
    domains = {
        (d.site_id, d.domain.lower().removeprefix("www.")): d
        for d in SiteDomain.objects.filter(site__project_id=project_id).select_related("site")
    }
    for (site_id, host), (before, recent) in seen.items():
        matched = next(
            (d for (sid, name), d in domains.items() if sid == site_id and (host == name or host.endswith("." + name))),
            None,
        )
        if matched is None or not before or recent:
            continue
        subject = f"site:{site_id}:{matched.domain}"
        found[(Kind.SNIPPET_SILENT, subject)] = (
            _("The snippet on %(domain)s (%(site)s) has not reported for 24 hours")
            % {"domain": matched.domain, "site": matched.site.name},
            {"site": site_id, "domain": matched.domain},
        )
    return found


def blocks_missing(project_id: int, now: datetime) -> dict:
    checking = set(
        SnippetSettings.objects.filter(site__project_id=project_id, install_check=True).values_list(
            "site_id", flat=True
        )
    )
    if not checking:
        return {}
    rows = (
        MissingBlockReport.objects.filter(site_id__in=checking, last_seen_at__gte=now - MISSING_WINDOW)
        .values("site_id", "block_id", "block__name")
        .annotate(pages=Min("id"), last=Max("last_seen_at"))
        .order_by()
    )
    found = {}
    for row in rows:
        pages = MissingBlockReport.objects.filter(
            site_id=row["site_id"], block_id=row["block_id"], last_seen_at__gte=now - MISSING_WINDOW
        ).count()
        found[(Kind.BLOCK_MISSING, f"block:{row['block_id']}:site:{row['site_id']}")] = (
            _("Block %(name)s: its original address was not found on %(pages)s page(s)")
            % {"name": row["block__name"], "pages": pages},
            {"site": row["site_id"], "block": row["block_id"], "pages": pages},
        )
    return found


def webhooks_failing(project_id: int, now: datetime) -> dict:
    """A webhook with failed attempts spanning at least an hour and no success since the first of them."""
    found = {}
    for hook in Webhook.objects.filter(project_id=project_id, active=True):
        attempts = WebhookAttempt.objects.filter(delivery__webhook=hook)
        ok = Q(status_code__gte=200, status_code__lt=300, error="")
        last_success = attempts.filter(ok).aggregate(at=Max("at"))["at"]
        failures = attempts.exclude(ok)
        if last_success:
            failures = failures.filter(at__gt=last_success)
        first = failures.aggregate(at=Min("at"))["at"]
        if first is not None and now - first >= WEBHOOK_WINDOW:
            found[(Kind.WEBHOOKS_FAILING, f"webhook:{hook.pk}")] = (
                _("Webhook %(url)s has failed since %(since)s UTC")
                % {"url": hook.url, "since": f"{first:%Y-%m-%d %H:%M}"},
                {"webhook": hook.pk, "url": hook.url, "failing_since": first.isoformat()},
            )
    return found


CHECKS = (mailboxes_failing, pools, snippets_silent, blocks_missing, webhooks_failing)


def conditions_now(project_id: int, now: datetime) -> dict:
    found = {}
    for check in CHECKS:
        found.update(check(project_id, now))
    return found
