"""Message tracking logs: header blocks (msgtrk) and their rows read column-wise (msgtrk_rows).
Short writer names and the rows held for their FQDN: tests/unit/domain/test_identity_writers.py."""
from datetime import UTC, datetime

from pipeline.domain.events import epoch_ms
from pipeline.domain.parsers.msgtrk import writer_build

F30 = (
    "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,"
    "event-id,internal-message-id,message-id,network-message-id,recipient-address,recipient-status,"
    "total-bytes,recipient-count,related-recipient-address,reference,message-subject,sender-address,"
    "return-path,message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data,"
    "transport-traffic-type,log-id,schema-version"
)
F26 = (
    "date-time,client-ip,client-hostname,server-ip,server-hostname,source-context,connector-id,source,"
    "event-id,internal-message-id,message-id,recipient-address,recipient-status,total-bytes,"
    "recipient-count,related-recipient-address,reference,message-subject,sender-address,return-path,"
    "message-info,directionality,tenant-id,original-client-ip,original-server-ip,custom-data"
)
RECEIVE_2016 = (
    '2026-02-10T08:14:03.127Z,fe80::1c2a:7e4f:3b1d:9a10%3,app1.contoso.example,198.51.100.16,'
    'EX16MBX01.contoso.example,08DC3F1A2B3C4D5E;2026-02-10T08:14:02.981Z;0,EX16MBX01\\Default Frontend EX16MBX01,'
    'SMTP,RECEIVE,41231,<a1@contoso.example>,6f1c2a8e-0d5b-4c1e-9a77-2b1f3c4d5e6f,'
    'jo@partner.example;al@partner.example,,15230,2,,,"Re: ""Budget"", final version",'
    'billing@contoso.example,billing@contoso.example,2026-02-10T08:14:01.000Z;SRV=EX16MBX01.contoso.example:TOTAL=0,'
    'Originating,,,,S:FirstForestHop=EX16MBX01.contoso.example;S:DeliveryPriority=Normal,Email,'
    '3c9d2e7f-1111-2222-3333-444455556666,15.01.2507.039'
)
SEND_2016 = RECEIVE_2016.replace("08:14:03.127Z", "08:14:04.500Z").replace(",SMTP,RECEIVE,", ",SMTP,SEND,").replace(
    "app1.contoso.example,198.51.100.16,EX16MBX01.contoso.example",
    "EX16MBX01.contoso.example,198.51.100.16,mx.partner.example")
SEND_2010 = (
    "2026-03-15T10:00:05.500Z,198.51.100.10,EX10HUB01.contoso.example,203.0.113.45,mx.partner.example,"
    "08DC3F1A2B3C4D60;250 2.6.0 <b2@contoso.example> Queued mail for delivery,Internet,SMTP,SEND,77,"
    "<b2@contoso.example>,jo@partner.example,250 2.6.0 Queued,2048,1,,,Lunch?,ann@contoso.example,"
    "ann@contoso.example,,Originating,,,,"
)
AT = datetime(2026, 2, 10, 8, 14, 3, 127000, tzinfo=UTC)


def header(version, fields):
    return ["\ufeff#Software: Microsoft Exchange Server\r", f"#Version: {version}\r",
            "#Log-type: Message Tracking Log\r", "#Date: 2026-02-10T00:00:00.000Z\r", f"#Fields: {fields}\r"]


def test_rows_of_a_2016_log_become_one_group_per_writer_build_and_org(make_source):
    source = make_source().feed(header("15.01.2507.039", F30) + [RECEIVE_2016 + "\r", SEND_2016 + "\r"])
    [group] = source.out.groups
    assert (group.template.logged_by, group.template.logged_by_build, group.template.org) == (
        "ex16mbx01.contoso.example", "15.1.2507.39", None)
    # Two rows of one message: two sightings, one message with its newest time.
    assert group.count == 2 and group.first_ms == epoch_ms(AT)
    assert group.template.event_time == datetime(2026, 2, 10, 8, 14, 4, 500000, tzinfo=UTC)
    assert (group.message_keys, group.times_ms, group.sizes) == (
        ["<a1@contoso.example>"], [epoch_ms(group.template.event_time)], [15230])
    assert source.out.errors == []


