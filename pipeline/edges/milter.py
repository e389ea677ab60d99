"""`patchgate milter`: the decisions for Sendmail and for Postfix's smtpd_milters, in the milter
protocol (pipeline.edges.milter_protocol), from the same cache, windows and enforcement log as
`patchgate mta`.

A connection's verdict is taken once, at its first RCPT, from what CONNECT and HELO said of the
client, and given at the end of each message's headers: a server that is throttled or blocked may
show there, in its own Received header, that it runs a current build (pipeline.domain.release).
Its message then goes through and its trace goes to the pipeline, which moves the server back;
otherwise the message gets the policy's 450 4.7.230 or 550 5.7.230, recorded on mail.enforcement.
Everything else is answered "continue", so the MTA goes on with its own checks. An MTA that cannot
reach the milter, or gets no answer within its timeout, accepts the mail when told to (Sendmail
without F=, Postfix's milter_default_action = accept).
"""
from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from pipeline.domain.release import MAX_RECEIVED
from pipeline.edges import milter_protocol as protocol
from pipeline.edges.connection_guard import Reader
from pipeline.edges.mta import PolicyServer, Verdict, serve_decisions
from pipeline.edges.policy import DUNNO
from pipeline.settings import Settings

log = logging.getLogger(__name__)
# Bytes of one Received header kept: a header is a line or a few.
MAX_HEADER = 4096


class MilterSession:
    """One MTA connection's answers, packet by packet; several SMTP connections in turn when the
    MTA reuses it (QUIT_NEW_CONNECTION)."""

    def __init__(self, server: PolicyServer):
        self.server = server
        # The protocol steps the MTA agreed to leave out (until it negotiates: none).
        self.left_out = 0
        self._new_connection()

    def _new_connection(self) -> None:
        self.client: protocol.Client | None = None
        self.helo: str | None = None
        self.verdict: Verdict | None = None
        self._new_message()

    def _new_message(self) -> None:
        self.sender: str | None = None
        self.recipient: str | None = None
        self.received: list[str] = []

    def answer(self, command: bytes, data: bytes) -> bytes | None:
        """The packet to send back for one command (None for those the MTA expects no answer to)."""
        if command == protocol.NEGOTIATE:
            self.left_out, answer = protocol.negotiated(data)
            return answer
        if command in protocol.UNANSWERED:
            if command == protocol.QUIT_NEW_CONNECTION:
                self._new_connection()
            elif command == protocol.ABORT:
                self._new_message()
            return None
        if command == protocol.CONNECT:
            self._new_connection()
            self.client = protocol.client(data)
        elif command == protocol.HELO:
            self.helo = next(iter(protocol.strings(data)), "")
        elif command == protocol.MAIL:
            self._new_message()
            self.sender = next(iter(protocol.strings(data)), "")
        elif command == protocol.RCPT:
            self.recipient = self.recipient or next(iter(protocol.strings(data)), "")
            if self.verdict is None:
                self.verdict = self.server.verdict(self._request())
        elif command == protocol.HEADER:
            # Kept only while the connection is held: only then can a header release it.
            if self.verdict is not None and self.verdict.kind is not None and len(self.received) < MAX_RECEIVED:
                name, value = (protocol.strings(data) + ["", ""])[:2]
                if name.lower() == "received":
                    self.received.append(value[:MAX_HEADER])
            if self.left_out & protocol.NO_HEADER_REPLY:
                return None
        elif command == protocol.END_OF_HEADERS:
            return self._at_end_of_headers()
        elif command == protocol.BODY_END:
            return protocol.encode(protocol.ACCEPT)
        return protocol.encode(protocol.CONTINUE)

    def _at_end_of_headers(self) -> bytes:
        if self.verdict is None:
            return protocol.encode(protocol.CONTINUE)
        action = self.server.settle(self.verdict, self._request(), self.received)
        # Released or never held: the rest of the message is not this milter's business.
        return protocol.encode(protocol.ACCEPT) if action == DUNNO else protocol.reply(action)

    def _request(self) -> dict[str, str]:
        """The connection and message in the policy protocol's attributes, which PolicyServer reads."""
        hostname = self.client.hostname if self.client else ""
        request = {
            "protocol_state": "RCPT",
            # A client without a reverse name comes as "[address]" (Sendmail) or "unknown" (Postfix).
            "client_name": "unknown" if hostname.startswith("[") else hostname,
            "helo_name": self.helo or "",
            "client_address": (self.client.address if self.client else None) or "",
            "sender": (self.sender or "").strip("<>"),
            "recipient": (self.recipient or "").strip("<>"),
        }
        return {name: value for name, value in request.items() if value}


class MilterServer:
    def __init__(self, server: PolicyServer):
        self.server = server

    async def handle(self, reader: Reader, writer: asyncio.StreamWriter) -> None:
        """One MTA connection, until it quits or breaks the protocol (then it is closed: the MTA
        takes its default action). serve_decisions' guard closes it when idle."""
        session = MilterSession(self.server)
        try:
            while True:
                length = protocol.packet_length(await reader.readexactly(4))
                packet = await reader.readexactly(length)
                command, data = packet[:1], packet[1:]
                answer = session.answer(command, data)
                if answer is not None:
                    writer.write(answer)
                    await writer.drain()
                if command == protocol.QUIT:
                    return
        except protocol.ProtocolError as exc:
            log.warning("not the milter protocol, closing the connection: %s", exc)
        except (asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            writer.close()


def run_milter(settings: Settings, host: str, port: int, cache_path: Path) -> None:
    serve_decisions(settings, cache_path, host, port, lambda server: MilterServer(server).handle, "milter")
