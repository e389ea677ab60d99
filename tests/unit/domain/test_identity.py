from dataclasses import replace
from datetime import UTC, datetime

from pipeline.domain.config import PolicyConfig
from pipeline.domain.events import MessageTrace, SourcePosition
from pipeline.domain.identity import sightings


def sightings_of(trace):
    return sightings(trace, PolicyConfig())

AT = datetime(2026, 2, 10, 8, 14, 3, tzinfo=UTC)


def trace(**fields):
    return MessageTrace(event_time=AT, source_format="msgtrk", position=SourcePosition("f", 1), **fields)


def test_the_log_writer_is_observed_with_its_build():
    [seen] = sightings_of(trace(logged_by="EX16MBX01.Contoso.Example", logged_by_build="15.1.2507.39",
                                message_id="<a@b>", total_bytes=100, org="contoso.example"))
    assert (seen.server_id, seen.server, seen.org, seen.build, seen.evidence) == (
        "contoso.example/ex16mbx01.contoso.example", "ex16mbx01.contoso.example", "contoso.example",
        "15.1.2507.39", "msgtrk-version")


def test_traffic_without_a_build_still_counts():
    [seen] = sightings_of(trace(logged_by="ex10hub01.contoso.example"))
    assert (seen.build, seen.evidence) == (None, "msgtrk-traffic")


def test_exchange_online_servers_are_never_observed():
    assert sightings_of(trace(logged_by="dm6pr12mb4123.namprd12.prod.outlook.com",
                              logged_by_build="15.20.7202.31")) == []
    assert sightings_of(trace()) == []


CHAIN = (
    "from ex16edge01.contoso.example (198.51.100.17) by BN8NAM12FT045.mail.protection.outlook.com (10.13.182.191) "
    "with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.8466.25 "
    "via Frontend Transport; Tue, 10 Feb 2026 08:14:08 +0000",
    "from EX16MBX01.contoso.example (198.51.100.16) by ex16edge01.contoso.example (198.51.100.17) with Microsoft "
    "SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.39; "
    "Tue, 10 Feb 2026 08:14:06 +0000",
    "from EX16MBX01.contoso.example ([fe80::1%3]) by EX16MBX01.contoso.example ([fe80::1%3]) with mapi id "
    "15.01.2507.039; Tue, 10 Feb 2026 08:14:05 +0000",
)


def chain_trace(received, org="contoso.example"):
    return MessageTrace(event_time=AT, source_format="rfc5322", position=SourcePosition("m", 1), org=org,
                        received=received)


def test_the_connecting_server_is_the_newest_untrusted_by_host_and_deeper_hops_are_behind_it():
    seen = sightings_of(chain_trace(CHAIN))
    assert [(o.server, o.build, o.evidence, o.behind_relay) for o in seen] == [
        ("ex16edge01.contoso.example", "15.1.2507.39", "received-id", None),
        ("ex16mbx01.contoso.example", "15.1.2507.39", "mapi-id", "ex16edge01.contoso.example"),
    ]
    assert all(o.server_id.startswith("contoso.example/") for o in seen)


def test_cloud_builds_are_never_on_premises_even_on_unlisted_hosts():
    hop = ("from a.outlook.office365.com by BN9PR03CA0512.outlook.office365.com with Microsoft SMTP Server "
           "id 15.20.8466.25; Tue, 10 Feb 2026 08:14:08 +0000")
    assert sightings_of(chain_trace((hop,))) == []


def test_operators_own_receivers_are_trusted_by_pattern():
    ours = "from mail.fabrikam.example by mx1.example.net (Postfix) with ESMTPS id 4T; Wed, 11 Feb 2026 10:02:11 +0100"
    theirs = ("from x by mail.fabrikam.example with Microsoft SMTP Server (TLS) id 15.0.1497.2; "
              "Wed, 11 Feb 2026 10:02:10 +0100")
    config = PolicyConfig.from_mapping({"trusted_receivers": ["mx*.example.net"]})
    [seen] = sightings(chain_trace((ours, theirs), org=None), config)
    assert (seen.server_id, seen.build) == ("mail.fabrikam.example", "15.0.1497.2")
    assert [o.server for o in sightings_of(chain_trace((ours, theirs), org=None))] == [
        "mx1.example.net", "mail.fabrikam.example"]


def test_non_exchange_software_is_named():
    hop = ("from a (a [192.0.2.81]) by relay.northwind.example (8.17.1.9/8.17.1.9) with ESMTPS id 51C; "
           "Thu, 12 Feb 2026 14:30:04 GMT")
    [seen] = sightings_of(chain_trace((hop,), org=None))
    assert (seen.server, seen.build, seen.software) == ("relay.northwind.example", "8.17.1.9", "Sendmail")