def test_a_2010_send_row_is_written_by_the_client_host_and_carries_the_2010_constant(make_source):
    """14.0.0.0 is no build, but it names the product: identity reads it."""
    [group] = make_source().feed(header("14.0.0.0", F26) + [SEND_2010]).out.groups
    assert (group.template.logged_by, group.template.logged_by_build) == ("ex10hub01.contoso.example", "14.0.0.0")


def test_a_new_header_block_replaces_the_old_columns(make_source):
    source = make_source().feed(header("14.0.0.0", F26) + [SEND_2010] + header("15.01.2507.039", F30) + [RECEIVE_2016])
    assert (source.state.parser.version, source.state.parser.fields) == ("15.01.2507.039", F30.split(","))
    assert [(g.template.logged_by, g.template.logged_by_build) for g in source.out.groups] == [
        ("ex10hub01.contoso.example", "14.0.0.0"), ("ex16mbx01.contoso.example", "15.1.2507.39")]


def test_blank_lines_are_skipped(make_source):
    source = make_source().feed(["\r", "   "])
    assert (source.out.groups, source.out.errors) == ([], [])


def test_constant_versions_are_not_builds():
    assert writer_build("14.0.0.0") is None
    assert writer_build("15.0.0.0") is None
    assert writer_build("15.02.1544.014") == "15.2.1544.14"
    assert writer_build("") is None


def test_errors_say_where_and_why_and_the_other_rows_go_on(make_source):
    lines = ["#Software: Microsoft Exchange Server", "2026-02-10T08:14:02Z,EX16MBX01", "#Version: 15.01.2507.039",
             f"#Fields: {F30}",
        "2026-02-10T08:14:03Z,1.2.3.4",
        "yesterday" + RECEIVE_2016[24:],
        RECEIVE_2016.replace(",15230,", ",15k,"),
        RECEIVE_2016.replace('"Re: ""Budget"", final version"', '"Re: unclosed'),
        "",
        RECEIVE_2016,
    ]
    source = make_source().feed(lines)
    assert [(str(e), e.field) for e in source.out.errors] == [
        ("sample:2: 2 values: no message tracking log has that many columns (21, 26, 27, 30)", None),
        ("sample:5: 2 values for the 30 columns of #Fields", None),
        ("sample:6: field date-time: 'yesterday' is not an ISO-8601 time", "date-time"),
        ("sample:7: field total-bytes: '15k' is not a byte count", "total-bytes"),
        ("sample:8: broken CSV quoting: a quoted value is not closed", None),
    ]
    [group] = source.out.groups
    assert group.count == 1 and group.message_keys == ["<a1@contoso.example>"]


def test_rows_without_a_message_id_are_told_apart_by_time_and_size(make_source):
    row = SEND_2010.replace("<b2@contoso.example>,jo@", ",jo@")
    later = row.replace("10:00:05.500Z", "10:00:06.500Z")
    [group] = make_source().feed(header("14.0.0.0", F26) + [row, later]).out.groups
    assert group.message_keys == ["@2026-03-15T10:00:05.500+00:00/2048", "@2026-03-15T10:00:06.500+00:00/2048"]


