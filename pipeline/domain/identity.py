"""Which servers a trace event tells us about, and which build each of them runs.

- Header chains: the connecting server is the `by` host of the newest Received header not written
  by our own infrastructure (trusted_receivers, internal_hops) nor by Exchange Online (15.20+
  builds). Servers deeper in the chain are sighted too, marked as behind that relay. When every
  header is ours, the sender wrote none of its own: the `from` host (or IP) of our oldest header
  connected to us, unless that is ours too or an authenticated submission (ESMTPA, ESMTPSA).
- Message tracking logs: the build in #Version / schema-version is that of the server that wrote
  the line, not of the remote sender. Exchange 2010 writes the constant 14.0.0.0: the product is
  known, the build is not.
- Exchange Online traces, Postfix and Exim logs: the connecting host, as traffic without a build.
  Loopback clients and internal hops (a content filter handing mail back) are not servers.

Every sighting says whether its trace came through an inbound path of the enforcement scope.

The answer depends only on the fields `identity_key` lists, so callers may compute it once for
many traces that share them.
"""
from __future__ import annotations

import ipaddress
import re
from functools import lru_cache
from typing import TypeGuard

from pipeline.domain import hostnames
from pipeline.domain.builds import Build
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace, Sighting, server_id_of
from pipeline.domain.parsers import msgtrk
from pipeline.domain.received import Hop, read_hop

# Event ids of rows that describe a server handing a message in (None: the format has no event id).
_INBOUND_EVENTS = frozenset({None, "RECEIVE", "ARRIVAL"})
# RFC 3848 protocol names of authenticated submissions: a user's mail program, not a server.
_AUTHENTICATED = re.compile(r"\bwith\s+(?:UTF8)?(?:E?SMTPS?A|LMTPS?A)\b", re.I)
# A header written on delivery into a mailbox store over LMTP: the last step inside our own site,
# whatever the store is called (it is never the sender's relay).
_LOCAL_DELIVERY = re.compile(r"\bwith\s+LMTPS?\b", re.I)
# Postfix's smtpd_tls_received_header: the client certificate's name in our receiver's header.
_CLIENT_CN = re.compile(r'\(Client CN "(?P<name>[^"]+)"')


def sightings(trace: MessageTrace, config: PolicyConfig) -> list[Sighting]:
    """The servers one trace event names (zero or more)."""
    if trace.received:
        return _from_chain(trace, config)
    in_scope = config.scope.admits(trace.connector_id, trace.client_ip, trace.tls_peer)
    if trace.source_format == msgtrk.FORMAT:
        return _from_log_writer(trace, in_scope)
    return _from_connecting_host(trace, config, in_scope)


def identity_key(trace: MessageTrace) -> tuple | None:
    """Every field `sightings` reads, for traces without a Received chain (None for those with one:
    a chain is nearly always unique to its message, so there is nothing to share)."""
    if trace.received:
        return None
    return (trace.source_format, trace.event_id, trace.logged_by, trace.logged_by_build,
            trace.client_hostname, trace.client_ip, trace.org, trace.connector_id, trace.tls_peer)


def is_trusted(host: str, config: PolicyConfig) -> bool:
    return _matches_any(host, config.trusted_receivers)


def is_internal(host: str | None, ip: str | None, config: PolicyConfig) -> bool:
    """A hop inside our own set-up: loopback, or named in internal_hops (host patterns or CIDR ranges)."""
    return _internal(host or "", ip or "", config.internal_hops)


@lru_cache(maxsize=65536)
def _matches_any(host: str, patterns: tuple[str, ...]) -> bool:
    return any(hostnames.matches(pattern, host) for pattern in patterns)


@lru_cache(maxsize=65536)
def _internal(host: str, ip: str, patterns: tuple[str, ...]) -> bool:
    if hostnames.is_loopback(host, ip):
        return True
    host = host.lower()
    found = hostnames.address(ip) or hostnames.address(host)
    if found is not None and any(found in network for network in _networks(patterns)):
        return True
    return bool(host) and any(hostnames.matches(pattern, host) for pattern in patterns if "/" not in pattern)


@lru_cache(maxsize=64)
def _networks(patterns: tuple[str, ...]) -> tuple:
    """The CIDR ranges among internal_hops (checked when the settings were read)."""
    return tuple(ipaddress.ip_network(pattern, strict=False) for pattern in patterns if "/" in pattern)


