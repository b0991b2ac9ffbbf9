"""Where a visit came from: channel, source, search engine and keyword, from
UTM tags, click ids and the referrer, the way analytics tools group traffic;
and "last non-direct": a direct return keeps the earlier source for a while.

Pure functions: no database, no settings."""

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from urllib.parse import parse_qs, urlsplit

from .domains import host_of, parse_domains  # noqa: F401 - parse_domains: part of what channels offers
from .models import Channel

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content")

# Click ids an ad network appends to its links → the source they name.
SEARCH_AD_CLICK_IDS = {"gclid": "google", "wbraid": "google", "gbraid": "google", "yclid": "yandex", "msclkid": "bing"}
SOCIAL_AD_CLICK_IDS = {"ttclid": "tiktok", "twclid": "twitter", "li_fat_id": "linkedin"}
DISPLAY_CLICK_IDS = {"dclid": "google"}
# Facebook adds fbclid to every outbound link, ad or post: it names the source, not a paid channel.
SOCIAL_CLICK_IDS = {"fbclid": "facebook"}
CLICK_ID_SOURCES = {**SEARCH_AD_CLICK_IDS, **SOCIAL_AD_CLICK_IDS, **DISPLAY_CLICK_IDS, **SOCIAL_CLICK_IDS}
CLICK_ID_KEYS = tuple(CLICK_ID_SOURCES)

# utm_medium values, as GA4's default channel groups read them.
PAID_MEDIUM_RE = re.compile(r"\A(?:.*cp.*|ppc|retargeting|paid.*)\Z")
DISPLAY_MEDIUMS = {"display", "banner", "expandable", "interstitial", "cpm"}
SOCIAL_MEDIUMS = {"social", "social-network", "social_network", "social network", "social-media", "social_media"}
SOCIAL_MEDIUMS |= {"social media", "sm", "smm"}
EMAIL_MEDIUMS = {"email", "e-mail", "e_mail", "e mail", "newsletter", "mail"}

# (domain pattern, engine name, query parameter holding the keyword). A pattern
# ending in a dot matches the name under any suffix (see _host_is).
SEARCH_ENGINES = (
    ("google.", "google", "q"),
    ("yandex.", "yandex", "text"),
    ("ya.ru", "yandex", "text"),
    ("bing.com", "bing", "q"),
    ("duckduckgo.com", "duckduckgo", "q"),
    ("yahoo.", "yahoo", "p"),
    ("go.mail.ru", "mail.ru", "q"),
    ("rambler.ru", "rambler", "query"),
    ("baidu.com", "baidu", "wd"),
    ("ecosia.org", "ecosia", "q"),
    ("search.brave.com", "brave", "q"),
    ("startpage.com", "startpage", "query"),
    ("qwant.com", "qwant", "q"),
    ("seznam.cz", "seznam", "q"),
    ("naver.com", "naver", "query"),
)
SEARCH_ENGINE_NAMES = {name for _, name, _ in SEARCH_ENGINES}
# Webmail under a search engine's domain: a click in a letter, not a search.
WEBMAIL_DOMAINS = (
    "mail.google.com",
    "mail.yandex.ru",
    "mail.yandex.com",
    "e.mail.ru",
    "mail.rambler.ru",
    "mail.yahoo.com",
    "outlook.live.com",
    "outlook.office.com",
    "outlook.office365.com",
)
SOCIAL_DOMAINS = (
    "facebook.com",
    "instagram.com",
    "vk.com",
    "vk.ru",
    "vkvideo.ru",
    "ok.ru",
    "t.me",
    "telegram.org",
    "twitter.com",
    "x.com",
    "t.co",
    "linkedin.com",
    "youtube.com",
    "tiktok.com",
    "pinterest.",
    "reddit.com",
    "dzen.ru",
    "zen.yandex.ru",
    "threads.net",
    "snapchat.com",
    "whatsapp.com",
    "quora.com",
)
SOCIAL_SOURCE_NAMES = {
    "facebook",
    "fb",
    "instagram",
    "ig",
    "meta",
    "vk",
    "vkontakte",
    "ok",
    "odnoklassniki",
    "telegram",
    "tg",
    "twitter",
    "x",
    "linkedin",
    "youtube",
    "tiktok",
    "pinterest",
    "reddit",
    "dzen",
    "threads",
    "snapchat",
    "whatsapp",
}
EMAIL_SOURCE_NAMES = {"email", "e-mail", "e_mail", "e mail", "newsletter"}
# "google." in SEARCH_ENGINES: google.com, www.google.co.uk, m.yandex.kz; not accounts.google.com,
# oauth.yandex.ru or google.evil.test, which are no search pages.
SEARCH_SUBDOMAINS = ("", "www.", "m.", "search.")
COUNTRY_SUFFIX_RE = re.compile(r"\A(?:[a-z]{2,3}|com?\.[a-z]{2})\Z")


