import pytest

from pipeline.domain.scope import Scope


def test_no_scope_admits_every_path():
    assert Scope().admits(None, None, None) and Scope.from_mapping({}).everything


def test_a_path_is_in_scope_when_any_setting_names_it():
    scope = Scope.from_mapping({
        "connectors": ["Inbound from Contoso on-premises", "postfix/hybrid/*"],
        "client_networks": ["198.51.100.0/24", "2001:db8:10::/48"],
        "tls_peers": ["*.contoso.example"],
    })
    assert scope.admits("INBOUND FROM CONTOSO ON-PREMISES", None, None)
    assert scope.admits("postfix/hybrid/smtpd", None, None)
    assert scope.admits(None, "198.51.100.17", None) and scope.admits(None, "2001:db8:10::25", None)
    assert scope.admits(None, None, "ex16edge01.contoso.example")
    assert not scope.admits("Default Frontend EX01", "192.0.2.1", "mx.partner.example")
    assert not scope.admits(None, "not an address", None)


def test_settings_that_do_not_read_are_errors():
    with pytest.raises(ValueError, match="198.51.100.0/33"):
        Scope.from_mapping({"client_networks": ["198.51.100.0/33"]})
    with pytest.raises(ValueError, match="unknown scope settings: connector"):
        Scope.from_mapping({"connector": ["x"]})
