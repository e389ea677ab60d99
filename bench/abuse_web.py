"""The web port bound beyond loopback (pipeline.web.access, pipeline.sinks.queries): who may read and
write without which token, the requests another site's page or a rebound DNS name makes a browser
send, and SQL that writes, raises its own limits or runs over them."""
from __future__ import annotations

import json
import threading
import time

from abuse_rig import Answer, Rig, Row

from pipeline.contracts import topics

READ_PATHS = ("/report.html", "/api/servers")


def checks(rig: Rig) -> list[Row]:
    surface = f"web port {rig.web_host}:{rig.web_port}"
    return [_reads_need_a_token(rig, surface), _viewer_reads(rig, surface), _control_needs_the_operator(rig, surface),
            _sql_takes_json_only(rig, surface), _foreign_host(rig, surface), _not_json(rig, surface),
            _big_body(rig, surface), _big_header(rig, surface), _writes(rig, surface), _raised_limits(rig, surface),
            _too_many_rows(rig, surface), _endless_query(rig, surface)]


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _sql(rig: Rig, query: str, timeout: float = 60) -> Answer:
    return rig.web("POST", "/sql", json.dumps({"query": query}).encode(),
                   {**_bearer(rig.viewer_token), "Content-Type": "application/json"}, timeout=timeout)


def _error(answer: Answer, limit: int = 140) -> str:
    """The error an answer gives, its first line, cut short."""
    try:
        text = str(json.loads(answer.body).get("error", ""))
    except ValueError:
        text = answer.text()
    first = text.strip().splitlines()[0] if text.strip() else ""
    return first[:limit] + (" ..." if len(first) > limit else "")


def _reads_need_a_token(rig: Rig, surface: str) -> Row:
    tried = {"no token": {}, "a wrong bearer token": _bearer("not-the-token-" + "x" * 20),
             "a browser (Accept: text/html)": {"Accept": "text/html"}}
    found = {(path, name): rig.web("GET", path, headers=headers) for path in READ_PATHS
             for name, headers in tried.items()}
    statuses = sorted({answer.status for answer in found.values()})
    login = found["/report.html", "a browser (Accept: text/html)"]
    form = "the login form" if "<form" in login.text(100_000) else "no login form"
    outcome = (f"{len(found)} requests, answered {'/'.join(map(str, statuses))}; the browser got {form}, the others "
               f"`{_error(found['/api/servers', 'no token'])}`")
    return Row(surface, f"GET {' and '.join(READ_PATHS)} with no token, a wrong bearer token, or as a browser "
                        "without the session cookie", outcome, statuses == [401])


def _viewer_reads(rig: Rig, surface: str) -> Row:
    answers = [rig.web("GET", path, headers=_bearer(rig.viewer_token)) for path in READ_PATHS]
    servers = len(json.loads(answers[1].body)) if answers[1].status == 200 else 0
    outcome = f"{' and '.join(str(a.status) for a in answers)}; /api/servers listed {servers} servers"
    return Row(surface, f"GET {' and '.join(READ_PATHS)} with the viewers' token", outcome,
               all(a.status == 200 for a in answers) and servers > 0)


def _control_needs_the_operator(rig: Rig, surface: str) -> Row:
    command = json.dumps({"action": "exempt", "target": "mail.fabrikam.example", "until": "2099-01-01",
                          "reason": "abuse check"}).encode()
    before = rig.end_offsets(topics.CONTROL)
    answers = {name: rig.web("POST", "/control", command, {**headers, "Content-Type": "application/json"})
               for name, headers in (("the viewers' token", _bearer(rig.viewer_token)), ("no token", {}))}
    sent = rig.end_offsets(topics.CONTROL) - before
    outcome = (f"{', '.join(f'{name}: {a.status}' for name, a in answers.items())} "
               f"(`{_error(answers['no token'])}`); {sent} records written to mail.control")
    return Row(surface, "POST /control (an exemption) with the viewers' token, and with none", outcome,
               all(a.status == 401 for a in answers.values()) and sent == 0)


def _sql_takes_json_only(rig: Rig, surface: str) -> Row:
    answers = [rig.web("POST", "/sql", body, {**_bearer(rig.viewer_token), "Content-Type": kind})
               for kind, body in (("text/plain", b'{"query": "SELECT 1"}'),
                                  ("application/x-www-form-urlencoded", b"query=SELECT+1"))]
    outcome = f"{' and '.join(str(a.status) for a in answers)} (`{_error(answers[0])}`)"
    return Row(surface, "POST /sql as text/plain and as a form (what another site's page can send without a "
                        "CORS preflight), with the viewers' token", outcome, all(a.status == 415 for a in answers))


def _foreign_host(rig: Rig, surface: str) -> Row:
    answers = [rig.web("POST", path, b'{"query": "SELECT 1"}',
                       {**_bearer(rig.operator_token), "Content-Type": "application/json", "Host": "evil.example"})
               for path in ("/sql", "/control")]
    outcome = f"{' and '.join(str(a.status) for a in answers)} (`{_error(answers[0], 90)}`)"
    return Row(surface, "POST /sql and /control with `Host: evil.example` (DNS rebinding), with the operator's token",
               outcome, all(a.status == 421 for a in answers))


