"""A client of the Confluent schema registry's REST API, the three calls the Confluent wire format
needs: register a schema under a subject, give a subject its compatibility rule, fetch a schema by id.

Written on the standard library's urllib rather than taken from a library: the maintained clients
either come with librdkafka (confluent-kafka, whose Kafka client the project does not use) or with
an HTTP stack and an Avro library of their own beside fastavro, for three requests. It stays
importable on the light MTA and shipper installs.
"""
from __future__ import annotations

import base64
import json
import ssl
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import quote

# The registry's own media type; it answers plain JSON to it as well.
MEDIA_TYPE = "application/vnd.schemaregistry.v1+json"
# Records of a topic stay readable by consumers holding the previous schema (fields added with a
# default, fields removed), which is how the project's schemas have grown (schemas/avro/history).
COMPATIBILITY = "BACKWARD"
# Error codes of the registry's JSON error bodies.
_SUBJECT_WITHOUT_CONFIG = 40408
_INCOMPATIBLE = 409


class SchemaRegistryError(Exception):
    """The registry cannot be used as configured, or refused a request; one line saying which."""


class SchemaRegistry:
    """The registry at `url` (no trailing slash), with basic auth when a username is given. An
    https registry is reached with `ssl_context` (the Kafka client's, so one CA file serves both),
    else the system's CAs."""

    def __init__(self, url: str, username: str | None = None, password: str | None = None,
                 ssl_context: ssl.SSLContext | None = None, timeout_s: float = 10.0):
        self.url = url
        self.timeout_s = timeout_s
        self._headers = {"Accept": f"{MEDIA_TYPE}, application/json", "Content-Type": MEDIA_TYPE}
        if username is not None:
            pair = f"{username}:{password or ''}".encode()
            self._headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        self._context = ssl_context if url.startswith("https:") else None

    def register(self, subject: str, schema: dict[str, Any]) -> int:
        """The id of `schema` under `subject`: registered as the subject's next version unless it is
        one already. A subject without a compatibility rule of its own gets BACKWARD first; one an
        operator set stays."""
        config = f"/config/{quote(subject, safe='')}"
        try:
            self._request("GET", config)
        except _Refused as refused:
            if refused.code != _SUBJECT_WITHOUT_CONFIG:
                raise refused.error from None
            self._request("PUT", config, {"compatibility": COMPATIBILITY})
        try:
            answer = self._request("POST", f"/subjects/{quote(subject, safe='')}/versions",
                                   {"schema": json.dumps(schema, separators=(",", ":"))})
        except _Refused as refused:
            if refused.status == _INCOMPATIBLE:
                raise SchemaRegistryError(
                    f"the registry at {self.url} refuses schema {schema.get('name')!r} under subject {subject!r}: "
                    f"it breaks the subject's compatibility rule with its earlier versions ({refused.message})"
                ) from None
            raise refused.error from None
        return _schema_id(answer, self.url)

    def schema(self, schema_id: int) -> dict[str, Any]:
        """The schema registered with `schema_id`, as a JSON document."""
        try:
            answer = self._request("GET", f"/schemas/ids/{schema_id}")
        except _Refused as refused:
            raise refused.error from None
        try:
            return json.loads(answer["schema"])
        except (KeyError, TypeError, ValueError):
            raise SchemaRegistryError(f"the registry at {self.url} answered schema id {schema_id} with no Avro "
                                      f"schema: {str(answer)[:200]}") from None

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s, context=self._context) as response:
                return json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            raise _Refused.of(exc, method, self.url + path) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise SchemaRegistryError(f"cannot reach the schema registry at {self.url}: {reason}") from None
        except ValueError:
            raise SchemaRegistryError(f"the schema registry at {self.url} answered {method} {path} with no "
                                      "JSON") from None


class _Refused(Exception):
    """An HTTP error answer: its status, the registry's error code and message, and the error to raise."""

    def __init__(self, status: int, code: int | None, message: str, error: SchemaRegistryError):
        super().__init__(message)
        self.status, self.code, self.message, self.error = status, code, message, error

    @classmethod
    def of(cls, exc: urllib.error.HTTPError, method: str, url: str) -> _Refused:
        try:
            body = json.loads(exc.read() or b"{}")
        except ValueError:
            body = {}
        code = body.get("error_code") if isinstance(body, dict) else None
        message = str(body.get("message", exc.reason)) if isinstance(body, dict) else str(exc.reason)
        if exc.code in (401, 403):
            text = (f"the schema registry refused {method} {url}: {exc.code} {message} (check "
                    "PATCHGATE_SCHEMA_REGISTRY_USERNAME and its password)")
        else:
            text = f"the schema registry answered {method} {url} with {exc.code}: {message}"
        return cls(exc.code, code if isinstance(code, int) else None, message, SchemaRegistryError(text))


def _schema_id(answer: Any, url: str) -> int:
    if isinstance(answer, dict) and isinstance(answer.get("id"), int) and 0 <= answer["id"] < 1 << 31:
        return answer["id"]
    raise SchemaRegistryError(f"the registry at {url} answered a registration with no schema id: {str(answer)[:200]}")
