"""The collect endpoint's fast path: a returning visitor's page view or
heartbeat answered from Redis, with no database round trip.

After a write-through page view (the slow path) the answer is cached per
visitor. A later request is answered from that entry only when nothing
decides differently: same site configuration, same session (not timed out,
no new campaign, no new analytics ids), and a lease whose expiry *in the
database* is still at least half its hold away. Its activity is written
behind (substitution.activity) and reaches PostgreSQL within the flush
interval; anything else goes the slow path, where PostgreSQL decides.

The entry is replaced by a compare-and-set script, so a lease taken over
meanwhile (which deletes the entry) is never brought back by a racing page view.
"""

import json
from datetime import datetime

from django.conf import settings

from substitution import activity

from .models import Channel

MARGIN_FRACTION = 0.5


def _timeout_seconds() -> float:
    return settings.SESSION_TIMEOUT.total_seconds()


def session_key_of(channel: str, source: str, campaign: str) -> list[str]:
    return [channel, source, campaign]


def remember(
    *,
    site_id: int,
    vid: str,
    fingerprint: str,
    lease_id: int,
    visitor_id: int,
    session,
    subs: list[dict],
    hold_minutes: int,
    db_expires_at: datetime,
    now: datetime,
) -> None:
    """Cache a write-through answer for the visitor's next page views."""
    if not activity.enabled():
        return
    entry = {
        "cfg": fingerprint,
        "lease": lease_id,
        "visitor": visitor_id,
        "session": session.pk,
        "sk": session_key_of(session.channel, session.source, session.utm_campaign),
        "ga": session.ga_client_id,
        "ym": session.ym_client_id,
        "subs": subs,
        "hold": hold_minutes,
        "db_exp": db_expires_at.timestamp(),
        "seen": now.timestamp(),
    }
    activity.redis().set(activity.visit_key(site_id, vid), json.dumps(entry), ex=hold_minutes * 60)


def forget(site_id: int, vid: str) -> None:
    if activity.enabled():
        activity.redis().delete(activity.visit_key(site_id, vid))


def _usable(entry: dict, *, fingerprint: str, source, request, now_ts: float) -> bool:
    if entry.get("cfg") != fingerprint:
        return False  # the site's rules or blocks changed
    if entry["db_exp"] - now_ts < entry["hold"] * 60 * MARGIN_FRACTION:
        return False  # time to write the lease's expiry through
    if now_ts - entry["seen"] >= _timeout_seconds():
        return False  # the session timed out: a new one starts
    if (request.ga and request.ga != entry["ga"]) or (request.ym and request.ym != entry["ym"]):
        return False
    if not request.heartbeat and source.channel != Channel.DIRECT:
        if session_key_of(source.channel, source.source, source.utm["utm_campaign"]) != entry["sk"]:
            return False  # a new campaign starts a new session
    return True


def answer(*, site_id: int, fingerprint: str, request, source, now: datetime) -> dict | None:
    """The response for a returning visitor, or None for the slow path. Two
    Redis round trips: read the entry, then compare-and-set it with the
    activity (substitution.activity.touch)."""
    if not activity.enabled() or not request.vid:
        return None
    client = activity.redis()
    key = activity.visit_key(site_id, request.vid)
    now_ts = now.timestamp()
    raw = client.get(key)
    if raw is None:
        return None
    entry = json.loads(raw)
    if not _usable(entry, fingerprint=fingerprint, source=source, request=request, now_ts=now_ts):
        return None
    entry["seen"] = now_ts
    touched = activity.touch(
        key=key,
        expected=raw,
        entry=json.dumps(entry),
        ttl=entry["hold"] * 60,
        lease_id=entry["lease"],
        session_id=entry["session"],
        visitor_id=entry["visitor"],
        url=request.url,
        page_view=not request.heartbeat,
        at=now_ts,
    )
    if not touched:
        return None  # the entry changed under us (e.g. the lease was taken over)
    return {
        "vid": request.vid,
        "subs": entry["subs"],
        "exp": int(now_ts + entry["hold"] * 60),
        "hb": settings.HEARTBEAT_SECONDS,
    }