def test_connecting_hosts_of_traffic_only_formats():
    exo_row = MessageTrace(event_time=AT, source_format="exo_trace", position=SourcePosition("t", 2),
                           event_id="RECEIVE", client_ip="198.51.100.31", client_hostname="ex13hyb01.contoso.example",
                           org="tenant-guid")
    [seen] = sightings_of(exo_row)
    assert (seen.server_id, seen.build, seen.evidence) == (
        "tenant-guid/ex13hyb01.contoso.example", None, "exo_trace-traffic")
    assert sightings_of(MessageTrace(event_time=AT, source_format="exo_trace", position=SourcePosition("t", 3),
                                     event_id="DELIVER", client_hostname="x.example")) == []
    eop = MessageTrace(event_time=AT, source_format="exo_trace", position=SourcePosition("t", 4), event_id="RECEIVE",
                       client_hostname="bn8nam12ft045.eop-nam12.prod.protection.outlook.com")
    assert sightings_of(eop) == []
    exim_row = MessageTrace(event_time=AT, source_format="exim", position=SourcePosition("e", 1), event_id="ARRIVAL",
                            client_ip="192.0.2.201")
    assert [o.server for o in sightings_of(exim_row)] == ["192.0.2.201"]


def test_traces_that_differ_only_in_their_message_share_an_identity_key():
    from pipeline.domain.identity import identity_key

    row = trace(logged_by="ex16mbx01.contoso.example", logged_by_build="15.1.2507.39", message_id="<a@b>")
    other = replace(row, message_id="<c@d>", total_bytes=7, event_time=AT.replace(hour=9),
                    position=SourcePosition("g", 9))
    assert identity_key(row) == identity_key(other) and sightings_of(row) == sightings_of(other)
    assert identity_key(replace(row, logged_by_build="15.1.2507.61")) != identity_key(row)
    assert identity_key(chain_trace(CHAIN)) is None


# Exchange Online's own header is the only one: the on-premises sender wrote none (item 2 of issue 9).
EXO_ONLY = ("from au-mta-51.example.lan (203.0.113.22) by XXXNAM10FT021.mail.protection.outlook.com (10.13.182.191) "
            "with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) "
            "id 15.20.8466.25 via Frontend Transport; Tue, 10 Feb 2026 08:14:08 +0000")
EXO_INTERNAL = ("from XXXNAM10FT021.mail.protection.outlook.com (2603:10b6:806:2c::4) "
                "by SN7PR04CA0123.outlook.office365.com (2603:10b6:806:2c::11) with Microsoft SMTP Server "
                "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) "
                "id 15.20.8466.30 via Frontend Transport; Tue, 10 Feb 2026 08:14:09 +0000")


def test_when_only_our_receiver_wrote_a_header_its_from_host_is_the_connecting_server():
    [seen] = sightings_of(chain_trace((EXO_INTERNAL, EXO_ONLY)))
    assert (seen.server, seen.build, seen.evidence, seen.behind_relay) == (
        "au-mta-51.example.lan", None, "received-from", None)


def test_the_from_ip_stands_in_for_a_from_host_that_is_no_name():
    hop = EXO_ONLY.replace("from au-mta-51.example.lan (203.0.113.22)", "from [203.0.113.22] (203.0.113.22)")
    assert [o.server for o in sightings_of(chain_trace((hop,)))] == ["203.0.113.22"]


def test_no_sender_server_from_our_own_hops_or_an_authenticated_submission():
    internal = EXO_ONLY.replace("au-mta-51.example.lan (203.0.113.22)", "mx2.example.net (192.0.2.2)")
    config = PolicyConfig.from_mapping({"trusted_receivers": ["*.outlook.com", "mx*.example.net"]})
    assert sightings(chain_trace((internal,)), config) == []
    submission = ("from laptop17.corp.example (laptop17.corp.example [10.1.2.3]) by mx1.example.net (Postfix) "
                  "with ESMTPSA id 4T9xYz; Tue, 10 Feb 2026 08:14:08 +0000")
    assert sightings(chain_trace((submission,)), config) == []
    filter_hop = ("from localhost (localhost [127.0.0.1]) by mx1.example.net (Postfix) with ESMTP id 4T9xZa; "
                  "Tue, 10 Feb 2026 08:14:08 +0000")
    assert sightings(chain_trace((filter_hop,)), config) == []


def test_loopback_and_internal_hops_are_not_servers():
    def row(host, ip):
        return MessageTrace(event_time=AT, source_format="postfix", position=SourcePosition("m", 1),
                            client_hostname=host, client_ip=ip)

    assert sightings_of(row("localhost", "127.0.0.1")) == []
    assert sightings_of(row(None, "::1")) == []
    config = PolicyConfig.from_mapping({"internal_hops": ["scan*.corp.example", "10.20.0.0/16"]})
    assert sightings(row("scan2.corp.example", "10.9.9.9"), config) == []
    assert sightings(row("relay.corp.example", "10.20.4.5"), config) == []
    assert [s.server for s in sightings(row("mail.partner.example", "198.51.100.9"), config)] == [
        "mail.partner.example"]


