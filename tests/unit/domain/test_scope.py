from ipaddress import ip_network

from pipeline.domain.scope import Scope


def test_no_scope_admits_every_path():
    assert Scope().admits(None, None, None) and Scope.named((), (), ()).everything


def test_a_path_is_in_scope_when_any_setting_names_it():
    scope = Scope.named(
        connectors=["Inbound from Contoso on-premises", "postfix/hybrid/*"],
        client_networks=[ip_network("198.51.100.0/24"), ip_network("2001:db8:10::/48")],
        tls_peers=["*.Contoso.example"],
    )
    assert not scope.everything
    assert scope.admits("INBOUND FROM CONTOSO ON-PREMISES", None, None)
    assert scope.admits("postfix/hybrid/smtpd", None, None)
    assert scope.admits(None, "198.51.100.17", None) and scope.admits(None, "2001:db8:10::25", None)
    assert scope.admits(None, None, "ex16edge01.contoso.example")
    assert not scope.admits("Default Frontend EX01", "192.0.2.1", "mx.partner.example")
    assert not scope.admits(None, "not an address", None)
