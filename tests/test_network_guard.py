"""The guard of outbound connections (webhooks, the relay's upstream,
mailboxes' IMAP servers: one rule, lib.http.refusal): an internal address is
refused however it is written, IPv4 hidden in IPv6 (mapped, compatible,
NAT64, 6to4, Teredo) included; a public one passes."""

import pytest

from lib.http import refusal


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "192.168.0.1",
        "169.254.169.254",  # cloud metadata
        "100.64.0.1",  # CGNAT (shared address space)
        "::1",
        "fe80::1",
        "fd00::1",
        "::ffff:127.0.0.1",  # IPv4-mapped
        "::127.0.0.1",  # IPv4-compatible
        "::10.0.0.1",
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "64:ff9b:1::a00:1",  # local-use NAT64 of 10.0.0.1
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
    ],
)
def test_an_internal_address_is_refused_however_it_is_written(address):
    assert refusal(address, allow_private=False)


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "64:ff9b::5db8:d822"])
def test_a_public_address_passes(address):
    assert refusal(address, allow_private=False) == ""


def test_the_installation_setting_lets_private_hosts_through_but_never_a_non_unicast_one():
    assert refusal("10.1.2.3", allow_private=True) == ""
    assert refusal("64:ff9b::a00:1", allow_private=True) == ""
    assert refusal("0.0.0.0", allow_private=True)
    assert refusal("224.0.0.1", allow_private=True)


def test_webhooks_and_the_relay_apply_the_same_rule():
    from integrations import http as webhook_http
    from relay import upstream

    assert webhook_http.refusal is refusal
    assert upstream.http.refusal is refusal
