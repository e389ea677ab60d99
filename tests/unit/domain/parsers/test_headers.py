from datetime import UTC, datetime

from pipeline.domain.events import SourcePosition
from pipeline.domain.received import read_hop


def test_mbox_gives_one_trace_per_message_with_its_received_chain(samples, feed):
    lines = (samples / "headers" / "inbound.mbox").read_text().splitlines()
    traces, errors, _ = feed(lines)
    assert errors == []
    assert [len(t.received) for t in traces] == [5, 4, 3, 3]
    first = traces[0]
    assert first.event_time == datetime(2026, 2, 10, 8, 14, 9, tzinfo=UTC)
    assert first.org == "contoso.example"
    assert first.message_id == "<6f1c2a8e0d5b4c1e@EX16MBX01.contoso.example>"
    assert first.received[3].startswith("from EX16MBX01.contoso.example (198.51.100.16) by ex16edge01.contoso.example")
    assert first.position == SourcePosition("sample", 1)  # the "From " line opens the message
    # The body line "Received: ..." after the blank line is not a header.
    assert traces[1].message_id == "<4471.20260211@app01.fabrikam.example>"
    assert traces[1].event_time == datetime(2026, 2, 11, 9, 2, 11, tzinfo=UTC)


def test_eml_with_crlf_stops_at_the_body(samples, feed):
    lines = (samples / "headers" / "budget.eml").read_bytes().decode().splitlines(keepends=True)
    traces, errors, _ = feed(lines)
    assert errors == [] and len(traces) == 1
    assert traces[0].received[0].endswith("via Frontend Transport; Mon, 16 Feb 2026 11:20:31 +0000")


def test_a_block_without_a_trailing_blank_line_is_emitted_at_the_end_of_the_file(make_source):
    lines = ["Received: from a by b.example with Microsoft SMTP Server id 15.1.2507.6; Mon, 16 Feb 2026 11:20:31 +0000",
             "Subject: x"]
    source = make_source().feed(lines)
    assert source.out.traces == []
    [trace] = source.finish().out.traces
    assert trace.position == SourcePosition("sample", 1)


def test_a_block_spread_over_runs_is_one_message(make_source):
    source = make_source().feed(["From a@b Mon Feb 16 11:20:31 2026",
                                 "Received: from a by b.example with Microsoft SMTP"])
    source.feed([" Server id 15.1.2507.6; Mon, 16 Feb 2026 11:20:31 +0000", "Message-ID: <m@b>", ""])
    [trace] = source.out.traces
    assert (trace.message_id, trace.position) == ("<m@b>", SourcePosition("sample", 1))
    assert trace.received == (
        "from a by b.example with Microsoft SMTP Server id 15.1.2507.6; Mon, 16 Feb 2026 11:20:31 +0000",)


def test_a_runaway_block_is_dropped_with_an_error(monkeypatch, make_source):
    from pipeline.domain.parsers import headers

    monkeypatch.setattr(headers, "MAX_BLOCK_CHARS", 100)
    source = make_source().feed(["Received: from a by b; Mon, 16 Feb 2026 11:20:31 +0000"] + [" more"] * 30 + [""])
    assert [str(e) for e in source.out.errors] == ["sample:22: header block longer than 100 characters, dropped"]
    assert source.out.traces == []


def test_broken_blocks_are_errors_with_position(feed):
    lines = ["Received: from a by b", " (folded) but no date", "no colon here", ""]
    _, errors, _ = feed(lines)
    assert [str(e) for e in errors] == [
        "sample:3: not a header field (name: value)",
        "sample:1: field Received: no dated Received header and no Date header",
    ]


def only_top_level(samples, name, feed):
    lines = (samples / "headers" / name).read_bytes().decode().splitlines(keepends=True)
    traces, errors, _ = feed(lines)
    assert errors == []
    return traces


def test_a_dmarc_failure_report_is_one_message_not_the_original_it_quotes(samples, feed):
    # The message/feedback-report part has an Authentication-Results: line and the
    # text/rfc822-headers part the original's Received chain: neither is a message of ours.
    [trace] = only_top_level(samples, "dmarc-failure.eml", feed)
    assert trace.message_id == "<20260217073111.4TrB6l6gW8z9tJ@mail.adatum.example>"
    assert [read_hop(r).by for r in trace.received] == ["mx2.example.net", "mail.adatum.example"]
    assert trace.event_time == datetime(2026, 2, 17, 7, 31, 12, tzinfo=UTC)


