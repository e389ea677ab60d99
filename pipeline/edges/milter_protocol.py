"""The milter protocol (Sendmail's libmilter, version 6; Postfix speaks it too): the few packets a
milter that only answers needs, read and written without I/O.

Every packet is a 4-byte big-endian length (of what follows), a command byte and its data. The MTA
opens with option negotiation: the protocol version, the actions it lets the milter take (none are
asked for here: this milter changes no message) and the protocol steps it can leave out. The milter
answers with the version, the actions and the steps it wants left out; then the MTA sends the
SMTP stages one by one, each answered (continue, or a reply code), but macros, abort and quit.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass

VERSION = 6
# Largest packet taken: a header or a macro packet is small, body chunks (not asked for) are at
# most 64 KiB. Anything larger is not an MTA speaking the protocol.
MAX_PACKET = 1024 * 1024

# Commands, MTA to milter.
ABORT, BODY, CONNECT, MACRO, BODY_END, HELO = b"A", b"B", b"C", b"D", b"E", b"H"
HEADER, MAIL, END_OF_HEADERS, NEGOTIATE, QUIT, RCPT = b"L", b"M", b"N", b"O", b"Q", b"R"
DATA, UNKNOWN, QUIT_NEW_CONNECTION = b"T", b"U", b"K"
# Commands that get no answer.
UNANSWERED = frozenset((ABORT, MACRO, QUIT, QUIT_NEW_CONNECTION))

# Answers, milter to MTA.
ACCEPT, CONTINUE, REPLY_CODE = b"a", b"c", b"y"

# Protocol steps the milter asks the MTA to leave out (SMFIP_*): the body, unknown commands and
# DATA, and the answer to each header (the headers are read, and answered at their end). An MTA
# that cannot leave one out sends it anyway, and gets "continue".
NO_BODY, NO_UNKNOWN, NO_DATA, NO_HEADER_REPLY = 0x10, 0x100, 0x200, 0x80
LEFT_OUT = NO_BODY | NO_UNKNOWN | NO_DATA | NO_HEADER_REPLY


class ProtocolError(ValueError):
    """Bytes that are not the milter protocol."""


def packet_length(prefix: bytes) -> int:
    """The length that a packet's 4-byte prefix announces (its command byte and data)."""
    (length,) = struct.unpack(">I", prefix)
    if not 1 <= length <= MAX_PACKET:
        raise ProtocolError(f"a packet of {length} bytes")
    return length


def encode(command: bytes, data: bytes = b"") -> bytes:
    return struct.pack(">I", len(data) + 1) + command + data


def strings(data: bytes) -> list[str]:
    """The NUL-ended strings of a packet's data (as UTF-8, undecodable bytes replaced)."""
    if data and not data.endswith(b"\0"):
        raise ProtocolError("strings not ended by NUL")
    return [part.decode("utf-8", "replace") for part in data[:-1].split(b"\0")] if data else []


def negotiated(data: bytes) -> tuple[int, bytes]:
    """The steps left out, of LEFT_OUT those the MTA can leave out, and the answer to its option
    negotiation: the version both speak, no actions, those steps."""
    if len(data) < 12:
        raise ProtocolError(f"option negotiation of {len(data)} bytes")
    version, _actions, steps = struct.unpack(">III", data[:12])
    if version < 2:
        raise ProtocolError(f"milter protocol version {version}")
    left_out = steps & LEFT_OUT
    return left_out, encode(NEGOTIATE, struct.pack(">III", min(version, VERSION), 0, left_out))


@dataclass(frozen=True)
class Client:
    """What SMFIC_CONNECT says of the connecting host."""

    hostname: str
    address: str | None


def client(data: bytes) -> Client:
    """SMFIC_CONNECT: host name NUL, family byte, then for an IP family port (2 bytes) and address NUL
    (Sendmail tags an IPv6 one "IPv6:"). A host without a reverse name comes as its address in
    brackets."""
    name, nul, rest = data.partition(b"\0")
    if not nul or not rest:
        raise ProtocolError("a connect packet without its family")
    family, rest = rest[:1], rest[1:]
    address = None
    if family in (b"4", b"6"):
        if len(rest) < 3 or not rest.endswith(b"\0"):
            raise ProtocolError("a connect packet without its address")
        address = rest[2:-1].decode("ascii", "replace").removeprefix("IPv6:")
    return Client(name.decode("utf-8", "replace"), address)


def reply(code: str) -> bytes:
    """SMFIR_REPLYCODE: an SMTP reply ("550 5.7.230 text") for the current stage."""
    return encode(REPLY_CODE, code.encode("utf-8") + b"\0")