def test_an_exchange_2010_tracking_log_names_its_product_without_a_build():
    [seen] = sightings_of(trace(logged_by="ex10hub01.contoso.example", logged_by_build="14.0.0.0"))
    assert (seen.build, seen.software, seen.evidence) == (None, "Exchange2010", "msgtrk-version")
    [other] = sightings_of(trace(logged_by="ex13cas01.contoso.example", logged_by_build="15.0.0.0"))
    assert (other.build, other.software, other.evidence) == (None, None, "msgtrk-traffic")


def test_each_sighting_says_whether_its_path_is_in_the_enforcement_scope():
    config = PolicyConfig.from_mapping({"scope": {"connectors": ["Inbound from * on-premises"],
                                                  "client_networks": ["203.0.113.0/24"]}})
    exo_row = MessageTrace(event_time=AT, source_format="exo_trace", position=SourcePosition("t", 2),
                           event_id="RECEIVE", client_ip="198.51.100.31", client_hostname="ex13hyb01.contoso.example",
                           connector_id="Inbound from Contoso on-premises")
    assert [s.in_scope for s in sightings(exo_row, config)] == [True]
    assert [s.in_scope for s in sightings(replace(exo_row, connector_id="Partner TLS"), config)] == [False]
    # A header chain's path is our receiver's `from` IP.
    assert [s.in_scope for s in sightings(chain_trace((EXO_ONLY,)), config)] == [True]
    assert [s.in_scope for s in sightings(chain_trace(CHAIN), config)] == [False, False]
    assert all(s.in_scope for s in sightings_of(chain_trace(CHAIN)))


def test_the_tls_peer_of_our_receivers_header_puts_a_chain_in_scope():
    ours = ('from ex16edge01.contoso.example (ex16edge01.contoso.example [198.51.100.17]) '
            '(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)) '
            '(Client CN "ex16edge01.contoso.example", Issuer "Contoso Issuing CA" (verified OK)) '
            'by mx1.example.net (Postfix) with ESMTPS id 4T9xYz; Tue, 10 Feb 2026 08:14:08 +0000')
    config = PolicyConfig.from_mapping({"trusted_receivers": ["mx*.example.net"],
                                        "scope": {"tls_peers": ["*.contoso.example"]}})
    [seen] = sightings(chain_trace((ours, CHAIN[1])), config)
    assert (seen.server, seen.in_scope) == ("ex16edge01.contoso.example", True)
    other = PolicyConfig.from_mapping({"trusted_receivers": ["mx*.example.net"],
                                       "scope": {"tls_peers": ["*.fabrikam.example"]}})
    assert [s.in_scope for s in sightings(chain_trace((ours, CHAIN[1])), other)] == [False]


# A site whose gateway is a filtering appliance that names its product, not its host, and whose
# mailbox store adds a header on delivery over LMTP (received headers as such sites write them).
APPLIANCE_AND_LMTP = (
    "from mx1.ours.example (mx1.ours.example [10.20.0.5]) by store3.ours.example (Dovecot) with LMTP id "
    "kK3bGq1pZ2k4QgAAmZ9iHw (envelope-from <billing@fabrikam.example>) for <jo@ours.example>; "
    "Tue, 10 Feb 2026 08:14:09 +0000",
    "from mail.fabrikam.example (mail.fabrikam.example [203.0.113.25]) by mx1.ours.example (Postfix) with ESMTPS "
    "id 4T9xYz1Kq2z9rB for <jo@ours.example>; Tue, 10 Feb 2026 08:14:08 +0000",
    "from EX19MBX02.fabrikam.example (10.4.0.12) by Forcepoint Email with ESMTP id 2A1F3C0B-7D41; "
    "Tue, 10 Feb 2026 08:14:07 +0000",
    "from EX19MBX02.fabrikam.example (10.4.0.12) by mail.fabrikam.example (10.4.0.11) with Microsoft SMTP Server "
    "(version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.2.1748.10; Tue, 10 Feb 2026 08:14:06 +0000",
)


def test_a_product_named_after_by_is_no_server_and_a_delivery_over_lmtp_is_no_relay():
    config = PolicyConfig(trusted_receivers=("mx1.ours.example",))
    seen = sightings(chain_trace(APPLIANCE_AND_LMTP, org=None), config)
    assert [(o.server, o.build, o.behind_relay) for o in seen] == [("mail.fabrikam.example", "15.2.1748.10", None)]
