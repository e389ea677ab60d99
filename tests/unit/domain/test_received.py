from datetime import UTC, datetime

from pipeline.domain.received import read_hop, unfold

EXCHANGE_2016 = """from EX16MBX01.contoso.example (198.51.100.16) by
 ex16edge01.contoso.example (198.51.100.17) with Microsoft SMTP Server
 (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384) id
 15.1.2507.39; Tue, 10 Feb 2026 08:14:06 +0000"""


def test_folded_exchange_header_gives_by_host_build_and_time():
    hop = read_hop(EXCHANGE_2016)
    assert (hop.by, hop.from_host, hop.from_ip) == (
        "ex16edge01.contoso.example", "ex16mbx01.contoso.example", "198.51.100.16")
    assert (hop.build, hop.software, hop.evidence) == ("15.1.2507.39", None, "received-id")
    assert hop.received_at == datetime(2026, 2, 10, 8, 14, 6, tzinfo=UTC)


def test_build_forms():
    assert read_hop("from a by b with Microsoft SMTP Server id 15.2.1544.14 via Frontend Transport; "
                    "Mon, 16 Feb 2026 11:20:31 +0000").build == "15.2.1544.14"
    assert read_hop("from a by b with Microsoft SMTP Server (TLS) id 8.3.417.1; "
                    "Mon, 16 Feb 2026 11:20:31 +0000").build == "8.3.417.1"
    mapi = read_hop("from x ([fe80::1%3]) by x.contoso.example ([fe80::1%3]) with mapi id 15.01.2507.039; "
                    "Tue, 10 Feb 2026 08:14:05 +0000")
    assert (mapi.build, mapi.evidence) == ("15.1.2507.39", "mapi-id")
    assert read_hop("from x by y with mapi; Tue, 10 Feb 2026 08:14:05 +0000").build is None
    exim = read_hop("from [192.0.2.99] (helo=web01) by lists.example with esmtpsa  (TLS1.3) tls TLS_AES_256_GCM_SHA384 "
                    "(Exim 4.96) (envelope-from <a@b>) id 1rhQ2x-0004Ab-7K; Thu, 12 Feb 2026 14:30:03 +0000")
    assert (exim.by, exim.build, exim.software) == ("lists.example", "4.96", "Exim")
    sendmail = read_hop("from a (a [192.0.2.81]) by relay.example (8.17.1.9/8.17.1.9) with ESMTPS id 51CEU4XQ012345; "
                        "Thu, 12 Feb 2026 14:30:04 GMT")
    assert (sendmail.build, sendmail.software) == ("8.17.1.9", "Sendmail")
    postfix = read_hop("from a by mx1.example.net (Postfix) with ESMTPS id 4TqK9x2ZbJz1; "
                       "Wed, 11 Feb 2026 10:02:11 +0100 (CET)")
    assert (postfix.build, postfix.software) == (None, "Postfix")
    assert postfix.received_at == datetime(2026, 2, 11, 9, 2, 11, tzinfo=UTC)


def test_headers_without_date_or_by():
    hop = read_hop("from somewhere")
    assert (hop.by, hop.received_at, hop.build) == (None, None, None)
    assert read_hop("by x; not a date").received_at is None


def test_unfold_joins_continuation_lines():
    assert unfold("a\r\n\tb\n  c") == "a b c"


def test_exim_versions_with_packager_suffixes_and_compile_numbers_are_exim():
    stamp = "from a (helo=a.example) by b.example with esmtpsa {} id 1vFx9C-0003Qm-Lh; Wed, 18 Feb 2026 05:05:31 -0500"
    versions = {
        "(Exim 4.82_1-5b7a7c0-XX)": "4.82",
        "(Exim 4.90_1)": "4.90",
        "(Exim 4.96 #2)": "4.96",
        "(Exim 4.97.1)": "4.97.1",
        "(Exim 4.92.3 #3 (Red Hat Linux))": "4.92.3",
    }
    for comment, version in versions.items():
        hop = read_hop(stamp.format(comment))
        assert (hop.by, hop.build, hop.software, hop.evidence) == (
            "b.example", version, "Exim", "exim-version"), comment
    assert read_hop(stamp.format("(Exim 4.96x)")).software is None


def test_a_single_word_after_by_is_a_host_only_where_a_host_name_would_end():
    assert read_hop("from a (a [192.0.2.1]) by mailhub (Postfix) with ESMTP id 1; Tue, 10 Feb 2026 08:14:07 +0000").by \
        == "mailhub"
    assert read_hop("from a by relay with SMTP; Tue, 10 Feb 2026 08:14:07 +0000").by == "relay"
    assert read_hop("from a (10.4.0.12) by Forcepoint Email with ESMTP id 2A1F3C0B").by is None
    assert read_hop("from a by mx.example.net Postfix with ESMTP").by == "mx.example.net"
