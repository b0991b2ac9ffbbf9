"""A site's own settings as collect reads them: its id, domains, the
referrers treated as none and the last non-direct period. Read once into an
immutable snapshot and kept in process memory for SNAPSHOT_SECONDS, so the
collect endpoint reads no configuration rows per request; a change in admin
reaches every process within that time."""

import hashlib
import threading
import time
from dataclasses import dataclass

from .domains import domain_names, parse_domains
from .models import Site

SNAPSHOT_SECONDS = 30


@dataclass(frozen=True)
class SiteSnapshot:
    site_id: int
    project_id: int
    site_key: str
    domains: tuple  # (SiteDomain id, domain)
    excluded_referrers: tuple  # the referral-exclusion list plus the site's own domains
    last_non_direct_days: int
    fingerprint: str


_cache: dict[str, tuple[float, SiteSnapshot | None]] = {}
_lock = threading.Lock()


def load_snapshot(site_key: str) -> SiteSnapshot | None:
    site = Site.objects.filter(site_key=site_key, active=True).prefetch_related("domains").first()
    if site is None:
        return None
    body = (
        site.pk,
        site.project_id,
        site.site_key,
        domain_names(site),
        parse_domains(site.referral_exclusions) + tuple(d.domain.lower() for d in site.domains.all()),
        site.last_non_direct_days,
    )
    fingerprint = hashlib.sha256(repr(body).encode()).hexdigest()[:16]
    return SiteSnapshot(*body, fingerprint=fingerprint)


def cached_snapshot(site_key: str) -> tuple[bool, SiteSnapshot | None]:
    """(True, snapshot or None for an unknown key) when this process has a
    fresh answer; (False, None) when answering would read the database."""
    cached = _cache.get(site_key)
    if cached is not None and time.monotonic() - cached[0] < SNAPSHOT_SECONDS:
        return True, cached[1]
    return False, None


def site_snapshot(site_key: str, *, fresh: bool = False) -> SiteSnapshot | None:
    now = time.monotonic()
    cached = None if fresh else _cache.get(site_key)
    if cached is not None and now - cached[0] < SNAPSHOT_SECONDS:
        return cached[1]
    snapshot = load_snapshot(site_key)
    with _lock:
        if len(_cache) > 10_000:
            _cache.clear()
        _cache[site_key] = (now, snapshot)
    return snapshot


def forget_sites() -> None:
    _cache.clear()
