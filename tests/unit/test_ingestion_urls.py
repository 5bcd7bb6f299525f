"""The SSRF guard: which addresses are refused, decided before any connection."""

import asyncio
import ipaddress

import pytest

from ingestion.urlfetch import RefusedUrl, check_url, refusal


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "::1",
        "fe80::1",
        "fd00:ec2::254",
        "::ffff:127.0.0.1",
        "224.0.0.1",
        "240.0.0.1",
    ],
)
def test_inside_addresses_are_refused(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address: str) -> None:
    assert refusal(ipaddress.ip_address(address)) is None


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:3500/v1.0/secrets/secretstore/x",
        "http://localhost/",
        "ftp://example.com/x",
        "http://user:pw@93.184.216.34/",
        "http://metadata.google.internal/",
        "http://[::1]/",
        "http://0x7f000001/",
    ],
)
def test_refused_urls(url: str) -> None:
    with pytest.raises(RefusedUrl):
        asyncio.run(check_url(url))


def test_a_public_literal_address_is_allowed_without_any_lookup() -> None:
    target = asyncio.run(check_url("https://93.184.216.34:8443/doc.pdf"))
    assert str(target.address) == "93.184.216.34" and target.host == "93.184.216.34"
