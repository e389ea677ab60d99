"""The MTA side's use of pipeline.domain.release: a message that shows its server updated goes
through, and its trace goes to mail.traces, so that the pipeline moves the server back at once."""
from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime

from pipeline.domain import release
from pipeline.domain.catalog import Catalog
from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace
from pipeline.domain.policy import Decision

log = logging.getLogger(__name__)


class Releaser:
    def __init__(self, config: PolicyConfig, catalog: Catalog, traces: Callable[[MessageTrace], None], mta: str):
        self.config, self.catalog, self.traces, self.mta = config, catalog, traces, mta

    def released(self, decision: Decision, received: list[str], request: dict[str, str], at: datetime) -> bool:
        """Whether the message's Received headers (newest first) release the decision's server;
        its trace is then on its way to mail.traces. `request` holds the client, sender and
        recipient in the policy protocol's attributes."""
        client_name = request.get("client_name")
        trace = release.message_trace(
            received, at, None if client_name in (None, "unknown") else client_name, request.get("client_address"),
            request.get("sender"), tuple(filter(None, [request.get("recipient")])), decision.org, self.mta)
        proof = release.proof(decision, trace, self.config, self.catalog)
        if proof is None:
            return False
        log.info("%s released: its message shows build %s (the decision had %s)", decision.hostname, proof.build,
                 decision.build)
        self.traces(trace)
        return True
