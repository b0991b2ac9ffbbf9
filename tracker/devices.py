"""Device type, OS and browser from the user agent (ua-parser), and known bots
(the crawler-user-agents list, ua-parser's "Spider" devices and a few
patterns of our own). Pure functions, cached per user agent: the collect
endpoint asks on every call."""

import re
from dataclasses import dataclass
from functools import lru_cache

import crawleruseragents
import ua_parser

from .models import DeviceType

MAX_USER_AGENT = 500
# Automation the crawler list leaves out: test runners and headless tooling.
EXTRA_BOT_RE = re.compile(r"\AJava/\d|Cypress/|WebDriver")
MOBILE_RE = re.compile(r"Mobi|iPhone|iPod|Windows Phone|BlackBerry|Opera Mini|KAIOS", re.I)
TABLET_RE = re.compile(r"iPad|Tablet|Kindle|Silk/|PlayBook|Android(?!.*Mobi)", re.I)
MOBILE_OSES = {"iOS", "Android", "Windows Phone", "BlackBerry OS", "KaiOS", "Symbian OS", "Firefox OS", "HarmonyOS"}
TABLET_FAMILIES = {"iPad", "Kindle", "Kindle Fire"}


@dataclass(frozen=True)
class Device:
    device_type: str
    os: str = ""
    os_version: str = ""
    browser: str = ""
    browser_version: str = ""
    is_bot: bool = False


def _version(*parts) -> str:
    return ".".join(str(p) for p in parts[:2] if p not in (None, ""))[:32]


def _family(value) -> str:
    family = getattr(value, "family", "") or ""
    return "" if family == "Other" else family[:64]


@lru_cache(maxsize=4096)
def inspect_user_agent(user_agent: str) -> Device:
    """What a user agent says about the visitor's device. An empty user agent is
    "unknown", not a bot: some privacy tools strip the header."""
    user_agent = (user_agent or "")[:MAX_USER_AGENT]
    if not user_agent.strip():
        return Device(DeviceType.UNKNOWN)
    parsed = ua_parser.parse(user_agent)
    device, os, browser = parsed.device, parsed.os, parsed.user_agent
    is_bot = (
        (device is not None and device.family == "Spider")
        or crawleruseragents.is_crawler(user_agent)
        or EXTRA_BOT_RE.search(user_agent) is not None
    )
    os_family, device_family = _family(os), _family(device)
    brand = (getattr(device, "brand", "") or "") if device else ""
    if is_bot:
        kind = DeviceType.BOT
    elif device_family in TABLET_FAMILIES or brand.endswith("_Tablet") or TABLET_RE.search(user_agent):
        kind = DeviceType.TABLET
    elif os_family in MOBILE_OSES or MOBILE_RE.search(user_agent):
        kind = DeviceType.MOBILE
    else:
        kind = DeviceType.DESKTOP
    return Device(
        device_type=kind,
        os=os_family,
        os_version=_version(os.major, os.minor) if os_family else "",
        browser=_family(browser),
        browser_version=_version(browser.major) if _family(browser) else "",
        is_bot=is_bot,
    )