def test_a_postfix_bounce_is_one_message_not_its_delivery_status_or_returned_original(samples, feed):
    [trace] = only_top_level(samples, "postfix-bounce.eml", feed)
    assert trace.message_id == "<20260217091244.4TrC0x3Qz5z9KJ@mail.woodgrove.example>"
    assert [read_hop(r).by for r in trace.received] == ["mx1.example.net", "mail.woodgrove.example"]


def test_a_forwarded_message_attached_to_an_mbox_message_is_not_a_message(samples, feed):
    traces = only_top_level(samples, "forwarded.mbox", feed)
    assert [t.message_id for t in traces] == ["<5b1e6a0c-3d2f-4a8e-9c11-7f0e2d4b6a19@proseware.example>",
                                              "<20260218124003.9f2a@proseware.example>"]
    assert [[read_hop(r).by for r in t.received] for t in traces] == [
        ["mx1.example.net", "server.hostingco.example"], ["mx2.example.net", "lists.proseware.example"]]


def test_an_eml_whose_body_is_a_message_is_one_message(feed):
    lines = ["Received: from a.example by mx1.example.net (Postfix) with ESMTPS id 4TrD; "
             "Wed, 18 Feb 2026 10:05:32 +0000",
             "Message-ID: <outer@a.example>",
             "MIME-Version: 1.0",
             "Content-Type: message/rfc822",
             "",
             "Received: from b.example by a.example with Microsoft SMTP Server id 15.0.1497.2; "
             "Wed, 18 Feb 2026 10:05:30 +0000",
             "Message-ID: <inner@b.example>",
             "",
             "Inner body."]
    traces, errors, _ = feed(lines)
    assert errors == [] and [t.message_id for t in traces] == ["<outer@a.example>"]


def test_from_lines_and_header_lines_in_an_eml_body_are_body(feed):
    lines = ["Received: from a.example by b.example with Microsoft SMTP Server id 15.1.2507.6; "
             "Mon, 16 Feb 2026 11:20:31 +0000",
             "Message-ID: <m@a.example>",
             "",
             "Hi,",
             "",
             "From here on the figures are final.",
             "",
             "X-Mailer: pasted into the body",
             "Received: from c.example by d.example; Mon, 16 Feb 2026 11:20:00 +0000"]
    traces, errors, state = feed(lines)
    assert errors == [] and [t.message_id for t in traces] == ["<m@a.example>"]
    assert (state.mbox, state.phase, state.fields) == (False, "body", [])  # nothing of the body is kept


def test_a_file_of_pasted_header_blocks_gives_one_trace_per_block(feed):
    # Blocks pasted from a mail client's "view headers", blank lines between them only; a block
    # may declare a multipart body it does not hold.
    lines = ["Received: from ex16mbx01.contoso.example (198.51.100.16) by ex16edge01.contoso.example (198.51.100.17)",
             " with Microsoft SMTP Server id 15.1.2507.39; Tue, 10 Feb 2026 08:14:06 +0000",
             "Message-ID: <one@contoso.example>",
             "Content-Type: multipart/alternative; boundary=\"_000_one_\"",
             "",
             "",
             "Received: from app01.fabrikam.example (10.1.0.50) by ex10hub01.fabrikam.example (10.1.0.10)",
             " with Microsoft SMTP Server id 14.3.513.0; Wed, 11 Feb 2026 10:02:08 +0100",
             "Message-ID: <two@fabrikam.example>",
             ""]
    traces, errors, _ = feed(lines)
    assert errors == [] and [t.message_id for t in traces] == ["<one@contoso.example>", "<two@fabrikam.example>"]


def test_a_bounce_read_a_line_per_run_is_still_one_message(samples, make_source):
    source = make_source()
    for line in (samples / "headers" / "postfix-bounce.eml").read_bytes().decode().splitlines(keepends=True):
        source.feed([line])
    source.finish()
    assert source.out.errors == [] and [len(t.received) for t in source.out.traces] == [2]


def test_a_state_stored_before_phases_existed_goes_on(make_source):
    from pipeline.domain.parsers import headers
    from pipeline.domain.parsers.dispatch import SourceState

    source = make_source()
    source.state = SourceState.from_json({"format": "rfc5322", "hosts": {}, "parser": {
        "mbox": True, "in_headers": True, "start": 1, "chars": 30,
        "fields": [["Received: from a by b.example with Microsoft SMTP Server id 15.1.2507.6; "
                    "Mon, 16 Feb 2026 11:20:31 +0000"]]}})
    source.feed(["Message-ID: <m@b>", "", "body", "From x@y Mon Feb 16 11:20:32 2026"])
    [trace] = source.out.traces
    assert trace.message_id == "<m@b>" and source.state.parser.phase == headers._HEADERS
