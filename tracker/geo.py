"""Country and city of an IP address from a MaxMind-format database (GeoLite2
City or compatible) at settings.GEOIP_DATABASE, and the truncated address
that is all a session keeps.

No database configured, a missing or broken file, an address it does not
know: an empty answer, never an error (geo is a nicety, a page view is not)."""

import ipaddress
import logging
import os
import threading
from dataclasses import dataclass
from functools import lru_cache

import maxminddb
from django.conf import settings

log = logging.getLogger(__name__)

CITY_LANGUAGES = ("en", "ru")  # the first the database has wins
# What truncate_ip keeps of an address: the /24 of IPv4, the /48 of IPv6.
IPV4_NETWORK = 0xFFFFFF00
IPV6_NETWORK = ((1 << 48) - 1) << 80


@dataclass(frozen=True)
class Geo:
    country: str = ""
    city: str = ""
    region: str = ""


NOWHERE = Geo()

_lock = threading.Lock()
_opened: dict = {"key": None, "reader": None}


def _reader(path: str):
    """The open database, reopened when the file is replaced (monthly updates)."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    key = (path, stat.st_mtime_ns, stat.st_size)
    if _opened["key"] == key:
        return _opened["reader"]
    with _lock:
        if _opened["key"] != key:
            reader = None
            try:
                reader = maxminddb.open_database(path)
            except (OSError, ValueError, maxminddb.InvalidDatabaseError) as error:
                log.warning("GeoIP database %s cannot be read: %s", path, error)
            # The old reader is left to the garbage collector: another thread may be reading it.
            _opened.update(key=key, reader=reader)
        return _opened["reader"]


def _name(record) -> str:
    names = record.get("names") if isinstance(record, dict) else None
    if not isinstance(names, dict) or not names:
        return ""
    for language in CITY_LANGUAGES:
        if isinstance(names.get(language), str):
            return names[language]
    first = next(iter(names.values()))
    return first if isinstance(first, str) else ""


def locate(ip: str) -> Geo:
    """Country (ISO code), region and city of `ip`."""
    path = getattr(settings, "GEOIP_DATABASE", "")
    if not path or not ip:
        return NOWHERE
    reader = _reader(str(path))
    if reader is None:
        return NOWHERE
    try:
        address = ipaddress.ip_address(ip.strip())
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
            address = address.ipv4_mapped  # databases file IPv4 apart from ::ffff:0:0/96
        record = reader.get(address)
    except (ValueError, TypeError, maxminddb.InvalidDatabaseError):
        return NOWHERE
    if not isinstance(record, dict):
        return NOWHERE
    country = record.get("country") or record.get("registered_country") or {}
    code = country.get("iso_code", "") if isinstance(country, dict) else ""
    subdivisions = record.get("subdivisions")
    region = _name(subdivisions[0]) if isinstance(subdivisions, list) and subdivisions else ""
    return Geo(
        country=code.upper()[:2] if isinstance(code, str) else "",
        region=region[:100],
        city=_name(record.get("city"))[:100],
    )


@lru_cache(maxsize=4096)
def truncate_ip(ip: str) -> str | None:
    """The network of an address: IPv4 to /24, IPv6 to /48 (IPv4-mapped IPv6
    as IPv4), enough for abuse and geo reports, not enough to name a person."""
    try:
        address = ipaddress.ip_address((ip or "").strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    if address.version == 4:
        return str(ipaddress.IPv4Address(int(address) & IPV4_NETWORK))
    return str(ipaddress.IPv6Address(int(address) & IPV6_NETWORK))
