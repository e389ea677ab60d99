import pytest

from pipeline.domain.config import DEFAULT_STAGES
from pipeline.web.summary import ServerFilter, summarize


def servers_of(rows):
    return [row["server"] for row in rows]


def test_filters_by_org_status_and_stage_and_by_no_org(servers):
    assert servers_of(ServerFilter.from_query({"org": "CONTOSO.example"}).apply(servers)) == [
        "ex16mbx01.contoso.example"]
    assert servers_of(ServerFilter.from_query({"org": "-"}).apply(servers)) == [
        "ex13mbx01.contoso.example", "mail.example"]
    assert servers_of(ServerFilter.from_query({"status": "unsupported", "stage": "1"}).apply(servers)) == [
        "ex13mbx01.contoso.example"]
    assert ServerFilter.from_query({"stage": "3"}).apply(servers) == []


def test_sorts_either_way_with_missing_values_last(servers):
    assert servers_of(ServerFilter.from_query({"sort": "-stage"}).apply(servers)) == [
        "ex16mbx01.contoso.example", "ex13mbx01.contoso.example", "mail.example"]
    assert servers_of(ServerFilter.from_query({"sort": "first_detected"}).apply(servers)) == [
        "ex16mbx01.contoso.example", "ex13mbx01.contoso.example", "mail.example"]
    assert servers_of(ServerFilter.from_query({"sort": "-first_detected"}).apply(servers)) == [
        "ex13mbx01.contoso.example", "ex16mbx01.contoso.example", "mail.example"]


@pytest.mark.parametrize("query", [{"stage": "two"}, {"sort": "reason; DROP"}])
def test_a_parameter_that_does_not_read_is_refused(query):
    with pytest.raises(ValueError, match=next(iter(query))):
        ServerFilter.from_query(query)


def test_query_keeps_the_filter_for_links():
    chosen = ServerFilter.from_query({"org": "server", "stage": "2", "sort": "-stage"})
    assert chosen.query(sort="server") == {"org": "server", "stage": "2"}
    assert ServerFilter.from_query(chosen.query()) == chosen


def test_summary_counts_and_the_changes_of_the_next_7_days_from_the_newest_event(servers):
    summary = summarize(servers, "2026-02-08T10:00:00.000Z", DEFAULT_STAGES)
    assert (summary["today"], summary["servers"]) == ("2026-02-08", 3)
    assert summary["by_status"] == {"outdated": 1, "unknown": 1, "unsupported": 1}
    assert summary["by_stage"] == {"0": 1, "1": 1, "2": 1}
    assert {(c["status"], c["stage"]): c["servers"] for c in summary["by_status_and_stage"]} == {
        ("outdated", 2): 1, ("unknown", 0): 1, ("unsupported", 1): 1}
    assert [(c["server"], c["stage"], c["next_stage"], c["starts"], c["due"]) for c in summary["upcoming"]] == [
        ("ex16mbx01.contoso.example", 2, 3, "2026-02-11", False)]
    # A month later both next stages are past: due, applied with the server's next message.
    later = summarize(servers, "2026-03-10T00:00:00.000Z", DEFAULT_STAGES)
    assert [(c["starts"], c["due"]) for c in later["upcoming"]] == [("2026-02-11", True), ("2026-03-03", True)]
    assert summarize([], None, DEFAULT_STAGES)["upcoming"] == []
