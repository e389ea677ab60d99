import csv
import io
import re

from pipeline.catalog_files import load_catalog
from pipeline.domain.config import DEFAULT_STAGES, PolicyConfig
from pipeline.sinks.report_queries import SERVER_COLUMNS
from pipeline.web.charts import daily_bars
from pipeline.web.pages import overview_page, server_page, servers_csv
from pipeline.web.server_detail import server_detail
from pipeline.web.summary import ServerFilter, summarize


CONTROLS = [{"command_id": "c1", "issued_at": "2026-02-01T09:00:00.000Z", "action": "pause",
             "target": "contoso.example", "start_date": "2026-02-01", "until_date": "2026-03-03",
             "reason": "<migration>", "issued_by": "ops@host", "source": "command", "outcome": "refused",
             "detail": "over budget"}]


def overview(servers, query, controls=()):
    chosen = ServerFilter.from_query(query)
    return overview_page(summarize(servers, "2026-02-08T10:00:00.000Z", DEFAULT_STAGES), chosen.apply(servers),
                         servers, chosen, list(controls))


def test_overview_lists_every_pause_and_exemption_with_its_outcome(servers):
    assert "No pause and no exemption" in overview(servers, {})
    page = overview(servers, {}, CONTROLS)
    assert "<td>pause</td><td>contoso.example</td>" in page and "<td>refused</td><td>over budget</td>" in page
    assert "&lt;migration&gt;" in page and "<migration>" not in page


def test_overview_escapes_links_each_server_and_keeps_the_filter_in_sort_links_and_csv(servers):
    page = overview(servers, {"org": "contoso.example"})
    assert "&lt;since 2023-04-11&gt;" not in page and "<since" not in page  # filtered out, and never raw
    assert "<a href='/servers/contoso.example/ex16mbx01.contoso.example'>ex16mbx01.contoso.example</a>" in page
    assert "href='/report.html?org=contoso.example&amp;sort=-stage#servers'" not in page
    assert "href='/report.html?org=contoso.example&amp;sort=stage#servers'" in page
    assert "href='/report.csv?org=contoso.example'" in page
    assert "<option value='contoso.example' selected>" in page
    assert "Data up to 2026-02-08T10:00:00.000Z" in page and "not from the clock" in page
    # The next 7 days: the outdated server's stage 3 on 2026-02-11, in words with its minutes.
    assert re.search(r"<td>2026-02-11</td><td><a [^>]+>ex16mbx01.contoso.example</a></td><td>contoso.example</td>"
                     r"<td>stage 2 → 3</td><td>10 minutes of every hour are deferred \(450 4.7.230\): minutes 44 to 53 UTC",
                     page)


def test_overview_sorted_by_stage_links_the_other_way_and_escapes(servers):
    page = overview(servers, {"sort": "stage"})
    assert "href='/report.html?sort=-stage#servers'>Stage ▲</a>" in page
    assert "Exchange2013 is out of support &lt;since 2023-04-11&gt;" in page
    assert page.index("mail.example") < page.index(">ex13mbx01.contoso.example<")


def test_csv_has_every_column_and_empty_cells_for_none(servers):
    read = list(csv.reader(io.StringIO(servers_csv(servers, SERVER_COLUMNS))))
    assert tuple(read[0]) == SERVER_COLUMNS
    outdated = dict(zip(read[0], read[2], strict=True))
    assert (outdated["org"], outdated["stage"], outdated["throttle_enabled_date"]) == ("contoso.example", "2", "2026-02-01")
    assert dict(zip(read[0], read[1], strict=True))["org"] == ""


def test_server_page_answers_what_is_wrong_what_next_and_what_to_install(outdated_page):
    page = server_page(server_detail(outdated_page, PolicyConfig(), load_catalog()))
    assert "build 15.1.2507.39 is below the Exchange2016 baseline 15.1.2507.61" in page
    assert "From 2026-02-11, stage 3: 10 minutes of every hour are deferred (450 4.7.230): minutes 44 to 53 UTC." in page
    assert "<td>15.1.2507.72</td><td>Exchange2016 CU23 Aug26SU</td><td>2026-08-11</td>" in page
    assert "<a href='https://support.microsoft.com/help/5121576'>KB5121576</a>" in page
    assert "1 more builds at or above the baseline" in page  # six recommended, five shown
    assert page.count("<rect") > 3 and "2026-02-05: 3 deferred (450)" in page
    assert "<td>Contoso.example</td>" in page and "fabrikam.example" not in page
    assert "href='/api/servers/contoso.example/ex16mbx01.contoso.example'" in page


def test_chart_shows_every_day_in_the_span_and_nothing_without_data():
    svg = daily_bars([{"day": "2026-02-01", "messages": 10, "deferred": 2, "rejected": 1},
                      {"day": "2026-02-04", "messages": 5, "deferred": 0, "rejected": 0}])
    assert svg.startswith("<svg") and svg.count("<title>") == 4  # bars with a count only
    assert "2026-02-01: 10 messages" in svg and ">10</text>" in svg  # the scale's top is the peak
    assert "<svg" not in daily_bars([])


def test_no_filter_selects_no_option(servers):
    assert " selected>" not in overview(servers, {})
    assert "<option value='-' selected>" in overview(servers, {"org": "-"})


def test_overview_shows_what_the_mtas_would_have_done_to_servers_in_report_only_mode_per_org(servers):
    assert "Report-only rollout" not in overview(servers, {})
    servers[0].update(report_only=True, would_defer=None, would_reject=None)
    servers[1].update(report_only=True, would_defer=12, would_reject=3)
    page = overview(servers, {})
    rollout = page[page.index("<h2 id='report-only'>"):page.index("<h2>What changes")]
    assert ("2 servers in report-only mode: the MTAs accept their mail and record what they would have done. "
            "In all, they would have deferred 12 / rejected 3.") in rollout
    assert ("<tr class='org'><th>contoso.example</th><td>1 server</td><td></td>"
            "<td>would have deferred 12 / rejected 3</td></tr>") in rollout
    assert ("<a href='/servers/ex13mbx01.contoso.example'>ex13mbx01.contoso.example</a></td><td>stage 1</td>"
            "<td>would have deferred 0 / rejected 0</td>") in rollout
    assert "mail.example" not in rollout


def test_server_page_in_report_only_mode_says_the_mail_is_accepted_and_what_would_have_been(outdated_page):
    outdated_page["row"].update(report_only=True, would_defer=12, would_reject=0)
    detail = server_detail(outdated_page, PolicyConfig(), load_catalog())
    assert ("<strong>Report-only:</strong> for now the MTAs accept this server's mail. They would have deferred 12 "
            "/ rejected 0 attempts so far.") in server_page(detail)
