"""The enforcement scope: which inbound paths count towards throttling and blocking.

Exchange Online enforces only on mail that reaches it through inbound connectors of type
OnPremises. An operator names the paths that count here, by any of:

    connectors       connector names or ids, matched without regard to case and with shell
                     wildcards: a tracking log's connector-id ("EX01\\Default Frontend EX01"), an
                     Exchange Online export's connector, a Postfix service ("postfix/hybrid/smtpd")
    client_networks  the connecting client's address, as CIDR ranges
    tls_peers        the TLS peer name, where a log carries one (shell wildcards)

A path is in scope when it matches any of them. With no scope configured every path counts.
Servers seen only outside the scope are still reported, never throttled or blocked. The
`[policy.scope]` table is read and checked with the rest of the policy (pipeline.domain.config).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from pipeline.domain import hostnames

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Scope:
    connectors: tuple[str, ...] = ()
    client_networks: tuple[IPNetwork, ...] = ()
    tls_peers: tuple[str, ...] = ()

    @classmethod
    def named(cls, connectors: Iterable[str], client_networks: Iterable[IPNetwork], tls_peers: Iterable[str]) -> Scope:
        """The scope the operator named; names match in any case."""
        return cls(tuple(c.lower() for c in connectors), tuple(client_networks), tuple(p.lower() for p in tls_peers))

    @property
    def everything(self) -> bool:
        return not (self.connectors or self.client_networks or self.tls_peers)

    def admits(self, connector: str | None, client_ip: str | None, tls_peer: str | None) -> bool:
        if self.everything:
            return True
        return _admits(self, (connector or "").lower(), client_ip or "", (tls_peer or "").lower())


@lru_cache(maxsize=65536)
def _admits(scope: Scope, connector: str, client_ip: str, tls_peer: str) -> bool:
    if connector and any(hostnames.matches(pattern, connector) for pattern in scope.connectors):
        return True
    if tls_peer and any(hostnames.matches(pattern, tls_peer) for pattern in scope.tls_peers):
        return True
    if client_ip and scope.client_networks:
        found = hostnames.address(client_ip)
        return found is not None and any(found in network for network in scope.client_networks)
    return False
