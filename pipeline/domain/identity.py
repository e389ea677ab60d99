"""Which servers a trace event tells us about, and which build each of them runs.

- Header chains: the connecting server is the `by` host of the newest Received header not written
  by our own infrastructure (trusted_receivers) nor by Exchange Online (15.20+ builds). Servers
  deeper in the chain are observed too, marked as behind that relay.
- Message tracking logs: the build in #Version / schema-version is that of the server that wrote
  the line, not of the remote sender.
- Exchange Online traces, Postfix and Exim logs: the connecting host, as traffic without a build.
"""
from __future__ import annotations

import fnmatch

from pipeline.domain.builds import Build
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace, ServerObservation, server_id_of
from pipeline.domain.parsers import msgtrk
from pipeline.domain.received import Hop, read_hop

# Event ids of rows that describe a server handing a message in (None: the format has no event id).
_INBOUND_EVENTS = frozenset({None, "RECEIVE", "ARRIVAL"})


def observations(trace: MessageTrace, config: PolicyConfig) -> list[ServerObservation]:
    """The server observations one trace event yields (zero or more)."""
    if trace.received:
        return _from_chain(trace, config)
    if trace.source_format == msgtrk.FORMAT:
        return _from_log_writer(trace)
    return _from_connecting_host(trace, config)


def is_trusted(host: str, config: PolicyConfig) -> bool:
    return any(fnmatch.fnmatch(host, pattern.lower()) for pattern in config.trusted_receivers)


def _from_chain(trace: MessageTrace, config: PolicyConfig) -> list[ServerObservation]:
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
        found.append(_observation(
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


def _from_log_writer(trace: MessageTrace) -> list[ServerObservation]:
    if trace.logged_by is None:
        return []
    build = Build.parse(trace.logged_by_build)
    if build is not None and build.is_cloud:
        # Exchange Online's own servers write 15.20+ builds; they are never on-premises servers.
        return []
    return [_observation(trace, trace.logged_by, build=str(build) if build else None, software=None,
                         evidence="msgtrk-version" if build else "msgtrk-traffic")]


def _from_connecting_host(trace: MessageTrace, config: PolicyConfig) -> list[ServerObservation]:
    if trace.event_id not in _INBOUND_EVENTS:
        return []
    server = trace.client_hostname or trace.client_ip
    if not server or is_trusted(server, config):
        return []
    return [_observation(trace, server, build=None, software=None, evidence=f"{trace.source_format}-traffic")]


def _observation(trace, server, *, build, software, evidence, behind_relay=None) -> ServerObservation:
    server = server.lower()
    return ServerObservation(
        server_id=server_id_of(server, trace.org),
        server=server,
        org=trace.org,
        event_time=trace.event_time,
        build=build,
        evidence=evidence,
        message_id=trace.message_id,
        total_bytes=trace.total_bytes,
        behind_relay=behind_relay,
        software=software,
    )
