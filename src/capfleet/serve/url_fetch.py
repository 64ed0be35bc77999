"""Fetching image URLs for clients without becoming a proxy into the server's own network.

Every hop resolves the host once, refuses it unless every address is public (no loopback,
private, link-local, shared or reserved ranges), and connects to exactly the address it checked,
so a DNS answer cannot change between the check and the connection. At most three redirects,
and the body is capped in bytes and the whole fetch, name lookups included, in seconds.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from urllib.parse import urljoin, urlsplit

from capfleet.http_body import BodyTooLarge, read_capped

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_REDIRECTS = (301, 302, 303, 307, 308)
_LOOKUPS = 8  # name lookups at once: ones a silent name server holds cannot take every thread of the service


class FetchError(ValueError):
    """Why a URL gave no image; safe to show to the client."""


def is_public_address(address: IpAddress) -> bool:
    """Globally routable unicast addresses only (an IPv4-mapped IPv6 address counts as its IPv4 one)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Connects to the address that was checked, whatever the host name resolves to now."""

    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self.address, self.port), self.timeout)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float):
        super().__init__(host, port, timeout=timeout)
        self.address = address

    def connect(self) -> None:
        sock = socket.create_connection((self.address, self.port), self.timeout)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)


class UrlFetcher:
    """`fetch(url) -> bytes` under the service's limits; raises FetchError with a one-line reason."""

    def __init__(
        self,
        max_bytes: int,
        timeout_s: float = 10.0,
        max_redirects: int = 3,
        address_allowed: Callable[[IpAddress], bool] = is_public_address,
    ):
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self.address_allowed = address_allowed
        # getaddrinfo has no timeout: it runs here and is waited for only until the fetch's deadline.
        self._resolver = ThreadPoolExecutor(_LOOKUPS, thread_name_prefix="capfleet-dns")

    def fetch(self, url: str) -> bytes:
        deadline = time.monotonic() + self.timeout_s
        for _ in range(self.max_redirects + 1):
            response, connection = self._request(url, deadline)
            try:
                if response.status in _REDIRECTS:
                    location = response.getheader("Location")
                    if not location:
                        raise FetchError(f"{url}: redirect without a Location")
                    try:
                        url = urljoin(url, location)
                    except ValueError as exc:  # e.g. an unclosed [IPv6 literal
                        raise FetchError(f"{url}: redirect to an invalid URL ({exc})") from None
                    continue
                if response.status != 200:
                    raise FetchError(f"{url}: HTTP {response.status}")
                return self._read(response, connection, url, deadline)
            finally:
                connection.close()
        raise FetchError(f"more than {self.max_redirects} redirects")

    def _remaining(self, url: str, deadline: float) -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FetchError(f"{url}: took longer than {self.timeout_s:g} s")
        return remaining

    def _address(self, url: str, host: str, port: int, deadline: float) -> str:
        lookup = self._resolver.submit(socket.getaddrinfo, host, port, type=socket.SOCK_STREAM)
        try:
            infos = lookup.result(timeout=self._remaining(url, deadline))
        except FutureTimeout:
            lookup.cancel()  # still queued behind lookups that hang: it never starts
            raise FetchError(f"{url}: took longer than {self.timeout_s:g} s") from None
        except socket.gaierror as exc:
            raise FetchError(f"cannot resolve {host}: {exc.strerror}") from None
        except UnicodeError:  # the IDNA encoding refuses the name: a label empty or over 63 characters
            raise FetchError(f"cannot resolve {host[:200]}: not a valid host name") from None
        addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
        refused = [str(address) for address in addresses if not self.address_allowed(address)]
        if refused:
            raise FetchError(f"refusing to fetch from {host}: {refused[0]} is not a public address")
        return str(addresses[0])

    def _request(self, url: str, deadline: float):
        try:
            parts = urlsplit(url)
            port = parts.port  # raises on a port out of range or not a number
        except ValueError as exc:  # also an unclosed [IPv6 literal
            raise FetchError(f"{url[:200]}: not a valid URL ({exc})") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise FetchError(f"{url[:200]}: only http and https URLs can be fetched")
        secure = parts.scheme == "https"
        port = port or (443 if secure else 80)
        address = self._address(url, parts.hostname, port, deadline)
        connection_class = _PinnedHTTPSConnection if secure else _PinnedHTTPConnection
        connection = connection_class(parts.hostname, port, address, self._remaining(url, deadline))
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        try:
            connection.request("GET", path, headers={"User-Agent": "capfleet-serve", "Accept": "image/*"})
            return connection.getresponse(), connection
        except (OSError, http.client.HTTPException) as exc:
            connection.close()
            if isinstance(exc, TimeoutError):
                raise FetchError(f"{url}: took longer than {self.timeout_s:g} s") from None
            raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from None

    def _read(self, response, connection, url: str, deadline: float) -> bytes:
        def shorten_timeout(remaining: float) -> None:
            if connection.sock is not None:  # (a closing response has moved its socket out of reach)
                connection.sock.settimeout(remaining)

        try:
            return read_capped(response, self.max_bytes, deadline, shorten_timeout)
        except BodyTooLarge as exc:
            size = f"{exc.declared} bytes is" if exc.declared else "the body is"
            raise FetchError(f"{url}: {size} more than the {self.max_bytes} allowed") from None
        except (OSError, http.client.HTTPException) as exc:
            if isinstance(exc, TimeoutError):
                raise FetchError(f"{url}: took longer than {self.timeout_s:g} s") from None
            raise FetchError(f"{url}: {type(exc).__name__}: {exc}") from None
