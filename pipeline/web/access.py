"""Who may use a process's web port, and how a request shows it. One aiohttp middleware (`guard`)
stands in front of every route of the port, Faust's own included, so that a route added later is
guarded like the report until a rule here says otherwise. A browser logs in with a form:

    GET  /login    the form: a token, and where to go next
    POST /login    token=... (form-encoded): a reader's token sets the session cookie and leads on
                   (303) to the page asked for, else the report; another token: 401 and the form again
    GET  /logout   drops the cookie

The rules:

    request                               port bound to loopback    port bound beyond loopback
    GET /health, /healthz, /login,        anyone                    anyone
        /logout; POST /login
    any other GET (or HEAD): the report,  anyone                    a reader: the viewers' or the
        its API, /servers/*, /metrics                               operator's token, as a bearer
                                                                    token or the /login cookie
    POST /sql                             anyone                    a reader, as a bearer token
    POST /control                         the operator's token, as a bearer token, wherever bound
    anything else                         405

The viewers' token is settings.web_view_token, the operator's settings.web_token. A token needed
but not configured: 403 naming the setting to set; one not brought, or another one: 401 (with the
login form for a browser).

Against requests that pages of other sites make a browser send (CSRF), and DNS rebinding: on a
loopback-bound port every request must name in Host an allowed host (the address bound to, a
loopback name, settings.web_hostnames); POST /sql and /control check it wherever bound, and take
only `Content-Type: application/json`, which another site's page can send only after a CORS
preflight (OPTIONS), refused here. The cookie is SameSite=Strict, and POSTs never accept it.
A Host the port does not answer for gets 421 Misdirected Request rather than 403: the request was
sent to a name this port does not serve, and no token would change that.
"""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import re
import secrets
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import cast

import faust
from aiohttp import web
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from pipeline.domain.hostnames import is_loopback
from pipeline.settings import Settings
from pipeline.web import pages

SESSION_COOKIE = "patchgate_session"
OPEN = frozenset({("GET", "/health"), ("GET", "/healthz"), ("GET", "/login"), ("GET", "/logout"),
                  ("POST", "/login")})  # POST /login checks the token it is given itself
JSON_POSTS = frozenset({"/sql", "/control"})
LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1"})
# Where /login leads when it is not told where the reader was going.
START_PAGE = "/report.html"
# A path of this port: one slash, then no second one or backslash (which browsers read as another host).
_LOCAL_PATH = re.compile(r"/(?![/\\])\S{0,2000}")
# Drawn at start, so a session ends with the process (or a restart ends every session).
_SESSION_KEY = secrets.token_bytes(32)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def install(app: faust.App, settings: Settings) -> None:
    """Guard the app's web port and serve the login form on it."""
    access = WebAccess(settings)
    # The app's web driver is Faust's default, aiohttp's: the guard is an aiohttp middleware.
    web_app = cast(AiohttpWeb, app.web).web_app
    web_app.middlewares.append(access.guard)
    web_app.router.add_get("/login", access.login_form)
    web_app.router.add_post("/login", access.login)
    web_app.router.add_get("/logout", access.logout)


def local_path(value: object) -> str:
    """`value` when it is a path of this port (a login's `next`), else the report: never a URL of
    another site."""
    return value if isinstance(value, str) and _LOCAL_PATH.fullmatch(value) else START_PAGE


@dataclass(frozen=True)
class Tokens:
    """The tokens that open something, the settings to set when there are none, and what to send."""

    tokens: tuple[str, ...]
    to_set: str
    bearer: str


