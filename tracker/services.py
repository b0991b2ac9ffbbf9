"""The collect endpoint's logic: site, origin, visitor, session, substitution."""

import json
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction

from substitution.services import substitute

from .channels import Source, classify, host_of
from .models import Channel, DeviceType, Session, Site, SiteDomain, Visitor

VID_RE = re.compile(r"\A[A-Za-z0-9_-]{8,64}\Z")  # \Z: "$" would let a trailing newline through
LAST_URLS_KEPT = 10
MOBILE_RE = re.compile(r"Mobi|Android.+Mobile|iPhone|iPod|Windows Phone", re.I)
TABLET_RE = re.compile(r"iPad|Tablet|Android(?!.*Mobile)", re.I)
BOT_RE = re.compile(r"bot|crawler|spider|headlesschrome|curl|wget|python-requests", re.I)


class CollectError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class CollectRequest:
    site_key: str
    vid: str | None
    url: str
    ref: str
    screen: str
    lang: str
    ga: str
    ym: str
    consent: bool
    heartbeat: bool


def _text(payload: dict, key: str, limit: int) -> str:
    value = payload.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise CollectError(400, f"'{key}' must be a string")
    return value[:limit]


def parse_request(body: bytes) -> CollectRequest:
    """Validate the snippet's JSON body; anything malformed is a 400 with the reason."""
    if len(body) > settings.COLLECT_MAX_BODY_BYTES:
        raise CollectError(413, "Request body too large")
    try:
        payload = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise CollectError(400, "Body must be JSON") from None
    if not isinstance(payload, dict):
        raise CollectError(400, "Body must be a JSON object")
    if payload.get("v") != 1 or isinstance(payload.get("v"), bool):  # JSON true == 1 in Python
        raise CollectError(400, 'Unsupported protocol version; expected "v": 1')
    site_key = payload.get("site")
    if not isinstance(site_key, str) or not site_key or len(site_key) > 32:
        raise CollectError(400, "'site' must be the site key")
    vid = payload.get("vid")
    if vid is not None and (not isinstance(vid, str) or not VID_RE.match(vid)):
        raise CollectError(400, "'vid' must be null or a visitor id of 8-64 letters, digits, '-' or '_'")
    url = _text(payload, "url", 2000)
    if url and urlsplit(url).scheme not in ("http", "https"):
        raise CollectError(400, "'url' must be an http(s) URL")
    consent = payload.get("consent", True)
    heartbeat = payload.get("hb", False)
    if not isinstance(consent, bool) or not isinstance(heartbeat, bool):
        raise CollectError(400, "'consent' and 'hb' must be true or false")
    return CollectRequest(
        site_key=site_key,
        vid=vid,
        url=url,
        ref=_text(payload, "ref", 2000),
        screen=_text(payload, "screen", 32),
        lang=_text(payload, "lang", 35),
        ga=_text(payload, "ga", 100),
        ym=_text(payload, "ym", 100),
        consent=consent,
        heartbeat=heartbeat,
    )


def rate_limited(key: str, limit: int) -> bool:
    """Fixed one-minute window in the shared cache."""
    bucket = f"rl:{key}:{int(datetime.now().timestamp() // 60)}"
    if cache.add(bucket, 1, timeout=70):
        return False
    try:
        return cache.incr(bucket) > limit
    except ValueError:
        return False


def domain_allowed(site: Site, origin: str) -> SiteDomain | None:
    """The site domain an Origin belongs to (the domain itself or a subdomain)."""
    host = host_of(origin)
    if not host:
        return None
    for domain in site.domains.all():
        name = domain.domain.lower().removeprefix("www.")
        if host == name or host.endswith("." + name):
            return domain
    return None


def device_type(user_agent: str) -> str:
    if not user_agent:
        return DeviceType.UNKNOWN
    if BOT_RE.search(user_agent):
        return DeviceType.BOT
    if MOBILE_RE.search(user_agent):
        return DeviceType.MOBILE
    if TABLET_RE.search(user_agent):
        return DeviceType.TABLET
    return DeviceType.DESKTOP


