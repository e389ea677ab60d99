from datetime import datetime, timezone

from pipeline.domain.events import MessageTrace, SourcePosition
from pipeline.domain.config import PolicyConfig
from pipeline.domain.identity import sightings


def sightings_of(trace):
    return sightings(trace, PolicyConfig())

AT = datetime(2026, 2, 10, 8, 14, 3, tzinfo=timezone.utc)


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
    assert sightings_of(trace(logged_by="dm6pr12mb4123.namprd12.prod.outlook.com", logged_by_build="15.20.7202.31")) == []
    assert sightings_of(trace()) == []


CHAIN = (
    "from ex16edge01.contoso.example (198.51.100.17) by BN8NAM12FT045.mail.protection.outlook.com (10.13.182.191) "
    "with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.20.8466.25 "
    "via Frontend Transport; Tue, 10 Feb 2026 08:14:08 +0000",
    "from EX16MBX01.contoso.example (198.51.100.16) by ex16edge01.contoso.example (198.51.100.17) with Microsoft "
    "SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id 15.1.2507.39; Tue, 10 Feb 2026 08:14:06 +0000",
    "from EX16MBX01.contoso.example ([fe80::1%3]) by EX16MBX01.contoso.example ([fe80::1%3]) with mapi id "
    "15.01.2507.039; Tue, 10 Feb 2026 08:14:05 +0000",
)


def chain_trace(received, org="contoso.example"):
    return MessageTrace(event_time=AT, source_format="rfc5322", position=SourcePosition("m", 1), org=org, received=received)


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
    theirs = "from x by mail.fabrikam.example with Microsoft SMTP Server (TLS) id 15.0.1497.2; Wed, 11 Feb 2026 10:02:10 +0100"
    config = PolicyConfig.from_mapping({"trusted_receivers": ["mx*.example.net"]})
    [seen] = sightings(chain_trace((ours, theirs), org=None), config)
    assert (seen.server_id, seen.build) == ("mail.fabrikam.example", "15.0.1497.2")
    assert [o.server for o in sightings_of(chain_trace((ours, theirs), org=None))] == ["mx1.example.net", "mail.fabrikam.example"]


def test_non_exchange_software_is_named():
    hop = ("from a (a [192.0.2.81]) by relay.northwind.example (8.17.1.9/8.17.1.9) with ESMTPS id 51C; "
           "Thu, 12 Feb 2026 14:30:04 GMT")
    [seen] = sightings_of(chain_trace((hop,), org=None))
    assert (seen.server, seen.build, seen.software) == ("relay.northwind.example", "8.17.1.9", "Sendmail")


def test_connecting_hosts_of_traffic_only_formats():
    exo_row = MessageTrace(event_time=AT, source_format="exo_trace", position=SourcePosition("t", 2), event_id="RECEIVE",
                           client_ip="198.51.100.31", client_hostname="ex13hyb01.contoso.example", org="tenant-guid")
    [seen] = sightings_of(exo_row)
    assert (seen.server_id, seen.build, seen.evidence) == ("tenant-guid/ex13hyb01.contoso.example", None, "exo_trace-traffic")
    assert sightings_of(MessageTrace(event_time=AT, source_format="exo_trace", position=SourcePosition("t", 3),
                                     event_id="DELIVER", client_hostname="x.example")) == []
    eop = MessageTrace(event_time=AT, source_format="exo_trace", position=SourcePosition("t", 4), event_id="RECEIVE",
                       client_hostname="bn8nam12ft045.eop-nam12.prod.protection.outlook.com")
    assert sightings_of(eop) == []
    exim_row = MessageTrace(event_time=AT, source_format="exim", position=SourcePosition("e", 1), event_id="ARRIVAL",
                            client_ip="192.0.2.201")
    assert [o.server for o in sightings_of(exim_row)] == ["192.0.2.201"]


def test_traces_that_differ_only_in_their_message_share_an_identity_key():
    from dataclasses import replace

    from pipeline.domain.identity import identity_key

    row = trace(logged_by="ex16mbx01.contoso.example", logged_by_build="15.1.2507.39", message_id="<a@b>")
    other = replace(row, message_id="<c@d>", total_bytes=7, event_time=AT.replace(hour=9), position=SourcePosition("g", 9))
    assert identity_key(row) == identity_key(other) and sightings_of(row) == sightings_of(other)
    assert identity_key(replace(row, logged_by_build="15.1.2507.61")) != identity_key(row)
    assert identity_key(chain_trace(CHAIN)) is None
