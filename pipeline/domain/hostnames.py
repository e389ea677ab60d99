"""What may be a server's name: a DNS host name or an IP address literal.

Log fields are written by the remote side (HELO names, Received headers), so they can hold
anything; a name that no DNS could hold is reported where it was read, never made a server.
"""
from __future__ import annotations

import ipaddress
import re
from functools import lru_cache

MAX_NAME = 253
MAX_LABEL = 63
# Letters, digits and hyphens (RFC 1123); underscores too, which Windows host names carry in practice.
_LABEL = re.compile(r"^[a-z0-9_](?:[a-z0-9_-]*[a-z0-9_])?$", re.I)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@lru_cache(maxsize=65536)
def problem(name: str) -> str | None:
    """Why `name` cannot name a server, or None when it can (names repeat: the answer is kept)."""
    if _CONTROL.search(name):
        return f"host name {name!r} holds control characters"
    if not name:
        return "empty host name"
    if _is_address(name):
        return None
    if len(name) > MAX_NAME:
        return f"host name of {len(name)} characters (a DNS name has at most {MAX_NAME})"
    for label in name.removesuffix(".").split("."):
        if len(label) > MAX_LABEL:
            return f"host name {name!r} has a label of {len(label)} characters (at most {MAX_LABEL})"
        if not _LABEL.match(label):
            return f"host name {name!r} is not a DNS name (letters, digits and hyphens between dots)"
    return None


def has_control(text: str) -> bool:
    return _CONTROL.search(text) is not None


def _is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name.strip("[]"))
    except ValueError:
        return False
    return True
