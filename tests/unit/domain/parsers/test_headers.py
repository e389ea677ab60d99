from datetime import datetime, timezone

from pipeline.domain.events import SourcePosition


def test_mbox_gives_one_trace_per_message_with_its_received_chain(samples, feed):
    lines = (samples / "headers" / "inbound.mbox").read_text().splitlines()
    traces, errors, _ = feed(lines)
    assert errors == []
    assert [len(t.received) for t in traces] == [5, 4, 3, 3]
    first = traces[0]
    assert first.event_time == datetime(2026, 2, 10, 8, 14, 9, tzinfo=timezone.utc)
    assert first.org == "contoso.example"
    assert first.message_id == "<6f1c2a8e0d5b4c1e@EX16MBX01.contoso.example>"
    assert first.received[3].startswith("from EX16MBX01.contoso.example (198.51.100.16) by ex16edge01.contoso.example")
    assert first.position == SourcePosition("sample", 1)  # the "From " line opens the message
    # The body line "Received: ..." after the blank line is not a header.
    assert traces[1].message_id == "<4471.20260211@app01.fabrikam.example>"
    assert traces[1].event_time == datetime(2026, 2, 11, 9, 2, 11, tzinfo=timezone.utc)


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
    source = make_source().feed(["From a@b Mon Feb 16 11:20:31 2026", "Received: from a by b.example with Microsoft SMTP"])
    source.feed([" Server id 15.1.2507.6; Mon, 16 Feb 2026 11:20:31 +0000", "Message-ID: <m@b>", ""])
    [trace] = source.out.traces
    assert (trace.message_id, trace.position) == ("<m@b>", SourcePosition("sample", 1))
    assert trace.received == ("from a by b.example with Microsoft SMTP Server id 15.1.2507.6; Mon, 16 Feb 2026 11:20:31 +0000",)


def test_a_runaway_block_is_dropped_with_an_error(monkeypatch, make_source):
    from pipeline.domain.parsers import headers

    monkeypatch.setattr(headers, "MAX_BLOCK_CHARS", 100)
    source = make_source().feed(["Received: from a by b; Mon, 16 Feb 2026 11:20:31 +0000"] + [" more"] * 30 + [""])
    assert [str(e) for e in source.out.errors] == ["sample:22: header block longer than 100 characters, dropped"]
    assert source.out.traces == []


def test_broken_blocks_are_errors_with_position(feed):
    lines = ["Received: from a by b", " (folded) but no date", "no colon here", ""]
    traces, errors, _ = feed(lines)
    assert [str(e) for e in errors] == [
        "sample:3: not a header field (name: value)",
        "sample:1: field Received: no dated Received header and no Date header",
    ]
