"""Which servers a trace event tells us about, and which build each of them runs.

- Header chains: the connecting server is the `by` host of the newest Received header not written
  by our own infrastructure (trusted_receivers) nor by Exchange Online (15.20+ builds). Servers
  deeper in the chain are sighted too, marked as behind that relay.
- Message tracking logs: the build in #Version / schema-version is that of the server that wrote
  the line, not of the remote sender.
- Exchange Online traces, Postfix and Exim logs: the connecting host, as traffic without a build.

The answer depends only on the fields `identity_key` lists, so callers may compute it once for
many traces that share them.
"""
from __future__ import annotations

import fnmatch
from functools import lru_cache

from pipeline.domain.builds import Build
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace, Sighting, server_id_of
from pipeline.domain.parsers import msgtrk
from pipeline.domain.received import Hop, read_hop

# Event ids of rows that describe a server handing a message in (None: the format has no event id).
_INBOUND_EVENTS = frozenset({None, "RECEIVE", "ARRIVAL"})


def sightings(trace: MessageTrace, config: PolicyConfig) -> list[Sighting]:
    """The servers one trace event names (zero or more)."""
    if trace.received:
        return _from_chain(trace, config)
    if trace.source_format == msgtrk.FORMAT:
        return _from_log_writer(trace)
    return _from_connecting_host(trace, config)


def identity_key(trace: MessageTrace) -> tuple | None:
    """Every field `sightings` reads, for traces without a Received chain (None for those with one:
    a chain is nearly always unique to its message, so there is nothing to share)."""
    if trace.received:
        return None
    return (trace.source_format, trace.event_id, trace.logged_by, trace.logged_by_build,
            trace.client_hostname, trace.client_ip, trace.org)


def is_trusted(host: str, config: PolicyConfig) -> bool:
    return _matches_any(host, config.trusted_receivers)


@lru_cache(maxsize=65536)
def _matches_any(host: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatch(host, pattern.lower()) for pattern in patterns)


def _from_chain(trace: MessageTrace, config: PolicyConfig) -> list[Sighting]:
    hops = [read_hop(value) for value in trace.received]
    start = next((i for i, hop in enumerate(hops) if hop.by and not _ours(hop, config)), None)
    if start is None:
        return []
    connecting = hops[start].by
    by_server: dict[str, list[Hop]] = {}
    for hop in hops[start:]:
        if hop.by and not _ours(hop, config):
            by_server.setdefault(hop.by, []).append(hop)
    found = []
    for server, stamped in by_server.items():
        builds = [(Build.parse(h.build), h) for h in stamped if h.build]
        best = max(builds, key=lambda pair: pair[0] or Build(()), default=(None, None))[1]
        found.append(_sighting(
            trace, server,
            build=best.build if best else None,
            software=best.software if best else next((h.software for h in stamped if h.software), None),
            evidence=best.evidence if best else "received-traffic",
            behind_relay=None if server == connecting else connecting,
        ))
    return found


def _ours(hop: Hop, config: PolicyConfig) -> bool:
    build = Build.parse(hop.build) if hop.software is None else None
    return is_trusted(hop.by, config) or bool(build and build.is_cloud)


def _from_log_writer(trace: MessageTrace) -> list[Sighting]:
    if trace.logged_by is None:
        return []
    build = Build.parse(trace.logged_by_build)
    if build is not None and build.is_cloud:
        # Exchange Online's own servers write 15.20+ builds; they are never on-premises servers.
        return []
    return [_sighting(trace, trace.logged_by, build=str(build) if build else None, software=None,
                      evidence="msgtrk-version" if build else "msgtrk-traffic")]


def _from_connecting_host(trace: MessageTrace, config: PolicyConfig) -> list[Sighting]:
    if trace.event_id not in _INBOUND_EVENTS:
        return []
    server = trace.client_hostname or trace.client_ip
    if not server or is_trusted(server, config):
        return []
    return [_sighting(trace, server, build=None, software=None, evidence=f"{trace.source_format}-traffic")]


def _sighting(trace, server, *, build, software, evidence, behind_relay=None) -> Sighting:
    server = server.lower()
    return Sighting(
        server_id=server_id_of(server, trace.org),
        server=server,
        org=trace.org,
        build=build,
        evidence=evidence,
        behind_relay=behind_relay,
        software=software,
    )