def find_site(site_key: str) -> Site:
    site = Site.objects.filter(site_key=site_key, active=True).prefetch_related("domains").first()
    if site is None:
        raise CollectError(404, "Unknown site key")
    return site


def collect(*, request: CollectRequest, origin: str, user_agent: str, now: datetime) -> dict:
    """Record a page view (or heartbeat) and answer with the visitor's addresses.

    Without consent nothing about the visitor is kept: no id, no session, and
    only rules that need no visitor apply."""
    site = find_site(request.site_key)
    domain = domain_allowed(site, origin)
    if domain is None:
        raise CollectError(403, "Origin is not one of the site's domains")
    if domain.last_seen_at is None or (now - domain.last_seen_at).total_seconds() > 300:
        SiteDomain.objects.filter(pk=domain.pk).update(last_seen_at=now)

    if not request.consent:
        result = substitute(site=site, visitor=None, now=now)
        return {"vid": None, "subs": result.subs, "exp": None, "hb": settings.HEARTBEAT_SECONDS}

    source = classify(request.url, request.ref, own_host=host_of(origin))
    # One transaction, so a page view costs one commit (one WAL flush), not one per row.
    with transaction.atomic():
        visitor = _visitor(site, request.vid, now)
        _record_page_view(visitor, request, source, user_agent, now)
        result = substitute(site=site, visitor=visitor, now=now)
    return {
        "vid": visitor.vid,
        "subs": result.subs,
        "exp": int(result.expires_at.timestamp()) if result.expires_at else None,
        "hb": settings.HEARTBEAT_SECONDS,
    }


def _visitor(site: Site, vid: str | None, now: datetime) -> Visitor:
    if vid:
        visitor = Visitor.objects.filter(site=site, vid=vid).first()
        if visitor is not None:
            Visitor.objects.filter(pk=visitor.pk).update(last_seen_at=now)
            return visitor
    new_vid = vid or uuid.uuid4().hex
    try:
        with transaction.atomic():
            return Visitor.objects.create(site=site, vid=new_vid, created_at=now, last_seen_at=now)
    except IntegrityError:  # two first page views of one visitor at once
        return Visitor.objects.get(site=site, vid=new_vid)


def _record_page_view(visitor: Visitor, request: CollectRequest, source: Source, user_agent: str, now: datetime):
    session = visitor.sessions.order_by("-started_at").first()
    timed_out = session is None or now - session.last_seen_at >= settings.SESSION_TIMEOUT
    new_campaign = (
        session is not None
        and not request.heartbeat
        and source.channel != Channel.DIRECT
        and (source.channel, source.source, source.utm["utm_campaign"])
        != (session.channel, session.source, session.utm_campaign)
    )
    if timed_out or new_campaign:
        Session.objects.create(
            visitor=visitor,
            started_at=now,
            last_seen_at=now,
            landing_url=request.url,
            referrer=request.ref,
            click_ids=source.click_ids,
            channel=source.channel,
            source=source.source,
            keyword=source.keyword,
            page_views=0 if request.heartbeat else 1,
            last_urls=[request.url] if request.url else [],
            device_type=device_type(user_agent),
            user_agent=user_agent[:500],
            screen=request.screen,
            lang=request.lang,
            ga_client_id=request.ga,
            ym_client_id=request.ym,
            **source.utm,
        )
        return
    session.last_seen_at = now
    fields = ["last_seen_at"]
    if not request.heartbeat:
        session.page_views += 1
        if request.url:
            session.last_urls = (session.last_urls + [request.url])[-LAST_URLS_KEPT:]
        fields += ["page_views", "last_urls"]
    for attr, value in (("ga_client_id", request.ga), ("ym_client_id", request.ym)):
        if value and not getattr(session, attr):
            setattr(session, attr, value)
            fields.append(attr)
    session.save(update_fields=fields)
