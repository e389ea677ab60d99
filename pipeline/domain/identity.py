"""Which servers a trace event tells us about, and which build each of them runs."""
from __future__ import annotations

from pipeline.domain.builds import Build
from pipeline.domain.events import MessageTrace, ServerObservation, server_id_of


def observations(trace: MessageTrace) -> list[ServerObservation]:
    """The server observations one trace event yields (zero or more)."""
    if trace.logged_by is None:
        return []
    build = Build.parse(trace.logged_by_build)
    if build is not None and build.is_cloud:
        # Exchange Online's own servers write 15.20+ builds; they are never on-premises servers.
        return []
    server = trace.logged_by.lower()
    return [
        ServerObservation(
            server_id=server_id_of(server, trace.org),
            server=server,
            org=trace.org,
            event_time=trace.event_time,
            build=str(build) if build else None,
            evidence="msgtrk-version" if build else "msgtrk-traffic",
            message_id=trace.message_id,
            total_bytes=trace.total_bytes,
        )
    ]