def test_sources_of_one_batch_are_read_together_and_grouped_apart(make_source):
    from pipeline.domain.events import SourcePosition
    from pipeline.domain.lines import LineRun
    from pipeline.domain.parsers import dispatch
    from pipeline.domain.parsers.msgtrk_rows import TrackingRows
    from pipeline.domain.parsers.postfix import MemoryOpenMessages

    out, rows, states = make_source().out, TrackingRows(), {}
    for name, lines in (("a.log", header("15.01.2507.039", F30) + [RECEIVE_2016]),
                        ("b.log", header("14.0.0.0", F26) + [SEND_2010]),
                        ("c.log", header("15.01.2507.039", F30)
                         + [RECEIVE_2016.replace("EX16MBX01.contoso", "EX16MBX02.contoso")])):
        run = LineRun.of_lines(name, lines, [SourcePosition(name, n) for n in range(1, len(lines) + 1)], None)
        states[name] = dispatch.parse_run(None, run, out, MemoryOpenMessages(), rows)
    assert out.groups == []
    rows.flush(out)
    assert sorted((g.template.position.source, g.template.logged_by) for g in out.groups) == [
        ("a.log", "ex16mbx01.contoso.example"), ("b.log", "ex10hub01.contoso.example"),
        ("c.log", "ex16mbx02.contoso.example")]


def test_rows_read_from_packed_bytes_give_what_rows_read_from_lines_give(make_source):
    """A packed run of rows only is read from its bytes as they are; anything else line by line."""
    from pipeline.domain.lines import LineRun
    from pipeline.domain.parsers import dispatch
    from pipeline.domain.parsers.msgtrk_rows import TrackingRows

    head = header("15.01.2507.039", F30)
    rows = [RECEIVE_2016 + "\r", "   \r", "2026-02-10T08:14:03Z,1.2.3.4\r", SEND_2016 + "\r",
            RECEIVE_2016.replace("Budget", "Bud\"get") + "\r"]
    results = []
    for packed in (True, False):
        source = make_source("f.log")
        source.feed(head)
        data = "".join(line + "\n" for line in rows).encode()
        offset = sum(len(line.encode()) + 1 for line in head)
        run = (LineRun.packed("f.log", data, len(head) + 1, offset, None) if packed else
               LineRun.of_lines("f.log", rows, [LineRun.packed("f.log", data, len(head) + 1, offset, None).position(i)
                                                for i in range(len(rows))], None))
        tracking = TrackingRows()
        dispatch.parse_run(source.state, run, source.out, source.open_messages, tracking)
        tracking.flush(source.out)
        results.append(([(g.template.logged_by, g.count, g.message_keys) for g in source.out.groups],
                        [str(e) for e in source.out.errors]))
    assert results[0] == results[1]
    groups, errors = results[0]
    assert groups == [("ex16mbx01.contoso.example", 2, ["<a1@contoso.example>"])]
    assert [e.split(": ", 1)[1] for e in errors] == ["2 values for the 30 columns of #Fields",
                                                      "broken CSV quoting: a quoted value is not closed"]


def test_a_hash_inside_a_row_is_no_header_line_and_a_bom_opens_a_new_file(make_source):
    from pipeline.domain.lines import LineRun
    from pipeline.domain.parsers import dispatch
    from pipeline.domain.parsers.msgtrk_rows import TrackingRows

    rows = [RECEIVE_2016.replace("Budget", "Invoice #5") + "\r"] + header("14.0.0.0", F26) + [SEND_2010 + "\r"]
    source = make_source("f.log").feed(header("15.01.2507.039", F30))
    tracking = TrackingRows()
    data = "".join(line + "\n" for line in rows).encode()
    dispatch.parse_run(source.state, LineRun.packed("f.log", data, 6, 0, None), source.out, source.open_messages,
                       tracking)
    tracking.flush(source.out)
    assert source.out.errors == []
    assert sorted((g.template.logged_by, g.template.logged_by_build) for g in source.out.groups) == [
        ("ex10hub01.contoso.example", "14.0.0.0"), ("ex16mbx01.contoso.example", "15.1.2507.39")]


def feed_packed(make_source, name, data: bytes):
    """Bytes fed as `evaluate` and the shipper's packed records feed them: one packed run."""
    from pipeline.domain.lines import LineRun
    from pipeline.domain.parsers import dispatch
    from pipeline.domain.parsers.msgtrk_rows import TrackingRows

    source, tracking = make_source(name), TrackingRows()
    source.state = dispatch.parse_run(None, LineRun.packed(name, data, 1, 0, None), source.out, source.open_messages,
                                      tracking)
    tracking.flush(source.out)
    return source


