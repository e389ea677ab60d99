"""The owners' report as plain server-rendered HTML: the summary with the servers table, and a page
per server. No JavaScript: filters are a GET form, sorting is links, charts are inline SVG. Every
value from the data goes through `text` (escaped)."""
from __future__ import annotations

import csv
import io
from html import escape
from urllib.parse import quote, urlencode

from pipeline.web.charts import daily_bars
from pipeline.web.server_detail import enforcement_text
from pipeline.web.summary import NO_ORG, ServerFilter
from pipeline.web.tables import cell

TABLE_COLUMNS = (("server", "Server"), ("org", "Org"), ("product", "Product"), ("build", "Build"),
                 ("status", "Status"), ("stage", "Stage"), ("first_detected", "First detected"),
                 ("next_stage_start_date", "Next stage"), ("last_seen", "Last seen"),
                 ("messages_last_24h", "Messages 24 h"), ("deferred", "Deferred"), ("rejected", "Rejected"),
                 ("reason", "Why"))
RECOMMENDED_SHOWN = 5
STYLE = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1400px}
table{border-collapse:collapse;margin:.5em 0 1em}
td,th{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left;vertical-align:top}
th a{color:inherit}.unsupported,.outdated{color:#b00}.current{color:#070}.note{color:#555;font-size:.9em}
.passed{color:#777}.current-stage{font-weight:bold}
.box{border:1px solid #ccc;padding:.5em 1em;margin:1em 0;max-width:60em}
form label{margin-right:1em}table.servers{font-size:.85em}table.servers td:last-child{min-width:22em}
"""


def text(value) -> str:
    """A value as escaped page text ("-" for none, lists comma-joined)."""
    return escape(cell(value))


def server_href(server_id: str) -> str:
    return "/servers/" + quote(server_id, safe="/@")


def layout(title: str, body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{STYLE}</style></head><body>{body}</body></html>")


def overview_page(summary: dict, shown: list[dict], everyone: list[dict], chosen: ServerFilter,
                  controls: list[dict]) -> str:
    """The summary, the servers table of `shown` (`everyone` gives the filter's choices), then every
    pause and exemption with its outcome."""
    return layout("Out-of-date mail servers", (
        "<h1>Out-of-date mail servers</h1>"
        + _as_of(summary)
        + _counts(summary)
        + _report_only(summary["report_only"])
        + _upcoming(summary)
        + f"<h2 id='servers'>Servers ({len(shown)} of {len(everyone)})</h2>"
        + _filter_form(everyone, chosen)
        + f"<p><a href='/report.csv?{escape(urlencode(chosen.query()))}'>Download these rows as CSV</a> · "
          f"<a href='/api/servers?{escape(urlencode(chosen.query()))}'>as JSON</a></p>"
        + _servers_table(shown, chosen)
        + "<h2 id='controls'>Pauses and exemptions</h2>"
        + _controls(controls, "No pause and no exemption, from a command or the config file.")
    ))


def servers_csv(rows: list[dict], columns: tuple[str, ...]) -> str:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows([["" if row[c] is None else cell(row[c]) for c in columns] for row in rows])
    return out.getvalue()


def server_page(detail: dict) -> str:
    row = detail["server"]
    title = row["server"] + (f" ({row['org']})" if row["org"] else "")
    return layout(title, (
        f"<p><a href='/report.html'>All servers</a></p><h1>{escape(title)}</h1>"
        + _as_of(detail)
        + "<h2>What is wrong</h2><table>"
        + "".join(f"<tr><th>{label}</th><td>{value}</td></tr>" for label, value in (
            ("Product", text(row["product"])), ("Build", text(row["build"])),
            ("Status", f"<span class='{escape(row['status'])}'>{text(row['status'])}</span>"),
            ("Why", text(row["reason"])), ("First detected", text(row["first_detected"])),
            ("Last seen", text(row["last_seen"])), ("Stage", text(row["stage"]))))
        + "</table>"
        + "<h2>What happens next</h2><div class='box'>"
        + f"<p><strong>Now:</strong> {escape(detail['now'])}</p><p><strong>Next:</strong> {escape(detail['next'])}</p>"
        + (f"<p><strong>Report-only:</strong> for now the MTAs accept this server's mail. They "
           f"{_would({'would_defer': row['would_defer'] or 0, 'would_reject': row['would_reject'] or 0})} "
           "attempts so far.</p>" if row["report_only"] else "")
        + "<p class='note'>Deferred (450 4.7.230): the sending server keeps the message and tries again later, "
          "so mail is delayed. Rejected (550 5.7.230): the message goes back to its sender. Stages are counted "
          "from first detection; a pause moves them later, installing a current build ends them.</p></div>"
        + _timeline(detail["timeline"])
        + "<h2>What to install</h2>" + _install(detail)
        + "<h2>Messages per day</h2><p class='note'>Messages seen from this server, and the attempts the MTAs "
          "deferred or rejected.</p>" + daily_bars(detail["daily"]) + _daily_table(detail["daily"])
        + "<h2>Pauses and exemptions</h2>"
        + _controls(detail["controls"], "No pause of its org and no exemption that matches it.")
        + _history(detail["history"])
        + f"<p class='note'><a href='/api{escape(server_href(row['server_id']))}'>This page as JSON</a></p>"
    ))


def message_page(title: str, message: str, status_note: str = "") -> str:
    return layout(title, f"<p><a href='/report.html'>All servers</a></p><h1>{escape(title)}</h1>"
                         f"<p>{escape(message)}</p>{escape(status_note)}")


def login_page(next_path: str, refused: bool = False) -> str:
    """The form that trades a token for the session cookie, then leads to `next_path` (a path of
    this port); `refused` after a token that is none of the port's."""
    return layout("Log in", (
        "<h1>Log in</h1>"
        + ("<p class='unsupported'>That is not a token of this port.</p>" if refused else "")
        + "<form method='post' action='/login'>"
          f"<input type='hidden' name='next' value='{escape(next_path)}'>"
          "<label>Token <input type='password' name='token' autocomplete='current-password' required autofocus>"
          "</label> <button>Log in</button></form>"
          "<p class='note'>The viewers' token (web_view_token) or the operator's (web_token). The browser keeps a "
          "cookie until it closes, the service restarts or you <a href='/logout'>log out</a>. Logged in already? "
          "A link from another site, as from a mail, comes without the cookie: "
          f"<a id='again' href='{escape(next_path)}'>open the page from here</a>.</p>"
    ))


def _as_of(facts: dict) -> str:
    newest = facts.get("newest_event")
    if not newest:
        return "<p class='note'>No events yet.</p>"
    return (f"<p class='note'>Data up to {escape(newest)}, the newest event the pipeline has seen: \"today\" and "
            "\"the next 7 days\" are counted from it, not from the clock, so a replay shows the same report.</p>")


def _counts(summary: dict) -> str:
    stages = sorted(int(stage) for stage in summary["by_stage"])
    cells = {(c["status"], c["stage"]): c["servers"] for c in summary["by_status_and_stage"]}
    head = "".join(f"<th>stage {stage}</th>" for stage in stages)
    body = ""
    for status, total in summary["by_status"].items():
        counts = "".join(
            f"<td><a href='/report.html?{escape(urlencode({'status': status, 'stage': stage}))}#servers'>{n}</a></td>"
            if (n := cells.get((status, stage))) else "<td></td>" for stage in stages)
        body += (f"<tr><th><a href='/report.html?{escape(urlencode({'status': status}))}#servers' "
                 f"class='{escape(status)}'>{text(status)}</a></th>{counts}<td>{total}</td></tr>")
    totals = "".join(f"<td>{summary['by_stage'][str(stage)]}</td>" for stage in stages)
    return (f"<h2>Servers by status and stage</h2><table><tr><th>status</th>{head}<th>all</th></tr>{body}"
            f"<tr><th>all</th>{totals}<td>{summary['servers']}</td></tr></table>")


def _report_only(rollout: dict) -> str:
    """The servers in report-only mode, by org, with what the MTAs would have done; nothing while
    none is."""
    if not rollout["servers"]:
        return ""
    rows = ""
    for org in rollout["orgs"]:
        rows += (f"<tr class='org'><th>{text(org['org'])}</th><td>{_servers(org['servers'])}</td><td></td>"
                 f"<td>{_would(org)}</td></tr>")
        rows += "".join(
            f"<tr><td></td><td><a href='{escape(server_href(row['server_id']))}'>{text(row['server'])}</a></td>"
            f"<td>stage {row['stage']}</td><td>{_would(row)}</td></tr>"
            for row in rollout["servers"] if row["org"] == org["org"])
    return ("<h2 id='report-only'>Report-only rollout</h2>"
            f"<p>{_servers(len(rollout['servers']))} in report-only mode: the MTAs accept their mail and record "
            f"what they would have done. In all, they {_would(rollout)}.</p>"
            "<table><tr><th>org</th><th>server</th><th>stage</th><th>the MTAs</th></tr>" + rows + "</table>")


def _servers(count: int) -> str:
    return "1 server" if count == 1 else f"{count} servers"


def _would(counts: dict) -> str:
    return f"would have deferred {counts['would_defer']} / rejected {counts['would_reject']}"


def _upcoming(summary: dict) -> str:
    changes = summary["upcoming"]
    heading = f"<h2>What changes in the next {summary['upcoming_days']} days</h2>"
    if not changes:
        return heading + "<p>No server changes stage within the next 7 days.</p>"
    rows = ""
    for change in changes:
        when = (f"due since {escape(change['starts'])} (takes effect with the server's next message)"
                if change["due"] else escape(change["starts"]))
        what = enforcement_text(change["server_id"], change["throttle_minutes"], change["block_minutes"])
        rows += (f"<tr><td>{when}</td><td><a href='{escape(server_href(change['server_id']))}'>{text(change['server'])}"
                 f"</a></td><td>{text(change['org'])}</td><td>stage {change['stage']} → {text(change['next_stage'])}"
                 f"</td><td>{escape(what)}</td></tr>")
    head = "<tr><th>from</th><th>server</th><th>org</th><th>change</th><th>then</th></tr>"
    return f"{heading}<table>{head}{rows}</table>"


def _filter_form(everyone: list[dict], chosen: ServerFilter) -> str:
    def select(name: str, label: str, options: list[str], current) -> str:
        chosen_option = None if current is None else str(current)
        choices = "".join(f"<option value='{escape(o)}'{' selected' if o == chosen_option else ''}>{escape(o)}</option>"
                          for o in options)
        return f"<label>{label} <select name='{name}'><option value=''>any</option>{choices}</select></label>"

    orgs = sorted({row["org"] for row in everyone if row["org"]}) + [NO_ORG]
    statuses = sorted({row["status"] for row in everyone})
    stages = [str(s) for s in sorted({row["stage"] for row in everyone})]
    sort = f"{'-' if chosen.descending else ''}{chosen.sort}"
    return ("<form method='get' action='/report.html'>"
            + select("org", "Org", orgs, chosen.org) + select("status", "Status", statuses, chosen.status)
            + select("stage", "Stage", stages, chosen.stage)
            + f"<input type='hidden' name='sort' value='{escape(sort)}'><button type='submit'>Filter</button> "
              "<a href='/report.html'>clear</a></form>")


def _servers_table(rows: list[dict], chosen: ServerFilter) -> str:
    head = ""
    for column, label in TABLE_COLUMNS:
        if column == "reason":
            head += f"<th>{label}</th>"
            continue
        descending = column == chosen.sort and not chosen.descending
        arrow = (" ▼" if chosen.descending else " ▲") if column == chosen.sort else ""
        query = urlencode(chosen.query(sort=f"{'-' if descending else ''}{column}"))
        head += f"<th><a href='/report.html?{escape(query)}#servers'>{label}{arrow}</a></th>"
    body = ""
    for row in rows:
        cells = []
        for column, _ in TABLE_COLUMNS:
            if column == "server":
                cells.append(f"<a href='{escape(server_href(row['server_id']))}'>{text(row['server'])}</a>")
            elif column == "status":
                cells.append(f"<span class='{escape(row['status'])}'>{text(row['status'])}</span>")
            elif column in ("first_detected", "last_seen"):
                # The minute is enough in a table; the server's page has the full time.
                cells.append(text(row[column] and row[column][:16].replace("T", " ")))
            else:
                cells.append(text(row[column]))
        body += "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"
    return f"<table class='servers'><tr>{head}</tr>{body}</table>"


def _timeline(entries: list[dict]) -> str:
    if not entries:
        return "<p>No enforcement clock is running for this server.</p>"
    shown = {"current": "current-stage", "passed": "passed"}
    rows = "".join(
        f"<tr class='{shown.get(e['state'], 'coming')}'><td>stage {e['stage']}</td>"
        f"<td>{escape(e['starts'])}</td><td>{escape(e['state'])}</td><td>{escape(e['text'])}</td>"
        f"<td>{text(e['applied_since'])}</td></tr>" for e in entries)
    return ("<h3>Stages</h3><table><tr><th>stage</th><th>starts</th><th></th><th>what it does</th>"
            f"<th>decided at</th></tr>{rows}</table><p class='note'>Dates after the next stage are projected: "
            "a pause or a patch changes them.</p>")


def _install(detail: dict) -> str:
    upgrade, recommended = detail["upgrade"], detail["recommended"]
    parts = []
    if upgrade:
        parts.append(f"<p>{text(detail['server']['product'])} is out of support: no update of it is current. "
                     f"Move to a supported product; the newest build is {text(upgrade['build'])} "
                     f"({text(upgrade['product'])} {text(upgrade['release'])}{_kb_link(upgrade)}).</p>")
    if recommended:
        parts.append("<p>Install one of these builds (newest first):</p>"
                     + _builds_table(recommended[:RECOMMENDED_SHOWN]))
        if len(recommended) > RECOMMENDED_SHOWN:
            parts.append(f"<details><summary>{len(recommended) - RECOMMENDED_SHOWN} more builds at or above the "
                         f"baseline</summary>{_builds_table(recommended[RECOMMENDED_SHOWN:])}</details>")
    if not parts:
        parts.append("<p>Nothing to install: no build is recommended for this server.</p>")
    return "".join(parts)


def _builds_table(builds: list[dict]) -> str:
    rows = "".join(f"<tr><td>{text(b['build'])}</td><td>{text(b['product'])} {text(b['release'])}</td>"
                   f"<td>{text(b['release_date'])}</td><td>{_kb_link(b) or '-'}</td></tr>" for b in builds)
    return f"<table><tr><th>build</th><th>release</th><th>released</th><th>KB</th></tr>{rows}</table>"


def _kb_link(build: dict) -> str:
    if not build["kb_url"]:
        return ""
    return f" <a href='{escape(build['kb_url'])}'>{text(build['kb'])}</a>"


def _daily_table(days: list[dict]) -> str:
    if not days:
        return ""
    rows = "".join(f"<tr><td>{text(d['day'])}</td><td>{text(d['messages'])}</td><td>{text(d['deferred'])}</td>"
                   f"<td>{text(d['rejected'])}</td></tr>" for d in days)
    return ("<details><summary>as a table</summary><table><tr><th>day</th><th>messages</th><th>deferred</th>"
            f"<th>rejected</th></tr>{rows}</table></details>")


def _controls(entries: list[dict], none: str) -> str:
    if not entries:
        return f"<p>{escape(none)}</p>"
    columns = ("issued_at", "action", "target", "start_date", "until_date", "reason", "source", "outcome", "detail")
    rows = "".join("<tr>" + "".join(f"<td>{text(e[c])}</td>" for c in columns) + "</tr>" for e in entries)
    return f"<table><tr>{''.join(f'<th>{c}</th>' for c in columns)}</tr>{rows}</table>"


def _history(history: list[dict]) -> str:
    columns = ("version", "decided_at", "status", "build", "stage", "next_stage_start_date", "reason")
    rows = "".join("<tr>" + "".join(f"<td>{text(d[c])}</td>" for c in columns) + "</tr>" for d in history)
    return (f"<details><summary>Every decision ({len(history)})</summary><table>"
            f"<tr>{''.join(f'<th>{c}</th>' for c in columns)}</tr>{rows}</table></details>")
