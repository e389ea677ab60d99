"""The report pages' templates (pipeline/web/templates), rendered by Jinja2 with autoescaping: every
value a template prints is escaped, so a host name, an org or a reason read from the logs reaches
the page as text whatever it holds. No template marks a value safe; the only markup a template
prints is its own and that of the macros it calls."""
from __future__ import annotations

import re
from urllib.parse import quote

from jinja2 import Environment, PackageLoader, StrictUndefined
from jinja2.ext import Extension

from pipeline.web.tables import cell

_LINE_BREAK = re.compile(r"[ \t]*\n[ \t]*")


class JoinedLines(Extension):
    """Joins a template's lines before Jinja2 reads it: each line break goes, with the blanks on
    both sides of it. Templates are laid out one element a line for the reader, and the pages come
    out without the blanks between elements that exact-text tests and the report's size would
    notice. So a sentence stays on one line, and so does each tag, HTML or Jinja2."""

    def preprocess(self, source: str, name: str | None, filename: str | None = None) -> str:
        return _LINE_BREAK.sub("", source)


def server_href(server_id: str) -> str:
    """The path of a server's page (its id holds a slash when it has an org)."""
    return "/servers/" + quote(server_id, safe="/@")


# A name a template uses but is not given raises instead of printing nothing.
ENVIRONMENT = Environment(loader=PackageLoader("pipeline.web"), autoescape=True, undefined=StrictUndefined,
                          extensions=[JoinedLines])
# `cell`: "-" for none, lists comma-joined, as in the terminal's tables.
ENVIRONMENT.filters.update(cell=cell, server_href=server_href)


def render(template: str, **values: object) -> str:
    return ENVIRONMENT.get_template(template).render(values)