class WebAccess:
    """The rules above for one web port, from its settings."""

    def __init__(self, settings: Settings, session_key: bytes = _SESSION_KEY):
        self.bound_to = settings.web_host
        self.loopback = is_loopback(settings.web_host, None)
        self.readers = Tokens(tuple(token for token in (settings.web_view_token, settings.web_token) if token),
                              "web_view_token (PATCHGATE_WEB_VIEW_TOKEN), or web_token (PATCHGATE_WEB_TOKEN)",
                              "<web_view_token> (or <web_token>)")
        self.operators = Tokens(tuple(token for token in (settings.web_token,) if token),
                                "web_token (PATCHGATE_WEB_TOKEN)", "<web_token>")
        self.hosts = _allowed_hosts(settings)
        self._session_key = session_key

    @web.middleware
    async def guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answers a request its refusal, or hands it on to its route."""
        refusal = self.refusal(request)
        return refusal if refusal is not None else await handler(request)

    def refusal(self, request: web.Request) -> web.Response | None:
        """None when the request may go on to its route, else the answer that refuses it."""
        method, path = ("GET" if request.method == "HEAD" else request.method), request.path
        if self.loopback or path in JSON_POSTS:
            host = _host_name(request.headers.get("Host", ""))
            if host not in self.hosts:
                return _answer(request, 421, f"this port does not answer for the host {host!r}: use the address "
                                             f"it is bound to, or add the name to web_hostnames "
                                             f"(PATCHGATE_WEB_HOSTNAMES)")
        if (method, path) in OPEN:
            return None
        if method == "GET":
            return None if self.loopback else self._token(
                request, self.readers, f"reading a web port bound to {self.bound_to}", cookie=True)
        if (method, path) == ("POST", "/sql"):
            refused = None if self.loopback else self._token(
                request, self.readers, f"SQL on a web port bound to {self.bound_to}", cookie=False)
            return refused or _json_only(request)
        if (method, path) == ("POST", "/control"):
            return self._token(request, self.operators, "writes over HTTP", cookie=False) or _json_only(request)
        return _answer(request, 405, f"{request.method} {path} is not served", headers={"Allow": "GET, HEAD"})

    async def login_form(self, request: web.Request) -> web.Response:
        return _html(pages.login_page(local_path(request.query.get("next"))))

    async def login(self, request: web.Request) -> web.Response:
        form = await request.post()
        token, next_path = form.get("token"), local_path(form.get("next"))
        if not self.readers.tokens:
            return _html(pages.message_page("Nothing to log in to", f"This port has no token: set "
                                                                    f"{self.readers.to_set}."), status=403)
        if not isinstance(token, str) or not _one_of(token, self.readers.tokens):
            return _html(pages.login_page(next_path, refused=True), status=401,
                         headers={"WWW-Authenticate": "Bearer"})
        # 303: the browser follows with a GET, and a reload does not send the token again. The
        # cookie is an HMAC of the token under the process's key: not the token itself, and it no
        # longer opens anything once the process restarts. Secure when the browser came over https
        # (itself, or through a proxy that says so): a browser drops a Secure cookie set over plain
        # http, and a client lying in X-Forwarded-Proto only keeps its own cookie off plain http.
        response = web.Response(status=303, headers={"Location": next_path})
        response.set_cookie(SESSION_COOKIE, self._session_value(token), path="/", httponly=True,
                            samesite="Strict", secure=_over_https(request))
        return response

    async def logout(self, request: web.Request) -> web.Response:
        response = web.Response(status=303, headers={"Location": "/login"})
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    def _token(self, request: web.Request, needed: Tokens, what: str, cookie: bool) -> web.Response | None:
        """None when the request brings one of the `needed` tokens (as a bearer token, or as the
        session cookie where `cookie`), else its 401 or, with no token configured, 403."""
        if not needed.tokens:
            return _answer(request, 403, f"{what} needs a token: set {needed.to_set}")
        scheme, _, sent = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() == "bearer" and _one_of(sent.strip(), needed.tokens):
            return None
        sessions = [self._session_value(token) for token in needed.tokens]
        if cookie and _one_of(request.cookies.get(SESSION_COOKIE, ""), sessions):
            return None
        challenge = {"WWW-Authenticate": "Bearer"}
        if cookie and _wants_html(request):
            return _html(pages.login_page(local_path(request.path_qs)), status=401, headers=challenge)
        return web.json_response({"error": f"send Authorization: Bearer {needed.bearer}"}, status=401,
                                 headers=challenge)

    def _session_value(self, token: str) -> str:
        return hmac.new(self._session_key, token.encode(), hashlib.sha256).hexdigest()


def _one_of(sent: str, tokens: Iterable[str]) -> bool:
    # Digests of equal length are compared, every one of them, so the time taken tells neither
    # which token came close nor how long they are.
    digest = hashlib.sha256(sent.encode()).digest()
    found = False
    for token in tokens:
        found |= hmac.compare_digest(digest, hashlib.sha256(token.encode()).digest())
    return found


def _allowed_hosts(settings: Settings) -> frozenset[str]:
    names = {_canonical(settings.web_host.lower()), *(_canonical(name) for name in settings.web_hostnames)}
    # A port bound to every address (0.0.0.0, ::) answers on loopback too.
    if is_loopback(settings.web_host, None) or _canonical(settings.web_host) in ("0.0.0.0", "::"):
        names |= LOOPBACK_NAMES
    return frozenset(names)


def _host_name(header: str) -> str:
    """The host a Host header names: without its port, lower case, an IP address in its short form."""
    header = header.strip().lower()
    name = header[1:].partition("]")[0] if header.startswith("[") else header.partition(":")[0]
    return _canonical(name.rstrip("."))


def _canonical(name: str) -> str:
    try:
        return str(ipaddress.ip_address(name))
    except ValueError:
        return name


def _json_only(request: web.Request) -> web.Response | None:
    if request.content_type == "application/json":
        return None
    return web.json_response({"error": f"send the body as Content-Type: application/json, not "
                                       f"{request.content_type!r}"}, status=415)


def _over_https(request: web.Request) -> bool:
    forwarded = request.headers.get("X-Forwarded-Proto", "").partition(",")[0]
    return request.secure or forwarded.strip().lower() == "https"


def _wants_html(request: web.Request) -> bool:
    return "text/html" in request.headers.get("Accept", "")


def _answer(request: web.Request, status: int, message: str, headers: dict[str, str] | None = None) -> web.Response:
    """`message` as a page for a browser, else as JSON {"error": ...}."""
    if _wants_html(request):
        return _html(pages.message_page("Refused", message), status=status, headers=headers)
    return web.json_response({"error": message}, status=status, headers=headers)


def _html(page: str, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=page, content_type="text/html", status=status, headers=headers)
