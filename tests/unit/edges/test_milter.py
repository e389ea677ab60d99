"""`patchgate milter`: one MTA connection's answers, and the server over a real TCP connection with
the policy server's decisions behind it."""
import asyncio
import dataclasses
import struct
from datetime import datetime, timezone

from pipeline.domain.windows import window_offset
from pipeline.edges import milter_protocol as protocol
from pipeline.edges.decision_cache import DecisionCache
from pipeline.edges.milter import MilterServer, MilterSession
from pipeline.edges.mta import PolicyServer

BLOCK = "550 5.7.230 Connecting server version is out-of-date; connection blocked for 10 mins/hr."
CONTINUE = protocol.encode(protocol.CONTINUE)
# What Postfix offers: version 6, every action, every step left out if asked.
NEGOTIATION = struct.pack(">III", 6, 0x1FF, 0x1FFFFF)


def connect(hostname: str, address: str) -> bytes:
    return hostname.encode() + b"\x004" + struct.pack(">H", 25) + address.encode() + b"\x00"


class Decider:
    """PolicyServer.decide's stand-in: answers `action` and keeps the requests it was asked."""

    def __init__(self, action: str):
        self.action, self.asked = action, []

    def __call__(self, request: dict[str, str]) -> str:
        self.asked.append(request)
        return self.action


def test_a_connection_is_decided_once_at_its_first_recipient_and_each_recipient_gets_the_reply():
    decider = Decider(BLOCK)
    session = MilterSession(decider)
    assert session.answer(protocol.NEGOTIATE, NEGOTIATION)[4:5] == protocol.NEGOTIATE
    assert session.answer(protocol.MACRO, b"Cj\x00mx.example.net\x00") is None
    assert session.answer(protocol.CONNECT, connect("mail.contoso.example", "192.0.2.7")) == CONTINUE
    assert session.answer(protocol.HELO, b"ex13mbx01.contoso.example\x00") == CONTINUE
    assert session.answer(protocol.MAIL, b"<ann@contoso.example>\x00SIZE=100\x00") == CONTINUE
    assert decider.asked == [], "nothing is decided before a recipient is known"
    assert session.answer(protocol.RCPT, b"<jo@example.net>\x00") == protocol.reply(BLOCK)
    assert session.answer(protocol.RCPT, b"<an@example.net>\x00") == protocol.reply(BLOCK)
    assert decider.asked == [{"protocol_state": "RCPT", "client_name": "mail.contoso.example",
                              "helo_name": "ex13mbx01.contoso.example", "client_address": "192.0.2.7",
                              "sender": "ann@contoso.example", "recipient": "jo@example.net"}]
    assert session.answer(protocol.ABORT, b"") is None
    assert session.answer(protocol.QUIT, b"") is None


def test_a_client_without_a_decision_is_let_through_and_its_message_accepted():
    session = MilterSession(Decider("DUNNO"))
    session.answer(protocol.CONNECT, connect("[198.51.100.9]", "198.51.100.9"))
    assert session.answer(protocol.RCPT, b"<jo@example.net>\x00") == CONTINUE
    assert session.answer(protocol.DATA, b"") == CONTINUE
    assert session.answer(protocol.BODY_END, b"") == protocol.encode(protocol.ACCEPT)


def test_a_reused_milter_connection_decides_each_smtp_connection_anew():
    decider = Decider(BLOCK)
    session = MilterSession(decider)
    session.answer(protocol.CONNECT, connect("[198.51.100.9]", "198.51.100.9"))
    session.answer(protocol.RCPT, b"<jo@example.net>\x00")
    assert session.answer(protocol.QUIT_NEW_CONNECTION, b"") is None
    session.answer(protocol.CONNECT, connect("mx.fabrikam.example", "203.0.113.5"))
    session.answer(protocol.HELO, b"mx.fabrikam.example\x00")
    session.answer(protocol.RCPT, b"<jo@example.net>\x00")
    # Sendmail names a client without a reverse name by its address in brackets: no name then.
    assert [(r.get("client_name"), r["client_address"], r.get("helo_name")) for r in decider.asked] == [
        ("unknown", "198.51.100.9", None), ("mx.fabrikam.example", "203.0.113.5", "mx.fabrikam.example")]


def blocking_policy_server(decision, enforced: list) -> PolicyServer:
    """A policy server in the block window of one server's decision; (kind, HELO) of what it
    applies goes to `enforced`."""
    server = "ex13mbx01.contoso.example"
    cache = DecisionCache()
    cache.apply(dataclasses.replace(decision, server_id=server, hostname=server, block_minutes_per_hour=10,
                                    throttle_minutes_per_hour=0, stage=3))
    now = datetime(2026, 3, 1, 10, window_offset(server), tzinfo=timezone.utc)
    return PolicyServer(cache, lambda decision, kind, at, request: enforced.append((kind, request["helo_name"])),
                        clock=lambda: now)


def served(decision, packets: list[bytes], idle_s: float = 5) -> tuple[bytes, list]:
    """What the milter sends back on one TCP connection for `packets` until it closes it, and what
    it enforced."""
    enforced: list = []
    milter = MilterServer(blocking_policy_server(decision, enforced).decide, idle_s=idle_s)

    async def run() -> bytes:
        listener = await asyncio.start_server(milter.handle, "127.0.0.1", 0)
        port = listener.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"".join(packets))
        answer = await asyncio.wait_for(reader.read(), idle_s + 5)
        writer.close()
        listener.close()
        await listener.wait_closed()
        return answer
    return asyncio.run(run()), enforced


def test_over_tcp_a_blocked_server_gets_550_at_rcpt_and_one_enforcement_record(make_decision):
    answer, enforced = served(make_decision(1, 3), [protocol.encode(protocol.NEGOTIATE, NEGOTIATION),
                     protocol.encode(protocol.CONNECT, connect("[192.0.2.7]", "192.0.2.7")),
                     protocol.encode(protocol.HELO, b"ex13mbx01.contoso.example\x00"),
                     protocol.encode(protocol.MAIL, b"<ann@contoso.example>\x00"),
                     protocol.encode(protocol.RCPT, b"<jo@example.net>\x00"),
                     protocol.encode(protocol.RCPT, b"<an@example.net>\x00"),
                     protocol.encode(protocol.QUIT)])
    negotiation = protocol.negotiated(NEGOTIATION)
    assert answer == negotiation + CONTINUE * 3 + protocol.reply(BLOCK) * 2
    assert enforced == [("block", "ex13mbx01.contoso.example")]


def test_over_tcp_what_is_not_the_protocol_or_says_nothing_is_closed(make_decision):
    decision = make_decision(1, 3)
    assert served(decision, [b"\x7f\xff\xff\xffO"])[0] == b"", "a length beyond MAX_PACKET"
    assert served(decision, [protocol.encode(protocol.NEGOTIATE, b"\x00\x00\x00\x06")])[0] == b"", \
        "a negotiation too short"
    # An MTA that stops mid-packet is closed once idle.
    assert served(decision, [b"\x00\x00\x00\x10C"], idle_s=0.2)[0] == b""
