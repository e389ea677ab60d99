import pytest

from pipeline.domain.hostnames import address, is_loopback, problem


@pytest.mark.parametrize("name", ["ex01.corp.test", "EX01", "mail_01.corp", "192.0.2.1", "2001:db8::1", "[203.0.113.9]",
                                  "mx.example.net."])
def test_names_and_addresses_that_can_name_a_server(name):
    assert problem(name) is None


@pytest.mark.parametrize("name, reason", [
    ("mail\x00evil.example", "holds control characters"),
    ("a..b", "is not a DNS name"),
    ("-x.example", "is not a DNS name"),
    ("bad host", "is not a DNS name"),
    ("x" * 64 + ".example", "a label of 64 characters"),
    ("a." * 127 + "bc", "at most 253"),
])
def test_names_no_dns_could_hold(name, reason):
    assert reason in problem(name)


def test_addresses_bare_or_in_brackets():
    assert str(address("[2001:db8::1]")) == "2001:db8::1" and address("mail.example") is None


@pytest.mark.parametrize("host, ip, loopback", [
    ("localhost", "127.0.0.1", True),
    ("mx2.example.net", "127.0.0.1", True),
    ("localhost", "::1", True),
    (None, "::ffff:127.0.0.1", True),
    ("localhost", "", True),
    ("unknown", "192.0.2.7", False),
    ("mail.example", "2001:db8::1", False),
    (None, None, False),
])
def test_loopback_clients(host, ip, loopback):
    assert is_loopback(host, ip) is loopback