def _not_json(rig: Rig, surface: str) -> Row:
    answers = [rig.web("POST", "/sql", body, {**_bearer(rig.viewer_token), "Content-Type": "application/json"})
               for body in (b"{not json", b"\xff\xfe\x00garbage", b'["SELECT 1"]')]
    outcome = f"{', '.join(str(a.status) for a in answers)} (`{_error(answers[0])}`; `{_error(answers[2])}`)"
    return Row(surface, "POST /sql with a body that is not JSON, bytes that are not UTF-8, and JSON without a query",
               outcome, all(a.status == 400 for a in answers))


def _big_body(rig: Rig, surface: str) -> Row:
    size = 10 * 1024 * 1024
    body = json.dumps({"query": "SELECT 1 -- " + "x" * size}).encode()
    answer = rig.web("POST", "/sql", body, {**_bearer(rig.viewer_token), "Content-Type": "application/json"})
    alive = rig.web("GET", "/health").status
    outcome = f"{answer.status} in {answer.ms:,.0f} ms (`{_error(answer, 80)}`); /health then {alive}"
    return Row(surface, f"POST /sql with a {len(body) / 1e6:.1f} MB JSON body", outcome,
               answer.status == 413 and alive == 200)


def _big_header(rig: Rig, surface: str) -> Row:
    answer = rig.web("GET", "/api/servers", headers={**_bearer(rig.viewer_token), "X-Padding": "y" * 65536})
    alive = rig.web("GET", "/health").status
    outcome = f"{answer.status} (`{answer.text(60)}`); /health then {alive}"
    return Row(surface, "GET /api/servers with a 64 KiB header", outcome,
               400 <= answer.status < 500 and alive == 200)


def _count(rig: Rig) -> int | None:
    answer = _sql(rig, "SELECT count() FROM servers")
    return json.loads(answer.body)["rows"][0][0] if answer.status == 200 else None


def _writes(rig: Rig, surface: str) -> Row:
    before = _count(rig)
    statements = ("DROP TABLE servers", "INSERT INTO servers (server) VALUES ('forged.example')",
                  "ALTER TABLE servers DELETE WHERE 1", "TRUNCATE TABLE servers",
                  "CREATE TABLE forged (x UInt8) ENGINE = Memory")
    answers = [_sql(rig, statement) for statement in statements]
    after = _count(rig)
    outcome = (f"{', '.join(str(a.status) for a in answers)} (`{_error(answers[0], 110)}`); the servers table "
               f"held {before} rows before and {after} after")
    return Row(surface, f"write statements via POST /sql with the viewers' token: {'; '.join(statements)}", outcome,
               all(a.status == 400 for a in answers) and before == after and bool(before))


def _raised_limits(rig: Rig, surface: str) -> Row:
    queries = ("SELECT number FROM system.numbers LIMIT 100000 SETTINGS max_result_rows = 0",
               "SELECT 1 SETTINGS readonly = 0")
    answers = [_sql(rig, query) for query in queries]
    outcome = f"{' and '.join(str(a.status) for a in answers)} (`{_error(answers[0], 110)}`)"
    return Row(surface, f"SQL raising its own limits: `{queries[0]}`; `{queries[1]}`", outcome,
               all(a.status == 400 for a in answers))


def _too_many_rows(rig: Rig, surface: str) -> Row:
    answer = _sql(rig, "SELECT number FROM system.numbers LIMIT 1000000")
    outcome = f"{answer.status} after {answer.ms:,.0f} ms (`{_error(answer, 110)}`)"
    return Row(surface, "SQL over the result limit (10,000 rows): 1,000,000 rows of system.numbers", outcome,
               answer.status == 400 and "limit" in _error(answer, 10_000).lower())


def _endless_query(rig: Rig, surface: str) -> Row:
    """A query that runs until its time limit, and the port's answers to others meanwhile."""
    found: list[Answer] = []
    runner = threading.Thread(target=lambda: found.append(_sql(rig, "SELECT count() FROM system.numbers", 120)))
    runner.start()
    meanwhile: list[Answer] = []
    time.sleep(1)
    while runner.is_alive():
        meanwhile.append(rig.web("GET", "/health", timeout=30))
        time.sleep(1)
    runner.join()
    answer = found[0]
    healthy = sum(a.status == 200 for a in meanwhile)
    slowest = max((a.ms for a in meanwhile), default=0.0)
    outcome = (f"{answer.status} after {answer.ms / 1000:.1f} s (`{_error(answer, 100)}`); /health answered "
               f"{healthy} of {len(meanwhile)} meanwhile, slowest {slowest:,.0f} ms")
    return Row(surface, "SQL that never ends: `SELECT count() FROM system.numbers` (time limit 10 s)", outcome,
               answer.status == 400 and answer.ms < 20_000 and healthy == len(meanwhile) and meanwhile != [])
