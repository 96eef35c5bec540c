"""Which origins the perfect-reads server may fetch from (SSRF rules).

A server that fetches any URL a client names can be turned against the
network it runs in (cloud metadata endpoints, admin ports on loopback,
private services). ``OriginPolicy`` refuses:

* a host that matches none of the ``allow_hosts`` patterns (``fnmatch``
  style, e.g. ``*.example.com``; no patterns = any host);
* unless ``allow_private``: a host that resolves to a private, loopback,
  link-local, multicast, reserved or unspecified address, or to a cloud
  metadata address (169.254.169.254, fd00:ec2::254, 100.100.100.200);
* addresses in ``deny_networks``, always.

The rule is checked twice: on the URL before any request (a clear 403), and
by the resolver of the connections the I/O layer opens, so every hop of a
redirect and every re-resolution (DNS rebinding) is checked on the address
actually connected to.
"""

from __future__ import annotations

import asyncio
import fnmatch
import ipaddress
import socket
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from aiohttp.tracing import TraceRequestStartParams

from .._errors import OriginRefusedError, SourceError
from ..io import redact_url
from ..io._loop import run_sync

__all__ = ["REFUSED_MARKER", "GuardedResolver", "OriginPolicy", "guarded_client_kwargs", "is_refusal"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_METADATA = frozenset(
    ipaddress.ip_address(a) for a in ("169.254.169.254", "fd00:ec2::254", "100.100.100.200", "169.254.170.2")
)

#: Class name of the exception the guarded resolver raises; the I/O layer turns it into a
#: SourceError whose message starts with it, which ``is_refusal`` recognises.
REFUSED_MARKER = "OriginAddressRefused"


class OriginAddressRefused(Exception):
    """Raised by the guarded resolver (not an OSError, so it is neither retried nor called a DNS failure)."""


def is_refusal(error: BaseException) -> bool:
    """Whether ``error`` (from the I/O layer) is a connection the policy refused."""
    return isinstance(error, (OriginRefusedError, OriginAddressRefused)) or (
        isinstance(error, SourceError) and f"{REFUSED_MARKER}:" in str(error)
    )


@dataclass(frozen=True)
class OriginPolicy:
    """Hosts and addresses the server may fetch from.

    Args:
        allow_hosts: ``fnmatch`` patterns for host names (case-insensitive); empty = any host.
        allow_private: allow private, loopback and link-local addresses (local testing).
        deny_networks: networks refused even with ``allow_private`` (CIDR strings).
    """

    allow_hosts: tuple[str, ...] = ()
    allow_private: bool = False
    deny_networks: tuple[str, ...] = field(default=())

    def _networks(self) -> list[IPNetwork]:
        return [ipaddress.ip_network(n, strict=False) for n in self.deny_networks]

    def host_allowed(self, host: str) -> bool:
        host = host.lower().rstrip(".")
        return not self.allow_hosts or any(fnmatch.fnmatchcase(host, p.lower()) for p in self.allow_hosts)

    def address_problem(self, address: str) -> str | None:
        """Why ``address`` may not be connected to, or None."""
        try:
            ip: IPAddress = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return "not an IP address"
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        for net in self._networks():
            if ip.version == net.version and ip in net:
                return f"in the denied network {net}"
        if ip in _METADATA:
            return "a cloud metadata address"
        if self.allow_private:
            return None
        if ip.is_loopback:
            return "a loopback address"
        if ip.is_link_local:
            return "a link-local address"
        if ip.is_private or ip.is_reserved or ip.is_multicast or ip.is_unspecified or not ip.is_global:
            return "a private or reserved address"
        return None

    def check_host(self, host: str, addresses: Sequence[str]) -> None:
        """Raise OriginAddressRefused unless ``host`` and every one of its ``addresses`` are allowed."""
        if not self.host_allowed(host):
            raise OriginAddressRefused(f"host {host} is not among the allowed hosts")
        for a in addresses:
            problem = self.address_problem(a)
            if problem is not None:
                raise OriginAddressRefused(f"host {host} resolves to {a}, {problem}")

    async def check_url(self, url: str) -> None:
        """Refuse ``url`` before any request: scheme, host pattern and resolved addresses.

        Raises:
            OriginRefusedError: the URL is not http(s), or its host or an address is refused.
        """
        redacted = redact_url(url)
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise OriginRefusedError(f"{redacted}: only http:// and https:// URLs with a host are accepted.")
        host = parts.hostname
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise OriginRefusedError(f"{redacted}: the URL's port is not valid.") from None
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError:
            return  # unresolvable: the fetch reports it (502) and the resolver checks again
        try:
            self.check_host(host, [str(info[4][0]) for info in infos])
        except OriginAddressRefused as e:
            message = f"{redacted}: refused by the server's origin policy: {e}."
        else:
            return
        raise OriginRefusedError(message)


class GuardedResolver(AbstractResolver):
    """An aiohttp resolver that checks every resolved address against an OriginPolicy.

    Used through ``client_kwargs={"connector": ...}``: the I/O layer's
    connections, redirects included, resolve through it. aiohttp does not
    resolve IP literals, so ``guarded_client_kwargs`` also checks each
    request's host when it starts.
    """

    def __init__(self, policy: OriginPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if not self._policy.host_allowed(host):
            raise OriginAddressRefused(f"host {host} is not among the allowed hosts")
        results = list(await self._inner.resolve(host, port, family))
        self._policy.check_host(host, [str(r["host"]) for r in results])
        return results

    async def close(self) -> None:
        await self._inner.close()


async def _build_client_kwargs(policy: OriginPolicy) -> dict[str, Any]:
    async def on_request_start(_session: Any, _ctx: Any, params: TraceRequestStartParams) -> None:
        host = params.url.host or ""
        try:
            literal = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            if not policy.host_allowed(host):
                raise OriginAddressRefused(f"host {host} is not among the allowed hosts") from None
            return  # a name: the resolver checks its addresses
        policy.check_host(host, [str(literal)])

    trace = aiohttp.TraceConfig()
    trace.on_request_start.append(on_request_start)
    connector = aiohttp.TCPConnector(resolver=GuardedResolver(policy), limit=64)
    return {"connector": connector, "connector_owner": False, "trace_configs": [trace]}


def guarded_client_kwargs(policy: OriginPolicy) -> dict[str, Any]:
    """``client_kwargs`` for RangeSource's ``storage_options`` that enforce ``policy`` on
    every request and connection (built on the I/O layer's event loop; one set per
    policy, so its sessions and connections are shared)."""
    return run_sync(_build_client_kwargs(policy))
