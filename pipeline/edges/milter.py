"""`patchgate milter`: the decisions for Sendmail and for Postfix's smtpd_milters, in the milter
protocol (pipeline.edges.milter_protocol), from the same cache, windows and enforcement log as
`patchgate mta`.

A connection is decided once, at its first RCPT, from what CONNECT and HELO said of the client:
its recipients then get the policy's 450 4.7.230 or 550 5.7.230, and each connection that got one
is recorded once on mail.enforcement. Everything else is answered "continue", so the MTA goes on
with its own checks. An MTA that cannot reach the milter, or gets no answer within its timeout,
accepts the mail when told to (Sendmail's F=T, Postfix's milter_default_action = accept).
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from pipeline.edges import milter_protocol as protocol
from pipeline.edges.mta import serve_decisions
from pipeline.edges.policy import DUNNO
from pipeline.settings import Settings

log = logging.getLogger(__name__)
# A connection that says nothing for this long is closed: MTAs talk to their milters at SMTP pace,
# and an SMTP client that waits longer has long been timed out by the MTA.
IDLE_S = 600.0


class MilterSession:
    """One MTA connection's answers, packet by packet; several SMTP connections in turn when the
    MTA reuses it (QUIT_NEW_CONNECTION)."""

    def __init__(self, decide: Callable[[dict[str, str]], str]):
        self.decide = decide
        self._new_connection()

    def _new_connection(self) -> None:
        self.client: protocol.Client | None = None
        self.helo: str | None = None
        self.sender: str | None = None
        self.action: str | None = None

    def answer(self, command: bytes, data: bytes) -> bytes | None:
        """The packet to send back for one command (None for those the MTA expects no answer to)."""
        if command == protocol.NEGOTIATE:
            return protocol.negotiated(data)
        if command in protocol.UNANSWERED:
            if command == protocol.QUIT_NEW_CONNECTION:
                self._new_connection()
            return None
        if command == protocol.CONNECT:
            self._new_connection()
            self.client = protocol.client(data)
        elif command == protocol.HELO:
            self.helo = next(iter(protocol.strings(data)), "")
        elif command == protocol.MAIL:
            self.sender = next(iter(protocol.strings(data)), "")
        elif command == protocol.RCPT:
            if self.action is None:
                self.action = self.decide(self._request(next(iter(protocol.strings(data)), "")))
            if self.action != DUNNO:
                return protocol.reply(self.action)
        elif command == protocol.BODY_END:
            return protocol.encode(protocol.ACCEPT)
        return protocol.encode(protocol.CONTINUE)

    def _request(self, recipient: str) -> dict[str, str]:
        """The connection in the policy protocol's attributes, which PolicyServer.decide reads."""
        hostname = self.client.hostname if self.client else ""
        request = {
            "protocol_state": "RCPT",
            # A client without a reverse name comes as "[address]" (Sendmail) or "unknown" (Postfix).
            "client_name": "unknown" if hostname.startswith("[") else hostname,
            "helo_name": self.helo or "",
            "client_address": (self.client.address if self.client else None) or "",
            "sender": (self.sender or "").strip("<>"),
            "recipient": recipient.strip("<>"),
        }
        return {name: value for name, value in request.items() if value}


class MilterServer:
    def __init__(self, decide: Callable[[dict[str, str]], str], idle_s: float = IDLE_S):
        self.decide, self.idle_s = decide, idle_s

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One MTA connection, until it quits or breaks the protocol (then it is closed: the MTA
        takes its default action)."""
        session = MilterSession(self.decide)
        try:
            while True:
                length = protocol.packet_length(await asyncio.wait_for(reader.readexactly(4), self.idle_s))
                packet = await asyncio.wait_for(reader.readexactly(length), self.idle_s)
                command, data = packet[:1], packet[1:]
                answer = session.answer(command, data)
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
                if command == protocol.QUIT:
                    return
        except protocol.ProtocolError as exc:
            log.warning("not the milter protocol, closing the connection: %s", exc)
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            return
        finally:
            writer.close()


def run_milter(settings: Settings, host: str, port: int, cache_path: Path) -> None:
    serve_decisions(settings, cache_path, host, port, lambda server: MilterServer(server.decide).handle, "milter")
