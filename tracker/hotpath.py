"""The collect endpoint's fast path: a returning visitor's page view or
heartbeat answered from Redis, with no database round trip.

After a write-through page view (the slow path) the answer is cached per
visitor. A later request is answered from that entry only when nothing
decides differently: same site configuration, same session (not timed out,
no new campaign, no new analytics ids), and a lease whose expiry *in the
database* is still at least half its hold away. Its activity is written
behind (substitution.activity) and reaches PostgreSQL within the flush
interval; anything else goes the slow path, where PostgreSQL decides.

The check and the update run in one Lua script, atomically, so a lease taken
over meanwhile (which deletes the entry) is never brought back by a racing
page view.
"""

import json
from datetime import datetime

from django.conf import settings

from substitution import activity

from .models import Channel

MARGIN_FRACTION = 0.5


def _timeout_seconds() -> float:
    return settings.SESSION_TIMEOUT.total_seconds()


def session_key_of(channel: str, source: str, campaign: str) -> str:
    """What tells one campaign's session from another's."""
    return json.dumps([channel, source, campaign])


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
    # Sent without waiting for Redis's answer: the answer to the snippet
    # does not depend on it, and a lost entry only means one more slow path.
    activity.send_without_reply("SET", activity.visit_key(site_id, vid), json.dumps(entry), "EX", hold_minutes * 60)


def forget(site_id: int, vid: str) -> None:
    if activity.enabled():
        activity.redis().delete(activity.visit_key(site_id, vid))


def answer(
    *, site_id: int, fingerprint: str, request, source, now: datetime, rate_bucket: str = "", rate_limit: int = 0
):
    """("hit", response), ("miss", None) for the slow path, or ("limited", None).
    One Redis round trip (substitution.activity.fast_page_view), which also
    counts the request against the rate limit when `rate_bucket` is given."""
    if not activity.enabled() or not request.vid:
        return "miss", None
    campaign_key = ""
    if not request.heartbeat and source.channel != Channel.DIRECT:
        campaign_key = session_key_of(source.channel, source.source, source.utm["utm_campaign"])
    outcome, hit = activity.fast_page_view(
        key=activity.visit_key(site_id, request.vid),
        rate_bucket=rate_bucket,
        rate_limit=rate_limit,
        fingerprint=fingerprint,
        now=now.timestamp(),
        session_timeout=_timeout_seconds(),
        margin=MARGIN_FRACTION,
        ga=request.ga,
        ym=request.ym,
        session_key=campaign_key,
        page_view=not request.heartbeat,
        url=request.url,
    )
    if outcome != "hit":
        return outcome, None
    subs, hold = hit
    return "hit", {
        "vid": request.vid,
        "subs": subs,
        "exp": int(now.timestamp() + hold * 60),
        "hb": settings.HEARTBEAT_SECONDS,
    }
