"""The milter protocol's packets, as libmilter and Postfix's milter8 write and read them."""
import struct

import pytest

from pipeline.edges import milter_protocol as protocol


def test_a_packet_is_its_length_then_command_and_data():
    assert protocol.encode(b"c") == b"\x00\x00\x00\x01c"
    assert protocol.encode(b"y", b"550 5.7.230 no\0") == struct.pack(">I", 16) + b"y550 5.7.230 no\0"
    assert protocol.packet_length(b"\x00\x00\x00\x10") == 16


@pytest.mark.parametrize("length", [0, protocol.MAX_PACKET + 1])
def test_an_empty_or_huge_packet_is_not_the_protocol(length):
    with pytest.raises(protocol.ProtocolError):
        protocol.packet_length(struct.pack(">I", length))


def test_negotiation_takes_the_lower_version_asks_no_actions_and_leaves_out_what_the_mta_can():
    # Postfix 3.7 offers version 6, every action and every step it can leave out.
    left_out, answer = protocol.negotiated(struct.pack(">III", 6, 0x1FF, 0x1FFFFF))
    assert answer[4:5] == b"O"
    assert struct.unpack(">III", answer[5:]) == (6, 0, protocol.LEFT_OUT) and left_out == protocol.LEFT_OUT
    # An MTA of version 2 that can leave out only the body.
    left_out, older = protocol.negotiated(struct.pack(">III", 2, 0x3, protocol.NO_BODY))
    assert struct.unpack(">III", older[5:]) == (2, 0, protocol.NO_BODY) and left_out == protocol.NO_BODY


@pytest.mark.parametrize("data", [b"", struct.pack(">III", 1, 0, 0)])
def test_a_negotiation_too_short_or_too_old_is_refused(data):
    with pytest.raises(protocol.ProtocolError):
        protocol.negotiated(data)


def test_connect_gives_the_host_name_and_ip_address():
    assert protocol.client(b"mx.contoso.example\x004\x19\x00192.0.2.7\x00") == protocol.Client(
        "mx.contoso.example", "192.0.2.7")
    # Sendmail writes an IPv6 address with its "IPv6:" tag, Postfix without.
    assert protocol.client(b"[2001:db8::7]\x006\x19\x00IPv6:2001:db8::7\x00") == protocol.Client(
        "[2001:db8::7]", "2001:db8::7")
    assert protocol.client(b"mx6.example\x006\x19\x002001:db8::7\x00").address == "2001:db8::7"
    # A local (unix socket) or unknown family has no address.
    assert protocol.client(b"localhost\x00L/run/socket\x00") == protocol.Client("localhost", None)


@pytest.mark.parametrize("data", [b"no family", b"host\x00", b"host\x004\x19"])
def test_a_broken_connect_packet_is_not_the_protocol(data):
    with pytest.raises(protocol.ProtocolError):
        protocol.client(data)


def test_strings_are_nul_ended():
    assert protocol.strings(b"<jo@example.net>\x00SIZE=100\x00") == ["<jo@example.net>", "SIZE=100"]
    assert protocol.strings(b"") == []
    with pytest.raises(protocol.ProtocolError):
        protocol.strings(b"<jo@example.net>")


def test_a_reply_code_is_the_whole_smtp_reply_nul_ended():
    assert protocol.reply("450 4.7.230 later") == struct.pack(">I", 19) + b"y450 4.7.230 later\x00"