@dataclass
class Source:
    channel: str
    source: str
    keyword: str
    utm: dict
    click_ids: dict
    search_engine: str = ""
    inherited: bool = False  # kept from an earlier visit (last non-direct)


def _host_is(host: str, pattern: str) -> bool:
    """`pattern` is a domain (matches itself and its subdomains) or, ending in a
    dot, a name under any suffix ("google." matches google.com, news.google.co.uk);
    never a bare substring, so netflix.com is not x.com and olya.ru is not ya.ru."""
    if not host:
        return False
    if pattern.endswith("."):
        return host.startswith(pattern) or "." + pattern in host
    return host == pattern or host.endswith("." + pattern)


@lru_cache(maxsize=4096)
def _host_in(host: str, patterns: tuple[str, ...]) -> bool:
    """Whether `host` matches one of `patterns` (_host_is); hosts repeat from
    visit to visit, so the answer is remembered."""
    return bool(host) and any(_host_is(host, pattern) for pattern in patterns)


def _is_search_host(host: str, pattern: str) -> bool:
    if not pattern.endswith("."):
        return _host_is(host, pattern)
    for sub in SEARCH_SUBDOMAINS:
        if host.startswith(sub + pattern) and COUNTRY_SUFFIX_RE.match(host[len(sub + pattern) :]):
            return True
    return False


@lru_cache(maxsize=4096)
def _search_engine(host: str) -> tuple[str, str] | None:
    if not host or _host_in(host, WEBMAIL_DOMAINS):
        return None
    return next(((name, param) for pattern, name, param in SEARCH_ENGINES if _is_search_host(host, pattern)), None)


def _query(url: str) -> dict:
    try:
        return parse_qs(urlsplit(url).query)
    except ValueError:
        return {}


def classify(url: str, referrer: str, own_host: str = "", excluded: tuple[str, ...] = ()) -> Source:
    """Channel, source, search engine and keyword of a visit that landed on `url`
    from `referrer`. A referrer on the site itself (`own_host`) or on the
    `excluded` list (payment gateways, sign-in providers) counts as none.

    Every page view is classified (a returning visitor's tells whether it
    starts a new campaign), and a site's pages and referrers repeat from
    visitor to visitor: the answers are remembered (CLASSIFIED_KEPT of them),
    each caller getting its own copy of the tags and click ids."""
    known = _classified(url, referrer, own_host, tuple(excluded))
    return Source(
        known.channel,
        known.source,
        known.keyword,
        dict(known.utm),
        dict(known.click_ids),
        known.search_engine,
        known.inherited,
    )


CLASSIFIED_KEPT = 1024


