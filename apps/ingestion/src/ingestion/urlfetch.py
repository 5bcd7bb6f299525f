"""Fetching a document from a URL without letting the URL reach inside (SSRF guard).

Every address the host name resolves to is checked before any connection is made: loopback,
private, link-local (which holds the cloud metadata service at 169.254.169.254), shared,
multicast, reserved and unspecified addresses are refused. The connection then goes to the
address that was checked (the name is not resolved a second time, so DNS rebinding cannot swap
it), with the original name in the Host header and TLS SNI. Redirects are followed by hand, each
hop checked the same way.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit, urlunsplit

import httpx

from ingestion.extract import DocumentTooLarge

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Names that point at metadata services whatever they resolve to.
_METADATA_NAMES = {"metadata.google.internal", "metadata", "instance-data", "instance-data.ec2.internal"}
_MAX_REDIRECTS = 3


class RefusedUrl(ValueError):
    """The URL points somewhere this service must not go."""


class FetchFailed(ValueError):
    """The URL was allowed, but nothing usable came back."""


def refusal(address: IPAddress) -> str | None:
    """Why an address is off limits, or None when it is a public unicast address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal(address.ipv4_mapped)
    checks = (
        ("loopback", address.is_loopback),
        ("link-local (includes cloud metadata)", address.is_link_local),
        ("private", address.is_private),
        ("multicast", address.is_multicast),
        ("unspecified", address.is_unspecified),
        ("reserved", address.is_reserved),
        ("not globally routable", not address.is_global),
    )
    return next((f"{address} is a {name} address" for name, hit in checks if hit), None)


@dataclass(frozen=True)
class Target:
    """A vetted URL: its host and the public address it resolved to (the one connected to)."""

    url: str
    host: str
    address: IPAddress


async def check_url(url: str) -> Target:
    """Resolve and vet a URL; raises RefusedUrl before any connection is attempted."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise RefusedUrl("only http and https URLs are fetched")
    if parts.username or parts.password:
        raise RefusedUrl("URLs with credentials are refused")
    host = (parts.hostname or "").rstrip(".").lower()
    if not host:
        raise RefusedUrl("the URL has no host")
    if host in _METADATA_NAMES or host == "localhost" or host.endswith(".localhost"):
        raise RefusedUrl(f"{host} is not an allowed host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as error:
        raise RefusedUrl("the URL's port is not valid") from error
    try:
        literal = ipaddress.ip_address(host)
        addresses: list[IPAddress] = [literal]
    except ValueError:
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except socket.gaierror as error:
            raise FetchFailed(f"{host} does not resolve") from error
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    # Every address must be allowed: otherwise a name with one public and one private address
    # lets the connection pick the private one.
    for address in addresses:
        if (reason := refusal(address)) is not None:
            raise RefusedUrl(f"{host} refused: {reason}")
    return Target(url, host, addresses[0])


def _pinned_url(target: Target) -> str:
    parts = urlsplit(target.url)
    address = f"[{target.address}]" if target.address.version == 6 else str(target.address)
    netloc = f"{address}:{parts.port}" if parts.port else address
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


async def fetch(url: str, *, max_bytes: int, timeout: float = 10.0) -> tuple[bytes, str | None, str]:
    """The body, media type and final URL of a GET on a vetted URL, at most `max_bytes` long."""
    async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as http:
        for _ in range(_MAX_REDIRECTS + 1):
            target = await check_url(url)
            request = http.build_request(
                "GET",
                _pinned_url(target),
                headers={"Host": urlsplit(url).netloc.rsplit("@", 1)[-1], "Accept": "*/*"},
                extensions={"sni_hostname": target.host},
            )
            try:
                response = await http.send(request, stream=True)
            except httpx.HTTPError as error:
                raise FetchFailed(f"fetching {target.host} failed") from error
            try:
                if response.is_redirect and "location" in response.headers:
                    url = urljoin(url, response.headers["location"])
                    continue
                if response.status_code >= 400:
                    raise FetchFailed(f"{target.host} answered {response.status_code}")
                body = bytearray()
                async for piece in response.aiter_bytes():
                    body.extend(piece)
                    if len(body) > max_bytes:
                        raise DocumentTooLarge(f"the document at the URL is larger than {max_bytes} bytes")
                return bytes(body), response.headers.get("content-type"), url
            finally:
                await response.aclose()
    raise FetchFailed("too many redirects")