def test_rows_shipped_without_their_header_lines_take_the_columns_of_their_field_count(samples, make_source):
    """Filebeat with exclude_lines: ['^#']: the 30 values give the 2013+ columns, schema-version the build."""
    data = (samples / "msgtrk" / "MSGTRK2026021001-1.filebeat-no-header.LOG").read_bytes()
    lines = data.decode().splitlines()
    for source in (feed_packed(make_source, "f.log", data), make_source("f.log").feed(lines)):
        assert source.out.errors == []
        # One group per connector (a STOREDRIVER row has none), all of one server and build.
        assert sorted((g.template.logged_by, g.template.logged_by_build, g.template.connector_id or "", g.count)
                      for g in source.out.groups) == [
            ("ex19mbx05.fourthcoffee.example", "15.2.1544.14", "", 1),
            ("ex19mbx05.fourthcoffee.example", "15.2.1544.14", "ex19mbx05\\default ex19mbx05", 1),
            ("ex19mbx05.fourthcoffee.example", "15.2.1544.14", "outbound to internet", 1)]
        assert source.state.format == "msgtrk"


def test_rows_without_header_lines_of_2007_and_2010_name_their_product_only_and_other_counts_are_errors(make_source):
    row_2007 = ("2026-01-22T10:15:00.000Z,10.2.0.7,EX07HUB01.wingtip.example,203.0.113.60,smtp.wingtip.example,,"
                "Outbound to Internet,SMTP,SEND,771,<0711@EX07HUB01.wingtip.example>,jo@example.net,"
                "250 2.0.0 OK,5000,1,,,"
                "Catalogue,sales@wingtip.example,sales@wingtip.example,")
    source = make_source().feed([SEND_2010, row_2007, RECEIVE_2016, "2026-03-15T10:00:06.000Z,1.2.3.4"])
    # The first row sets the columns; rows of another version are read with theirs. Only Exchange
    # 2007 wrote 21 columns: its rows name the product, by the version that stands for it.
    assert sorted((g.template.logged_by, g.template.logged_by_build) for g in source.out.groups) == [
        ("ex07hub01.wingtip.example", "8.0.0.0"), ("ex10hub01.contoso.example", None),
        ("ex16mbx01.contoso.example", "15.1.2507.39")]
    # A later batch may start with a row of no version: the next one sets the columns.
    source.out.groups.clear()
    source.feed(["2026-03-15T10:00:07.000Z,198.51.100.10,EX10HUB01.contoso.example,SEND", SEND_2010])
    assert [g.template.logged_by for g in source.out.groups] == ["ex10hub01.contoso.example"]
    assert [str(e) for e in source.out.errors] == [
        "sample:4: 2 values: no message tracking log has that many columns (21, 26, 27, 30)",
        "sample:5: 4 values: no message tracking log has that many columns (21, 26, 27, 30)"]


def test_rows_under_a_header_block_without_fields_take_the_columns_of_their_field_count(make_source):
    """`grep -v '^#'` keeps a file's first line: its BOM hides the "#"."""
    source = make_source().feed(["\ufeff#Software: Microsoft Exchange Server\r", SEND_2010 + "\r", RECEIVE_2016 + "\r"])
    assert source.out.errors == []
    assert sorted((g.template.logged_by, g.template.logged_by_build) for g in source.out.groups) == [
        ("ex10hub01.contoso.example", None), ("ex16mbx01.contoso.example", "15.1.2507.39")]


def test_a_header_block_after_rows_without_one_gives_the_columns_again(make_source):
    source = make_source().feed([SEND_2010] + header("15.01.2507.039", F30) + [RECEIVE_2016])
    assert source.out.errors == []
    assert [(g.template.logged_by, g.template.logged_by_build) for g in source.out.groups] == [
        ("ex10hub01.contoso.example", None), ("ex16mbx01.contoso.example", "15.1.2507.39")]


