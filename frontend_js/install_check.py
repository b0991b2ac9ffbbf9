"""Install check: the pages where the snippet did not find a block's original
address, as the snippet reports them (POST /api/v1/report, once per page view)."""

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import F

from substitution.rules import blocks_for_site
from tracker.domains import domain_names, domain_of, host_of
from tracker.services import CollectError, find_site

from .models import MissingBlockReport

# A page is counted at most once per this many seconds: every page view of a
# page without the address reports it, the database hears of it now and then.
REPORT_EVERY_SECONDS = 600
# The newest pages kept per site: a site without the address on most of its
# pages must not grow the table without bound.
PAGES_KEPT_PER_SITE = 200


def max_body_bytes() -> int:
    return getattr(settings, "SNIPPET_REPORT_MAX_BODY_BYTES", 4096)


def rate_limit_per_minute() -> int:
    return getattr(settings, "SNIPPET_REPORT_RATE_LIMIT_PER_MINUTE", settings.COLLECT_RATE_LIMIT_PER_MINUTE)


@dataclass
class Report:
    site_key: str
    page_url: str
    block_ids: list[int]


def page_of(url: str) -> str:
    """The page's address as kept: no query string (tags, click ids, personal
    data) and no fragment; "" if it is not an http(s) URL."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return ""
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return ""
    return urlunsplit((parts.scheme, parts.netloc.lower(), parts.path or "/", "", ""))[:1000]


def parse_report(body: bytes) -> Report:
    """Validate the snippet's JSON body: {"site", "url", "missing": [block ids]}."""
    if len(body) > max_body_bytes():
        raise CollectError(413, "Request body too large")
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CollectError(400, "Body must be JSON") from None
    if not isinstance(payload, dict):
        raise CollectError(400, "Body must be a JSON object")
    site_key, url, missing = payload.get("site"), payload.get("url"), payload.get("missing")
    if not isinstance(site_key, str) or not site_key or len(site_key) > 32:
        raise CollectError(400, "'site' must be the site key")
    page = page_of(url) if isinstance(url, str) else ""
    if not page:
        raise CollectError(400, "'url' must be the page's http(s) URL")
    if (
        not isinstance(missing, list)
        or not 0 < len(missing) <= 50
        or not all(isinstance(i, int) and not isinstance(i, bool) for i in missing)
    ):
        raise CollectError(400, "'missing' must be a list of block ids")
    return Report(site_key=site_key, page_url=page, block_ids=sorted(set(missing)))


def record_report(*, report: Report, origin: str, now: datetime) -> int:
    """Store that the page lacks the blocks' addresses; returns how many pages
    were counted. Only the site's own pages count (the Origin and the page must
    both be one of its domains) and only its own blocks; a page already counted
    within REPORT_EVERY_SECONDS is not counted again."""
    site = find_site(report.site_key)
    domains = domain_names(site)
    if domain_of(domains, host_of(origin)) is None:
        raise CollectError(403, "Origin is not one of the site's domains")
    if domain_of(domains, host_of(report.page_url)) is None:
        raise CollectError(403, "The page is not on one of the site's domains")
    own = {block.pk for block in blocks_for_site(site)}
    counted = 0
    for block_id in report.block_ids:
        if block_id not in own:
            continue
        digest = hashlib.sha256(f"{site.pk}:{block_id}:{report.page_url}".encode()).hexdigest()[:32]
        if not cache.add(f"missing-block:{digest}", 1, timeout=REPORT_EVERY_SECONDS):
            continue
        _count(site.pk, block_id, report.page_url, now)
        counted += 1
    if counted:
        _trim(site.pk)
    return counted


def _count(site_id: int, block_id: int, page_url: str, now: datetime) -> None:
    rows = MissingBlockReport.objects.filter(site_id=site_id, block_id=block_id, page_url=page_url)
    if rows.update(last_seen_at=now, reports=F("reports") + 1):
        return
    try:
        with transaction.atomic():
            MissingBlockReport.objects.create(
                site_id=site_id, block_id=block_id, page_url=page_url, first_seen_at=now, last_seen_at=now
            )
    except IntegrityError:  # the same page reported twice at once
        rows.update(last_seen_at=now, reports=F("reports") + 1)


def _trim(site_id: int) -> None:
    stale = MissingBlockReport.objects.filter(site_id=site_id).order_by("-last_seen_at", "-id")[PAGES_KEPT_PER_SITE:]
    ids = list(stale.values_list("id", flat=True)[:1000])
    if ids:
        MissingBlockReport.objects.filter(id__in=ids).delete()
