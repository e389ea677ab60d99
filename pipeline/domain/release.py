"""A throttled or blocked server proves, with a message of its own, that it was updated.

The MTA decides from the cached decision before it sees the message; a server that installed the
current build would stay rejected, its new build never logged. Where the MTA can show the
message's Received headers (a milter at end of headers, Exim's DATA ACL), they are read as the
pipeline reads them (pipeline.domain.identity): when they name the decision's server with a build
the catalog counts as current, or newer than the decision's, the message goes through and its
trace goes to the pipeline, which moves the server back as its own logs would.
"""
from __future__ import annotations

from datetime import datetime

from pipeline.domain.builds import Build
from pipeline.domain.catalog import CURRENT, Catalog, product_of
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace, Sighting, SourcePosition
from pipeline.domain.identity import sightings
from pipeline.domain.policy import Decision

# source_format of a trace an MTA took from a message as it came in.
FORMAT = "smtp"
# Received headers read per message: a chain is a few hops; a message with more is read no further.
MAX_RECEIVED = 30


def message_trace(received: list[str], at: datetime, client_hostname: str | None, client_ip: str | None,
                  sender: str | None, recipients: tuple[str, ...], org: str | None, mta: str) -> MessageTrace:
    """A message as the MTA sees it at end of headers; `received` newest first, as in the message;
    `org` that of the decision it is held against, so that the pipeline names its server alike.
    `mta` names the MTA side that saw it (its position's source)."""
    return MessageTrace(
        event_time=at, source_format=FORMAT, position=SourcePosition(mta), event_id="RECEIVE", sender=sender,
        recipients=recipients, client_ip=client_ip, client_hostname=client_hostname, org=org,
        received=tuple(received[:MAX_RECEIVED]),
    )


def proof(decision: Decision, trace: MessageTrace, config: PolicyConfig, catalog: Catalog) -> Sighting | None:
    """The sighting of the decision's server, in the message's own Received headers, with a build
    that releases it: current in the catalog, or newer than the decision's. None otherwise."""
    known = Build.parse(decision.build) if decision.build else None
    for sighting in sightings(trace, config):
        if sighting.server != decision.hostname or not sighting.build or sighting.software:
            continue
        build = Build.parse(sighting.build)
        if build is None:
            continue
        if catalog.status(product_of(build), build, config) == CURRENT:
            return sighting
        if known is not None and build > known:
            return sighting
    return None