def test_a_row_without_its_header_is_detected_by_its_time_and_field_count():
    from pipeline.domain.parsers import dispatch

    assert dispatch.detect(RECEIVE_2016 + "\r\n") == "msgtrk"
    assert dispatch.detect(SEND_2010) == "msgtrk"
    # A Postfix line with an RFC 3339 time, a short CSV row.
    assert dispatch.detect(
        "2026-02-16T12:02:44.318211+00:00 mx1 postfix/smtpd[1]: ABCDEF1: client=a[192.0.2.1]") == "postfix"
    assert dispatch.detect("2026-02-10T08:14:03Z,1.2.3.4") is None


def test_an_smtp_protocol_log_is_refused_once_and_its_rows_skipped(samples, make_source):
    recv = (samples / "msgtrk" / "RECV2026021009-1.LOG").read_bytes()
    tracking = "".join(line + "\n" for line in header("15.01.2507.039", F30) + [RECEIVE_2016 + "\r"]).encode()
    for source in (feed_packed(make_source, "f.log", recv + tracking),
                   make_source("f.log").feed((recv + tracking).decode().splitlines())):
        assert [(e.position.line, e.reason) for e in source.out.errors] == [
            (3, "log type 'SMTP Receive Protocol Log', not a message tracking log: its rows are skipped")]
        # The next file (its #Software line) is a tracking log again.
        assert [g.template.logged_by for g in source.out.groups] == ["ex16mbx01.contoso.example"]


def test_other_logs_with_a_header_block_are_refused_by_log_type_or_fields(make_source):
    connectivity = ["#Software: Microsoft Exchange Server", "#Version: 15.0.0.0",
                    "#Log-type: Transport Connectivity Log", "#Date: 2026-02-10T00:00:00.000Z",
                    "#Fields: date-time,session,source,Destination,direction,description",
                    "2026-02-10T09:14:40.102Z,08DC4A1B2C3D4E70,SMTP,partner.example,+,Outbound to Internet"]
    iis = ["#Software: Microsoft Internet Information Services 10.0", "#Version: 1.0", "#Date: 2026-02-10 00:00:01",
           "#Fields: date time s-ip cs-method cs-uri-stem", "2026-02-10 00:00:01 10.0.4.21 POST /owa/"]
    source = make_source().feed(connectivity + iis)
    assert [str(e) for e in source.out.errors] == [
        "sample:3: log type 'Transport Connectivity Log', not a message tracking log: its rows are skipped",
        "sample:10: #Fields name no date-time, client-hostname, server-hostname, event-id: not a message tracking log, "
        "its rows are skipped"]
    assert source.out.groups == []


def test_a_writer_name_that_is_no_host_name_is_an_error_and_no_server(make_source):
    fields = "date-time,client-hostname,server-hostname,event-id,message-id"
    lines = ["#Software: Microsoft Exchange Server", "#Version: 15.01.2507.039", f"#Fields: {fields}",
             "2026-02-10T08:14:02.000Z,app1.contoso.example,EX01\x00,RECEIVE,<m0@x>",
             "2026-02-10T08:14:03.000Z,ex01.contoso.example\x07,mx.partner.example,SEND,<m1@x>",
             f"2026-02-10T08:14:04.000Z,app1.contoso.example,{'a' * 64}.contoso.example,RECEIVE,<m2@x>",
             "2026-02-10T08:14:05.000Z,app1.contoso.example,EX_01.contoso.example,RECEIVE,<m3@x>",
             "yesterday,app1.contoso.example,EX01\x00,RECEIVE,<m4@x>"]
    source = make_source().feed(lines)
    assert [(e.position.line, e.field, e.reason) for e in source.out.errors] == [
        (4, "server-hostname", "host name 'ex01\\x00' holds control characters"),
        (5, "client-hostname", "host name 'ex01.contoso.example\\x07' holds control characters"),
        (6, "server-hostname", f"host name '{'a' * 64}.contoso.example' has a label of 64 characters (at most 63)"),
        (8, "date-time", "'yesterday' is not an ISO-8601 time")]
    # Names with control characters are never learnt: the short name of line 4 stays unknown.
    assert [(g.template.logged_by, g.message_keys) for g in source.out.groups] == [
        ("ex_01.contoso.example", ["<m3@x>"])]
    assert source.state.hosts == {"app1": "app1.contoso.example", "ex_01": "ex_01.contoso.example",
                                     "mx": "mx.partner.example"}


