"""A schema registry double on loopback: the part of the Confluent schema registry's REST API that
patchgate and ClickHouse's AvroConfluent format use, over real HTTP.

No registry server can be installed here (Confluent's is not open source; Karapace needs a source
build). The double keeps the rules a client can observe: one id per distinct schema whatever the
subject, versions per subject, a compatibility rule per subject (default BACKWARD, checked for
records: a field the new schema adds needs a default), error bodies with the registry's codes,
and basic auth when given credentials.
"""
from __future__ import annotations

import base64
import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from fastavro import parse_schema
from fastavro.schema import to_parsing_canonical_form

_SUBJECT_CONFIG = re.compile(r"/config/([^/]+)")
_VERSIONS = re.compile(r"/subjects/([^/]+)/versions")
_SCHEMA_BY_ID = re.compile(r"/schemas/ids/(\d+)")


class SchemaRegistryDouble:
    """Serving on 127.0.0.1 from `start()`: `url`, and what was asked (`requests`, method and path)."""

    def __init__(self, username: str | None = None, password: str | None = None):
        self.credentials = None if username is None else f"{username}:{password}"
        self.schemas: list[str] = []  # id - 1 -> the schema as registered
        self._ids_by_canonical: dict[str, int] = {}
        self.subjects: dict[str, list[int]] = {}
        self.compatibility: dict[str, str] = {}
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> SchemaRegistryDouble:
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> SchemaRegistryDouble:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def answer(self, method: str, path: str, body: Any, authorization: str | None) -> tuple[int, Any]:
        with self._lock:
            self.requests.append((method, path))
            if self.credentials is not None:
                expected = "Basic " + base64.b64encode(self.credentials.encode()).decode()
                if authorization != expected:
                    return 401, {"error_code": 401, "message": "Unauthorized"}
            if match := _SUBJECT_CONFIG.fullmatch(path):
                subject = unquote(match[1])
                if method == "PUT":
                    self.compatibility[subject] = body["compatibility"]
                    return 200, {"compatibility": body["compatibility"]}
                if subject not in self.compatibility:
                    return 404, {"error_code": 40408, "message": f"Subject '{subject}' does not have subject-level "
                                                                 "compatibility configured"}
                return 200, {"compatibilityLevel": self.compatibility[subject]}
            if (match := _VERSIONS.fullmatch(path)) and method == "POST":
                return self._register(unquote(match[1]), body["schema"])
            if (match := _SCHEMA_BY_ID.fullmatch(path)) and method == "GET":
                index = int(match[1]) - 1
                if not 0 <= index < len(self.schemas):
                    return 404, {"error_code": 40403, "message": "Schema not found"}
                return 200, {"schema": self.schemas[index]}
            return 404, {"error_code": 404, "message": f"no such endpoint {method} {path}"}

    def _register(self, subject: str, schema: str) -> tuple[int, Any]:
        document = json.loads(schema)
        canonical = to_parsing_canonical_form(parse_schema(document))
        versions = self.subjects.setdefault(subject, [])
        known = self._ids_by_canonical.get(canonical)
        if known is not None and known in versions:
            return 200, {"id": known}
        if versions and self.compatibility.get(subject, "BACKWARD") in ("BACKWARD", "FULL"):
            previous = json.loads(self.schemas[versions[-1] - 1])
            added = {field["name"] for field in document.get("fields", ())} - {
                field["name"] for field in previous.get("fields", ())}
            lacking = [field["name"] for field in document.get("fields", ())
                       if field["name"] in added and "default" not in field]
            if lacking:
                return 409, {"error_code": 409, "message": f"Schema being registered is incompatible with an earlier "
                                                           f"schema: new fields without a default: {lacking}"}
        if known is None:
            self.schemas.append(schema)
            known = self._ids_by_canonical[canonical] = len(self.schemas)
        versions.append(known)
        return 200, {"id": known}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        registry = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def do_PUT(self) -> None:
                self._serve()

            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                status, answer = registry.answer(self.command, self.path.split("?")[0], body,
                                                 self.headers.get("Authorization"))
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/vnd.schemaregistry.v1+json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # quiet: the tests read `requests`
                pass

        return Handler