@lru_cache(maxsize=CLASSIFIED_KEPT)
def _classified(url: str, referrer: str, own_host: str, excluded: tuple[str, ...]) -> Source:
    query = _query(url)
    utm = {key: (query.get(key) or [""])[0][:200] for key in UTM_KEYS}
    click_ids = {key: query[key][0][:200] for key in CLICK_ID_KEYS if query.get(key)}
    ref_host = host_of(referrer)
    if ref_host and _host_in(ref_host, tuple(d for d in (own_host, *excluded) if d)):
        ref_host = ""
    medium = utm["utm_medium"].lower()
    utm_source = utm["utm_source"].lower()
    engine = _search_engine(ref_host)
    webmail = _host_in(ref_host, WEBMAIL_DOMAINS)
    social = (
        utm_source in SOCIAL_SOURCE_NAMES
        or _host_in(utm_source, SOCIAL_DOMAINS)
        or _host_in(ref_host, SOCIAL_DOMAINS)
        or any(k in click_ids for k in SOCIAL_CLICK_IDS)
    )
    if social:
        engine = None  # zen.yandex.ru is a feed, not a search
    search_named = engine is not None or utm_source in SEARCH_ENGINE_NAMES

    if medium in DISPLAY_MEDIUMS or (
        any(k in click_ids for k in DISPLAY_CLICK_IDS) and not PAID_MEDIUM_RE.match(medium)
    ):
        channel = Channel.DISPLAY
    elif any(k in click_ids for k in SOCIAL_AD_CLICK_IDS) or (PAID_MEDIUM_RE.match(medium) and social):
        channel = Channel.PAID_SOCIAL
    elif PAID_MEDIUM_RE.match(medium) or any(k in click_ids for k in SEARCH_AD_CLICK_IDS):
        channel = Channel.PAID
    elif medium in EMAIL_MEDIUMS or utm_source in EMAIL_SOURCE_NAMES or webmail:
        channel = Channel.EMAIL
    elif medium in SOCIAL_MEDIUMS or social:
        channel = Channel.SOCIAL
    elif medium == "organic" or search_named:
        channel = Channel.ORGANIC
    elif utm["utm_source"] or medium or ref_host:
        channel = Channel.REFERRAL
    else:
        channel = Channel.DIRECT

    click_source = next((CLICK_ID_SOURCES[k] for k in click_ids), "")
    search_engine = ""
    if channel in (Channel.PAID, Channel.ORGANIC):
        search_engine = (
            engine[0]
            if engine
            else utm_source
            if utm_source in SEARCH_ENGINE_NAMES
            else next((SEARCH_AD_CLICK_IDS[k] for k in click_ids if k in SEARCH_AD_CLICK_IDS), "")
        )
    keyword = utm["utm_term"]
    if not keyword and engine:
        keyword = (_query(referrer).get(engine[1]) or [""])[0][:200]
    source = utm["utm_source"] or ref_host or click_source
    return Source(
        channel=channel,
        source=source[:200],
        keyword=keyword,
        utm=utm,
        click_ids=click_ids,
        search_engine=search_engine,
    )


NO_SOURCE_CHANNELS = (Channel.DIRECT, Channel.STATIC, Channel.UNKNOWN)


def last_non_direct(source: Source, earlier, now: datetime, days: int) -> Source:
    """The source a new session records. A direct visit (typed address,
    bookmark, excluded referrer) within `days` days of the start of the
    visitor's last session that had a source of its own (`earlier`: a Session,
    or None) keeps that session's channel, source, keyword, UTM tags and click
    ids, marked inherited, so a customer who clicked an ad and came back by
    typing the address still counts for the ad. `days` 0 turns this off."""
    if source.channel != Channel.DIRECT or days <= 0 or earlier is None:
        return source
    if earlier.channel in NO_SOURCE_CHANNELS or earlier.source_inherited:
        return source
    if not timedelta(0) <= now - earlier.started_at <= timedelta(days=days):
        return source
    return Source(
        channel=earlier.channel,
        source=earlier.source,
        keyword=earlier.keyword,
        utm={key: getattr(earlier, key) for key in UTM_KEYS},
        click_ids=dict(earlier.click_ids or {}),
        search_engine=earlier.search_engine,
        inherited=True,
    )
