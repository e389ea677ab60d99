import csv
import io
import re
from html.parser import HTMLParser

from pipeline.catalog_files import load_catalog
from pipeline.domain.config import DEFAULT_STAGES, PolicyConfig
from pipeline.sinks.report_queries import SERVER_COLUMNS
from pipeline.web.charts import daily_chart
from pipeline.web.pages import login_page, message_page, overview_page, server_page, servers_csv
from pipeline.web.rendering import render, server_href
from pipeline.web.server_detail import server_detail
from pipeline.web.summary import ServerFilter, summarize
from tests.unit.web.conftest import control, row

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
                     r"<td>stage 2 → 3</td><td>10 minutes of every hour are deferred \(450 4.7.230\): "
                     r"minutes 44 to 53 UTC", page)


def test_overview_sorted_by_stage_links_the_other_way_and_escapes(servers):
    page = overview(servers, {"sort": "stage"})
    assert "href='/report.html?sort=-stage#servers'>Stage ▲</a>" in page
    assert "Exchange2013 is out of support &lt;since 2023-04-11&gt;" in page
    assert page.index("mail.example") < page.index(">ex13mbx01.contoso.example<")


def test_csv_has_every_column_and_empty_cells_for_none(servers):
    read = list(csv.reader(io.StringIO(servers_csv(servers, SERVER_COLUMNS))))
    assert tuple(read[0]) == SERVER_COLUMNS
    outdated = dict(zip(read[0], read[2], strict=True))
    assert (outdated["org"], outdated["stage"], outdated["throttle_enabled_date"]) == (
        "contoso.example", "2", "2026-02-01")
    assert dict(zip(read[0], read[1], strict=True))["org"] == ""


def test_server_page_answers_what_is_wrong_what_next_and_what_to_install(outdated_page):
    page = server_page(server_detail(outdated_page, PolicyConfig(), load_catalog()))
    assert "build 15.1.2507.39 is below the Exchange2016 baseline 15.1.2507.61" in page
    assert ("From 2026-02-11, stage 3: 10 minutes of every hour are deferred (450 4.7.230): "
            "minutes 44 to 53 UTC.") in page
    assert "<td>15.1.2507.72</td><td>Exchange2016 CU23 Aug26SU</td><td>2026-08-11</td>" in page
    assert "<a href='https://support.microsoft.com/help/5121576'>KB5121576</a>" in page
    assert "1 more builds at or above the baseline" in page  # six recommended, five shown
    assert page.count("<rect") > 3 and "2026-02-05: 3 deferred (450)" in page
    assert "<td>Contoso.example</td>" in page and "fabrikam.example" not in page
    assert "href='/api/servers/contoso.example/ex16mbx01.contoso.example'" in page


def daily_bars(days):
    return render("daily_bars.html", chart=daily_chart(days))


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


# Markup that log fields, the database or a link could bring: a script, and an attribute broken out
# of (quoted either way) for an element with a handler.
SCRIPT = "<script>alert(1)</script>"
BREAKS_OUT = """'"><img src=x onerror=alert(1)>"""
HOSTILE_SERVER, HOSTILE_ORG = f"mx.{SCRIPT}.example", f"{BREAKS_OUT}.example"
HOSTILE_REASON = f"below the baseline {SCRIPT}{BREAKS_OUT}"


class Dom(HTMLParser):
    """A page as a browser's parser reads it: its elements, attribute names and values, and text."""

    def __init__(self, page: str):
        super().__init__(convert_charrefs=True)
        self.elements: list[str] = []
        self.attribute_names: set[str] = set()
        self.attribute_values: list[str] = []
        self.texts: list[str] = []
        self.feed(page)
        self.close()

    def handle_starttag(self, tag, attrs):
        self.elements.append(tag)
        self.attribute_names.update(name for name, _ in attrs)
        self.attribute_values.extend(value for _, value in attrs)

    def handle_data(self, data):
        self.texts.append(data)

    @property
    def text(self) -> str:
        return "".join(self.texts)


def hostile_pages() -> dict[str, str]:
    """Every page of the web port, with markup in each value that comes from logs, the database or
    the request: the host name, the org, the product, the build, the reason, a pause."""
    org, server = HOSTILE_ORG, HOSTILE_SERVER
    hostile = row(server_id=f"{org}/{server}", server=server, org=org, product=f"Exchange{SCRIPT}", build=BREAKS_OUT,
                  status="outdated", stage=2, first_detected="2026-01-02T23:53:27.000Z",
                  next_stage_start_date="2026-02-11", next_stage_throttle_rate=10, next_stage_block_rate=0,
                  reason=HOSTILE_REASON, recommended_builds=[SCRIPT], report_only=True,
                  last_seen="2026-02-08T10:00:00.000Z")
    controls = [control("c1", "pause", org) | {"reason": SCRIPT, "detail": BREAKS_OUT}]
    page = {"row": hostile, "newest_event": "2026-02-08T10:00:00.000Z", "control": controls,
            "history": [{"version": 1, "stage": 2, "status": "outdated", "build": BREAKS_OUT,
                         "throttle_minutes_per_hour": 5, "block_minutes_per_hour": 0,
                         "first_detected": "2026-01-02T23:53:27.000Z", "next_stage_start_date": "2026-02-11",
                         "reason": HOSTILE_REASON, "smtp_reply": None, "decided_at": "2026-02-02T09:00:00.000Z"}],
            "daily": [{"day": "2026-02-05", "messages": 4, "deferred": 3, "rejected": 0}]}
    return {
        "overview": overview([hostile], {"org": org}, controls),
        "server": server_page(server_detail(page, PolicyConfig(), load_catalog())),
        "login": login_page(f"/report.html?org={BREAKS_OUT}{SCRIPT}", refused=True),
        "message": message_page("Unknown server", f"The report has no server {server!r}."),
    }


def test_markup_in_a_host_name_an_org_or_a_reason_reaches_every_page_as_text():
    pages = hostile_pages()
    server_id = f"{HOSTILE_ORG}/{HOSTILE_SERVER}"
    for name, page in pages.items():
        dom = Dom(page)
        assert {"script", "img"} & set(dom.elements) == set(), name
        assert {"src", "onerror"} & dom.attribute_names == set(), name
    overview_dom, server_dom = Dom(pages["overview"]), Dom(pages["server"])
    for dom in (overview_dom, server_dom):
        assert HOSTILE_SERVER in dom.text and HOSTILE_REASON in dom.text
        assert HOSTILE_ORG in dom.text  # in the table and as the pause's target
    # Links to the server, quoted; the org filter's option, with the org as it is.
    assert server_href(server_id).startswith("/servers/%27%22%3E%3Cimg")
    assert server_href(server_id) in overview_dom.attribute_values
    assert "/api" + server_href(server_id) in server_dom.attribute_values
    assert HOSTILE_ORG in overview_dom.attribute_values
    assert f"Exchange{SCRIPT}" in server_dom.text and BREAKS_OUT in server_dom.text  # the product and the build
    assert "/report.html?org=" + BREAKS_OUT + SCRIPT in Dom(pages["login"]).attribute_values
    assert HOSTILE_SERVER in Dom(pages["message"]).text
