"""The collect endpoint's logic: site, origin, visitor, session, substitution."""

import hashlib
import hmac
import json
import re
import uuid
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import lru_cache
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError, transaction
from django.db.models import Exists, F, OuterRef
from redis import exceptions as redis_errors

from lib import ratelimit
from lib.redis_client import HOT
from substitution.visits import (
    Returning,
    SessionFacts,
    VisitRequest,
    redis_enabled,
    substitute,
)

from . import first_visit, geo
from .channels import classify, host_of
from .devices import inspect_user_agent
from .domains import domain_of
from .models import BotHit, Channel, Session, Site, SiteDomain, Visitor
from .sessions import record_page_view, session_key_of, visit_of, visit_without_session
from .sites import cached_snapshot, site_snapshot

VID_RE = re.compile(r"\A[A-Za-z0-9_-]{8,64}\Z")  # \Z: "$" would let a trailing newline through
SITE_KEY_RE = re.compile(r"\A[A-Za-z0-9_-]{1,32}\Z")
# NUL and lone surrogates (JSON "\ud800" decodes to one) cannot be stored in PostgreSQL text.
UNSTORABLE_RE = re.compile("[\x00\ud800-\udfff]")
DOMAIN_TOUCH_SECONDS = 300


class CollectError(Exception):
    def __init__(self, status: int, message: str, retry_after: int | None = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.retry_after = retry_after  # a 429's wait in seconds


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
    return clean_text(value, limit)


def clean_text(value: str, limit: int) -> str:
    if value.isascii() and "\x00" not in value:  # most values: nothing to remove, no regex run
        return value[:limit]
    return UNSTORABLE_RE.sub("", value)[:limit]


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
    if not isinstance(site_key, str) or not SITE_KEY_RE.match(site_key):
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


@lru_cache(maxsize=8)
def _collect_rule(limit: int) -> ratelimit.Rule:
    return ratelimit.Rule("collect-ip", limit, 60, tag=HOT)


def collect_rule() -> ratelimit.Rule:
    """Requests per client address per minute (COLLECT_RATE_LIMIT_PER_MINUTE),
    its key in the hot path's hash slot: a returning visitor's page view is
    counted inside the fast path's one Redis script."""
    return _collect_rule(settings.COLLECT_RATE_LIMIT_PER_MINUTE)


def find_site(site_key: str) -> Site:
    site = Site.objects.filter(site_key=site_key, active=True).prefetch_related("domains").first()
    if site is None:
        raise CollectError(404, "Unknown site key")
    return site


@lru_cache(maxsize=4)
def _keyed(secret_key: str):
    return hmac.new(secret_key.encode(), digestmod=hashlib.sha256)


def ip_hash(ip: str) -> str:
    """A keyed hash of the client IP, for the per-IP lease cap (the IP itself is not kept)."""
    if not ip:
        return ""
    keyed = _keyed(settings.SECRET_KEY).copy()  # the key's part of HMAC worked out once
    keyed.update(ip.encode())
    return keyed.hexdigest()[:32]


_domain_touched: dict[int, float] = {}


def _touch_domain(domain_id: int, now: datetime) -> None:
    """The install check's "last reported" time, written at most every 5
    minutes per process (and across processes through the cache)."""
    if now.timestamp() - _domain_touched.get(domain_id, 0) < DOMAIN_TOUCH_SECONDS:
        return
    _domain_touched[domain_id] = now.timestamp()
    try:
        first = cache.add(f"domain-seen:{domain_id}", 1, timeout=DOMAIN_TOUCH_SECONDS)
    except (redis_errors.ConnectionError, redis_errors.TimeoutError):
        first = True  # Redis down: this process's own five minutes still hold
    if first:
        SiteDomain.objects.filter(pk=domain_id).update(last_seen_at=now)


def _answer(vid, result) -> dict:
    return {
        "vid": vid,
        "subs": result.subs,
        "exp": int(result.expires_at.timestamp()) if result.expires_at else None,
        "hb": settings.HEARTBEAT_SECONDS,
    }


def _allowed(counting: ratelimit.Counting) -> None:
    verdict = counting.verdict()
    if not verdict.allowed:
        raise CollectError(429, "Too many requests", verdict.retry_after)


def collect(*, request: CollectRequest, origin: str, user_agent: str, now: datetime, ip: str = "") -> dict:
    """Record a page view (or heartbeat) and answer with the visitor's addresses.

    The site's settings come from an in-process snapshot; substitution
    decides each block's address (substitution.visits): a returning visitor
    whose answer cannot have changed is answered from Redis with no database
    query; a new visitor's rows and leases are written in one statement;
    everything else is written through in one transaction, PostgreSQL
    deciding the leases. Without consent nothing about the visitor is kept:
    no id, no session, and only rules that need no visitor apply. A known bot
    gets the original addresses and is only counted."""
    rule = collect_rule()
    known, snapshot = cached_snapshot(request.site_key)
    fast_eligible = request.consent and bool(request.vid) and redis_enabled()
    counting = None
    if not (known and fast_eligible):
        # Everything but a returning visitor's page view on a known site is
        # counted here; that one is counted inside its single Redis call.
        # The count is sent now and its verdict read once the request's own
        # values are worked out (nothing is written or refused before it).
        counting = ratelimit.hit_later(rule, ip)
        if not known:
            snapshot = site_snapshot(request.site_key)
    try:
        own_host = host_of(origin)
        domain_id = domain_of(snapshot.domains, own_host) if snapshot is not None else None
        user_agent = clean_text(user_agent, 500)
        device = inspect_user_agent(user_agent)
        source = first_request = None
        if domain_id is not None and not device.is_bot:
            source = classify(request.url, request.ref, own_host=own_host, excluded=snapshot.excluded_referrers)
            if request.consent and request.vid is None and first_visit.supported():
                first_request = first_visit.visit_request(
                    VisitRequest(site_id=snapshot.site_id, now=now, site_version=snapshot.fingerprint),
                    request,
                    source,
                    user_agent,
                    last_non_direct_days=snapshot.last_non_direct_days,
                    device=device,
                    ip=ip,
                    ip_hash=ip_hash(ip),
                )
    finally:
        if counting is not None:
            _allowed(counting)  # over the limit: 429, before any other answer
    if snapshot is None:
        raise CollectError(404, "Unknown site key")
    if domain_id is None:
        raise CollectError(403, "Origin is not one of the site's domains")
    _touch_domain(domain_id, now)

    if device.is_bot:
        count_bot_hit(snapshot.site_id, now)
        return {"vid": None, "subs": [], "exp": None, "hb": settings.HEARTBEAT_SECONDS}
    if not request.consent:
        facts = visit_without_session(request, source, device, geo.locate(ip))
        visit = VisitRequest(site_id=snapshot.site_id, now=now, site_version=snapshot.fingerprint, facts=facts)
        return _answer(None, substitute(visit))

    if fast_eligible:
        campaign_key = ""
        if not request.heartbeat and source.channel != Channel.DIRECT:
            campaign_key = session_key_of(source.channel, source.source, source.utm["utm_campaign"])
        returning = Returning(
            rate=None if counting is not None else ratelimit.count_of(rule, ip),
            session_timeout=settings.SESSION_TIMEOUT.total_seconds(),
            session_key=campaign_key,
            ga=request.ga,
            ym=request.ym,
            page_view=not request.heartbeat,
            url=request.url,
        )
        try:
            fast = substitute(
                VisitRequest(
                    site_id=snapshot.site_id,
                    now=now,
                    site_version=snapshot.fingerprint,
                    vid=request.vid,
                    returning=returning,
                )
            )
        except ratelimit.Limited as limited:
            raise CollectError(429, "Too many requests", limited.retry_after) from None
        if fast is not None:
            return _answer(request.vid, fast)

    visit = VisitRequest(site_id=snapshot.site_id, now=now, site_version=snapshot.fingerprint, vid=request.vid or "")

    if first_request is not None:
        first = substitute(first_request)
        if first is not None:
            return _answer(first_request.vid, first)

    with transaction.atomic():
        visitor = _visitor(snapshot.site_id, request.vid, now)
        session = record_page_view(
            visitor,
            request,
            source,
            user_agent,
            now,
            last_non_direct_days=snapshot.last_non_direct_days,
            device=device,
            ip=ip,
        )
        result = substitute(
            replace(
                visit,
                vid=visitor.vid,
                visitor_id=visitor.pk,
                facts=visit_of(session, request.url),
                session=_facts(session),
                ip_hash=ip_hash(ip),
            )
        )
    return _answer(visitor.vid, result)


def _facts(session: Session) -> SessionFacts:
    """What the fast path checks of the session a returning visitor continues."""
    return SessionFacts(
        id=session.pk,
        key=session_key_of(session.channel, session.source, session.utm_campaign),
        ga=session.ga_client_id,
        ym=session.ym_client_id,
    )


def _visitor(site_id: int, vid: str | None, now: datetime) -> Visitor:
    if vid:
        visitor = Visitor.objects.filter(site_id=site_id, vid=vid).first()
        if visitor is not None:
            Visitor.objects.filter(pk=visitor.pk).update(last_seen_at=now)
            return visitor
    new_vid = vid or uuid.uuid4().hex
    try:
        with transaction.atomic():
            return Visitor.objects.create(site_id=site_id, vid=new_vid, created_at=now, last_seen_at=now)
    except IntegrityError:  # two first page views of one visitor at once
        return Visitor.objects.get(site_id=site_id, vid=new_vid)


def count_bot_hit(site_id: int, now: datetime) -> None:
    """One more page view by a known bot on the site today (UTC)."""
    day = now.date()
    if BotHit.objects.filter(site_id=site_id, day=day).update(count=F("count") + 1):
        return
    try:
        with transaction.atomic():
            BotHit.objects.create(site_id=site_id, day=day, count=1)
    except IntegrityError:  # the day's first two bot hits at once
        BotHit.objects.filter(site_id=site_id, day=day).update(count=F("count") + 1)


RETENTION_BATCH = 1000


def _unreferenced(model) -> list:
    """Filters keeping only rows that no other row points to: a lead
    (Lead.session / Lead.visitor, which would only be set to NULL), a lease
    (its history belongs to the lease retention) or a session of a visitor."""
    return [
        ~Exists(rel.related_model._base_manager.filter(**{rel.field.name: OuterRef("pk")}))
        for rel in model._meta.related_objects
        if not rel.many_to_many
    ]


def _purge_batch(queryset) -> tuple[int, int]:
    """Delete one batch of `queryset`: lock it (skipping rows someone holds),
    check again in a new statement that nothing refers to the locked rows
    (a lead that committed meanwhile), and delete the rest. A lead written while
    the lock is held waits for it, then fails on the missing row and is retried.
    Returns (rows looked at, rows deleted)."""
    model = queryset.model
    with transaction.atomic():
        ids = list(queryset.select_for_update(skip_locked=True).values_list("pk", flat=True)[:RETENTION_BATCH])
        if not ids:
            return 0, 0
        _, deleted = model.objects.filter(*_unreferenced(model), pk__in=ids).delete()
    return len(ids), deleted.get(model._meta.label, 0)


def purge_old_sessions(now: datetime) -> tuple[int, int]:
    """Retention: delete sessions that started and were last seen more than
    RETENTION_DAYS (default 90) ago and that no lead refers to, then visitors
    inactive that long with nothing left (no session, lease or lead).
    Returns how many sessions and visitors were deleted."""
    cutoff = now - timedelta(days=getattr(settings, "RETENTION_DAYS", 90))
    old_sessions = Session.objects.filter(*_unreferenced(Session), started_at__lt=cutoff, last_seen_at__lt=cutoff)
    old_visitors = Visitor.objects.filter(*_unreferenced(Visitor), created_at__lt=cutoff, last_seen_at__lt=cutoff)
    totals = []
    for queryset in (old_sessions, old_visitors):
        total, looked_at = 0, RETENTION_BATCH
        while looked_at == RETENTION_BATCH:
            looked_at, deleted = _purge_batch(queryset.order_by())
            total += deleted
        totals.append(total)
    return totals[0], totals[1]
