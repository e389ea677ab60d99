import pytest

from pipeline.domain.hostnames import address, is_loopback, matches, problem


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


@pytest.mark.parametrize("pattern, name, matched", [
    ("ex01.contoso.example", "ex01.contoso.example", True),
    ("EX01.Contoso.example", "ex01.contoso.example", True),
    ("ex01.contoso.example", "EX01.CONTOSO.EXAMPLE", True),
    ("*.Contoso.example", "MX1.contoso.EXAMPLE", True),
    ("*.contoso.example", "contoso.example", False),
    ("*.contoso.example", "mx1.lab.contoso.example", True),
    ("ex0?.contoso.example", "ex07.contoso.example", True),
    ("ex0?.contoso.example", "ex10.contoso.example", False),
    ("ex0[1-3].contoso.example", "EX02.contoso.example", True),
    ("ex0[!1-3].contoso.example", "ex02.contoso.example", False),
    ("192.0.2.*", "192.0.2.25", True),
    ("192.0.2.?", "192.0.2.25", False),
    ("192.0.2.25", "192.0.2.250", False),
    ("*", "anything.example", True),
])
def test_a_name_pattern_matches_in_any_case_with_shell_wildcards(pattern, name, matched):
    assert matches(pattern, name) is matched