def _from_chain(trace: MessageTrace, config: PolicyConfig) -> list[Sighting]:
    hops = [read_hop(value) for value in trace.received]
    ours = [not hop.by or _ours(hop.by, hop, config) for hop in hops]
    start = next((i for i, hop in enumerate(hops) if not ours[i] and _nameable(hop.by)), None)
    # Our oldest header before the sender's: its `from` is who connected to us.
    edge = next((hops[i] for i in range((len(hops) if start is None else start) - 1, -1, -1) if hops[i].by), None)
    peer = _CLIENT_CN.search(edge.text) if edge else None
    in_scope = config.scope.admits(trace.connector_id, trace.client_ip or (edge.from_ip if edge else None),
                                   trace.tls_peer or (peer.group("name") if peer else None))
    if start is None:
        sender = _sender_of(edge, config) if edge else None
        return [_sighting(trace, sender, build=None, software=None, evidence="received-from",
                          in_scope=in_scope)] if sender else []
    connecting = hops[start].by
    by_server: dict[str, list[Hop]] = {}
    for hop, is_ours in zip(hops[start:], ours[start:], strict=True):
        if not is_ours and _nameable(hop.by):
            by_server.setdefault(hop.by, []).append(hop)
    found = []
    for server, stamped in by_server.items():
        builds = [(Build.parse(h.build), h) for h in stamped if h.build]
        best = max(builds, key=lambda pair: pair[0] or Build(()), default=(None, None))[1]
        found.append(_sighting(
            trace, server,
            build=best.build if best else None,
            software=best.software if best else next((h.software for h in stamped if h.software), None),
            evidence=best.evidence if best and best.evidence else "received-traffic",
            behind_relay=None if server == connecting else connecting,
            in_scope=in_scope,
        ))
    return found


def _sender_of(edge: Hop, config: PolicyConfig) -> str | None:
    """The host that handed the message to our oldest header's writer, when it is a server."""
    if _AUTHENTICATED.search(edge.text) or is_internal(edge.from_host, edge.from_ip, config):
        return None
    for name in (edge.from_host, edge.from_ip):
        name = (name or "").strip("[]").rstrip(".").lower()
        if _nameable(name) and name != "unknown":
            return None if is_trusted(name, config) or _cloud_neighbour(name, edge) else name
    return None


def _cloud_neighbour(host: str, edge: Hop) -> bool:
    """Exchange Online handing mail between its own servers (one parent domain, a 15.20+ build)."""
    assert edge.by is not None, "the edge is our oldest header that names its writer"
    build = Build.parse(edge.build) if edge.software is None else None
    return bool(build and build.is_cloud) and host.partition(".")[2] == edge.by.partition(".")[2]


def _ours(by: str, hop: Hop, config: PolicyConfig) -> bool:
    """Whether `by`, the writer of the header `hop`, is our own infrastructure or Exchange Online."""
    build = Build.parse(hop.build) if hop.software is None else None
    return (is_trusted(by, config) or is_internal(by, None, config) or bool(build and build.is_cloud)
            or _LOCAL_DELIVERY.search(hop.text) is not None)


def _nameable(host: str | None) -> TypeGuard[str]:
    return bool(host) and hostnames.problem(host) is None


def _from_log_writer(trace: MessageTrace, in_scope: bool) -> list[Sighting]:
    if trace.logged_by is None:
        return []
    product = msgtrk.PRODUCT_VERSIONS.get(trace.logged_by_build or "")
    if product:
        # A version that names the product only (Exchange 2010's constant, header-less 2007 rows).
        return [_sighting(trace, trace.logged_by, build=None, software=product, evidence="msgtrk-version",
                          in_scope=in_scope)]
    build = Build.parse(msgtrk.writer_build(trace.logged_by_build))
    if build is not None and build.is_cloud:
        # Exchange Online's own servers write 15.20+ builds; they are never on-premises servers.
        return []
    return [_sighting(trace, trace.logged_by, build=str(build) if build else None, software=None,
                      evidence="msgtrk-version" if build else "msgtrk-traffic", in_scope=in_scope)]


def _from_connecting_host(trace: MessageTrace, config: PolicyConfig, in_scope: bool) -> list[Sighting]:
    if trace.event_id not in _INBOUND_EVENTS:
        return []
    server = trace.client_hostname or trace.client_ip
    if not server or is_trusted(server, config) or is_internal(trace.client_hostname, trace.client_ip, config):
        return []
    return [_sighting(trace, server, build=None, software=None, evidence=f"{trace.source_format}-traffic",
                      in_scope=in_scope)]


def _sighting(trace: MessageTrace, server: str, *, build: str | None, software: str | None, evidence: str,
              behind_relay: str | None = None, in_scope: bool = True) -> Sighting:
    server = server.lower()
    return Sighting(
        server_id=server_id_of(server, trace.org),
        server=server,
        org=trace.org,
        build=build,
        evidence=evidence,
        behind_relay=behind_relay,
        software=software,
        in_scope=in_scope,
    )
