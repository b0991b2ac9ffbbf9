"""Sessions: a visitor's page view either continues their session or starts
a new one (after SESSION_TIMEOUT without activity, or on a new campaign)."""

import json
from datetime import datetime

from django.conf import settings
from django.db import connection

from lib.sql import update_rows
from substitution.visits import Visit

from . import geo
from .channels import Source, host_of, last_non_direct
from .devices import Device
from .models import Channel, Session, Visitor

LAST_URLS_KEPT = 10


def visit_of(session: Session | dict, page_url: str) -> Visit:
    """What the rules' conditions read of a session (a model, or a new
    visitor's session as column values) and the page being viewed."""
    fields = session if isinstance(session, dict) else vars(session)
    return Visit(
        utm_source=fields["utm_source"],
        utm_medium=fields["utm_medium"],
        utm_campaign=fields["utm_campaign"],
        utm_term=fields["utm_term"],
        utm_content=fields["utm_content"],
        referrer_domain=host_of(fields["referrer"]),
        landing_url=fields["landing_url"],
        page_url=page_url,
        channel=fields["channel"],
        device_type=fields["device_type"],
        country=fields["country"],
        region=fields["region"],
        city=fields["city"],
    )


def visit_without_session(request, source: Source, device: Device, place: geo.Geo) -> Visit:
    """What the rules' conditions read of a page view kept nowhere (no consent)."""
    return Visit(
        referrer_domain=host_of(request.ref),
        landing_url=request.url,
        page_url=request.url,
        channel=source.channel,
        device_type=device.device_type,
        country=place.country,
        region=place.region,
        city=place.city,
        **source.utm,
    )


def session_key_of(channel: str, source: str, campaign: str) -> str:
    """What tells one campaign's session from another's."""
    return json.dumps([channel, source, campaign])


def apply_written_behind(sessions: dict, views: dict, urls: dict, visitors: dict) -> None:
    """Activity of returning visitors' page views written behind through Redis
    (substitution.activity), applied in its flush: last seen, page views and
    last URLs of sessions, last seen of visitors. Three statements whatever
    the number of rows: the sessions locked in id order and not for a key
    change (inserts that refer to them go on), then written in one UPDATE;
    the visitors in one UPDATE that never moves a time back."""
    written = Session.objects.filter(id__in=set(sessions) | set(views)).order_by("pk")
    changed = []
    for session_id, last_seen_at, page_views, last_urls in written.select_for_update(no_key=True).values_list(
        "id", "last_seen_at", "page_views", "last_urls"
    ):
        seen = sessions.get(session_id)
        moved = bool(seen and seen > last_seen_at)
        added = views.get(session_id, 0)
        if added and urls.get(session_id):
            last_urls = (list(last_urls or []) + urls[session_id])[-LAST_URLS_KEPT:]
        if moved or added:
            # The row is locked: page views counted on what it holds now.
            changed.append((session_id, seen if moved else last_seen_at, page_views + added, last_urls))
    update_rows(Session, ["last_seen_at", "page_views", "last_urls"], changed)
    table = connection.ops.quote_name(Visitor._meta.db_table)
    update_rows(Visitor, ["last_seen_at"], sorted(visitors.items()), condition=f"{table}.last_seen_at < v.column2")


def _new_session_details(
    last_non_direct_days: int,
    visitor: Visitor,
    previous: Session | None,
    source: Source,
    device: Device,
    ip: str,
    now: datetime,
) -> dict:
    """What a new session records beyond the page view: its source (last
    non-direct applied), device, geo of the full IP (only the truncated IP is
    kept) and whether the visitor had been here before."""
    earlier = previous
    if source.channel == Channel.DIRECT and last_non_direct_days and previous is not None:
        if previous.channel == Channel.DIRECT or previous.source_inherited:
            earlier = (
                visitor.sessions.filter(source_inherited=False)
                .exclude(channel__in=(Channel.DIRECT, Channel.STATIC, Channel.UNKNOWN))
                .order_by("-started_at")
                .first()
            )
    source = last_non_direct(source, earlier, now, last_non_direct_days)
    return _source_device_place(source, device, ip, returning=previous is not None or visitor.created_at < now)


def _source_device_place(source: Source, device: Device, ip: str, *, returning: bool) -> dict:
    place = geo.locate(ip)
    return {
        "channel": source.channel,
        "source": source.source,
        "keyword": source.keyword,
        "search_engine": source.search_engine,
        "click_ids": source.click_ids,
        "source_inherited": source.inherited,
        **source.utm,
        "device_type": device.device_type,
        "os": device.os,
        "os_version": device.os_version,
        "browser": device.browser,
        "browser_version": device.browser_version,
        "country": place.country,
        "region": place.region,
        "city": place.city,
        "ip_truncated": geo.truncate_ip(ip),
        "returning_visitor": returning,
    }


def _page_view_fields(request, user_agent: str, now: datetime) -> dict:
    """What a new session records of the page view (or heartbeat) that starts it."""
    return {
        "started_at": now,
        "last_seen_at": now,
        "landing_url": request.url,
        "referrer": request.ref,
        "page_views": 0 if request.heartbeat else 1,
        "last_urls": [request.url] if request.url else [],
        "user_agent": user_agent[:500],
        "screen": request.screen,
        "lang": request.lang,
        "ga_client_id": request.ga,
        "ym_client_id": request.ym,
    }


def new_session(
    visitor: Visitor,
    previous: Session | None,
    request,
    source: Source,
    user_agent: str,
    now: datetime,
    *,
    last_non_direct_days: int,
    device: Device,
    ip: str = "",
) -> Session:
    """A new session starting with this page view (or heartbeat), not saved yet."""
    return Session(
        visitor=visitor,
        **_page_view_fields(request, user_agent, now),
        **_new_session_details(last_non_direct_days, visitor, previous, source, device, ip, now),
    )


def first_session(
    request, source: Source, user_agent: str, now: datetime, *, last_non_direct_days: int, device: Device, ip: str = ""
) -> dict:
    """A new visitor's first session as column values (all but its visitor):
    what new_session gives for a visitor created now with no earlier session,
    without building a model the first-visit statement would only read."""
    source = last_non_direct(source, None, now, last_non_direct_days)
    return {
        **_page_view_fields(request, user_agent, now),
        **_source_device_place(source, device, ip, returning=False),
    }


def record_page_view(
    visitor: Visitor,
    request,
    source: Source,
    user_agent: str,
    now: datetime,
    *,
    last_non_direct_days: int,
    device: Device,
    ip: str = "",
) -> Session:
    """Continue the visitor's session, or start a new one after a timeout or
    when a new campaign arrives (a heartbeat never starts a campaign)."""
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
        started = new_session(
            visitor,
            session,
            request,
            source,
            user_agent,
            now,
            last_non_direct_days=last_non_direct_days,
            device=device,
            ip=ip,
        )
        started.save(force_insert=True)
        return started
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
    return session