def test_bytes_that_are_not_utf8_cost_their_lines_only(samples, make_source):
    """A packed run is read from its bytes; Arrow refuses bytes that are not UTF-8 (a disk error, a
    file of another encoding): the run is then read from its lines as decoded, each bad line named."""
    data = (samples.parent.parent / "deploy" / "samples" / "MSGTRK_EX16MBX01_20260210.LOG").read_bytes()
    lines = data.split(b"\n")
    first_row = next(i for i, line in enumerate(lines) if line and not line.lstrip(b"\xef\xbb\xbf").startswith(b"#"))
    # A row cut short by garbage, and a whole row whose message id holds a byte no UTF-8 has.
    lines[first_row + 1] = b"2026-01-20T07:12:4\xff\xfe,garbage"
    lines[first_row + 2] = lines[first_row + 2].replace(b"@", b"\xb4@", 1)
    clean = feed_packed(make_source, "f.log", data)
    source = feed_packed(make_source, "f.log", b"\n".join(lines))
    assert [(e.position.line, e.reason) for e in source.out.errors] == [
        (first_row + 2, "2 values for the 30 columns of #Fields")]
    clean_keys = sorted(k for g in clean.out.groups for k in g.message_keys)
    keys = sorted(k for g in source.out.groups for k in g.message_keys)
    # Only the cut row is lost: the row with the stray byte is read, the byte replaced.
    assert len(keys) == len(clean_keys) - 1


# An SMTP Receive protocol log of Exchange SE as a shipper that drops "#" lines sends it.
PROTOCOL_LOG_ROWS = [
    "2026-03-10T08:14:01.234Z,EXSE01\\Default Frontend EXSE01,08DE5F4A3B2C1D0E,0,10.0.0.25:25,203.0.113.9:51544,+,,",
    "2026-03-10T08:14:01.236Z,EXSE01\\Default Frontend EXSE01,08DE5F4A3B2C1D0E,1,10.0.0.25:25,203.0.113.9:51544,>,"
    '"220 EXSE01.contoso.example Microsoft ESMTP MAIL Service ready at Tue, 10 Mar 2026 08:14:01 +0000",',
    "2026-03-10T08:14:01.240Z,EXSE01\\Default Frontend EXSE01,08DE5F4A3B2C1D0E,2,10.0.0.25:25,203.0.113.9:51544,<,"
    "EHLO mail.fabrikam.example,",
    "2026-03-10T08:14:01.241Z,EXSE01\\Default Frontend EXSE01,08DE5F4A3B2C1D0E,3,[2001:db8::25]:25,"
    "[2001:db8:1::9]:51544,*,,Proxy destination(s) obtained from OnProxyInboundMessage event",
]


def test_protocol_log_rows_without_their_header_are_one_error_for_the_file_until_a_tracking_log_starts(make_source):
    source = make_source().feed(PROTOCOL_LOG_ROWS + header("15.02.2562.017", F30) + [RECEIVE_2016])
    assert [str(e) for e in source.out.errors] == [
        "sample:1: rows of an SMTP protocol log without its header lines (date-time, connector-id, session-id, "
        "...): not a message tracking log, its rows are skipped"]
    assert [g.template.logged_by for g in source.out.groups] == ["ex16mbx01.contoso.example"]
