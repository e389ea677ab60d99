"""One entry point for every format: detect the format of a source from its first meaningful line,
then feed each line to that format's parser with the source's state.

The state is a plain JSON-able dict, so the stream keeps it in a Faust table keyed by source and
`patchgate evaluate` in a dict: both run exactly this code.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime

from pipeline.domain.events import MessageTrace, ParseError, SourcePosition
from pipeline.domain.parsers import exim, exo, headers, msgtrk, postfix

# Detection order matters: a message tracking log's "#" header and an export's CSV header are
# unmistakable; syslog lines come last.
DETECTORS = (
    (msgtrk.FORMAT, msgtrk.looks_like),
    (exo.FORMAT, exo.looks_like),
    (headers.FORMAT, headers.looks_like),
    (postfix.FORMAT, postfix.looks_like),
    (exim.FORMAT, exim.looks_like),
)
_INITIAL = {
    msgtrk.FORMAT: msgtrk.initial_state,
    exo.FORMAT: exo.initial_state,
    headers.FORMAT: headers.initial_state,
    postfix.FORMAT: postfix.initial_state,
    exim.FORMAT: exim.initial_state,
}
# Short host names learnt per source (first label -> FQDN); bounded so a source cannot grow it forever.
MAX_KNOWN_HOSTS = 4096


def detect(line: str) -> str | None:
    text = line.lstrip("\ufeff").rstrip("\r\n")
    if not text.strip():
        return None
    return next((name for name, looks_like in DETECTORS if looks_like(text)), None)


def new_state() -> dict:
    return {"format": None, "parser": None, "hosts": {}}


def parse_line(
    state: dict | None, line: str, position: SourcePosition, reference: datetime | None = None
) -> tuple[dict, list[MessageTrace | ParseError]]:
    """Feed one line of a source. `reference` dates syslog lines that carry no year."""
    state = state or new_state()
    # Detect once per source, and again only where a message tracking log's header block starts
    # (shippers concatenate files); detection on every line would double the cost of parsing.
    found = None
    if state["format"] is None or (state["format"] != msgtrk.FORMAT and line.startswith(("#", "\ufeff#"))):
        found = detect(line)
    if state["format"] is None or (found == msgtrk.FORMAT and state["format"] != msgtrk.FORMAT):
        if found is None:
            if not line.strip():
                return state, []
            return state, [ParseError(position, "unknown format: not a line of any supported log", raw=line.rstrip())]
        state = {**state, "format": found, "parser": _INITIAL[found]()}
    name = state["format"]
    if name == msgtrk.FORMAT and line.lstrip("\ufeff").startswith("#Software:"):
        # A new log file starts: host names learnt from the previous one do not carry over, so
        # reading the same file again gives the same events.
        state = {**state, "hosts": {}}
    if name == postfix.FORMAT:
        parser_state, results = postfix.parse_line(state["parser"], line, position, reference)
    else:
        parser_state, results = _PARSERS[name](state["parser"], line, position)
    return _qualified({**state, "parser": parser_state}, results)


def finish(state: dict | None, position: SourcePosition) -> tuple[dict, list[MessageTrace | ParseError]]:
    """At the end of a source: emit what formats that span lines still hold."""
    if not state or state["format"] not in _FINISHERS:
        return state or new_state(), []
    parser_state, results = _FINISHERS[state["format"]](state["parser"], position)
    return _qualified({**state, "parser": parser_state}, results)


def _qualified(state: dict, results: list) -> tuple[dict, list]:
    """Join short host names to the FQDN with the same first label seen earlier in the same source,
    and cut event times to milliseconds, the precision of the wire format and of ClickHouse."""
    hosts = dict(state["hosts"])
    out = []
    for result in results:
        if isinstance(result, MessageTrace):
            changes = {}
            if result.event_time.microsecond % 1000:
                changes["event_time"] = result.event_time.replace(microsecond=result.event_time.microsecond // 1000 * 1000)
            for field in ("logged_by", "client_hostname", "server_hostname"):
                host = (getattr(result, field) or "").lower()
                label = host.split(".")[0]
                if not label or label.isdigit():
                    continue
                if "." in host:
                    if len(hosts) < MAX_KNOWN_HOSTS or label in hosts:
                        hosts[label] = host
                elif label in hosts:
                    changes[field] = hosts[label]
            result = replace(result, **changes) if changes else result
        out.append(result)
    return {**state, "hosts": hosts}, out


_PARSERS = {
    msgtrk.FORMAT: msgtrk.parse_line,
    exo.FORMAT: exo.parse_line,
    headers.FORMAT: headers.parse_line,
    exim.FORMAT: exim.parse_line,
}
_FINISHERS = {headers.FORMAT: headers.finish, postfix.FORMAT: postfix.finish}
