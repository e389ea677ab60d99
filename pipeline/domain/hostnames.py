"""What may be a server's name: a DNS host name or an IP address literal; and the one rule by
which a name pattern of the settings or a command matches a name.

Log fields are written by the remote side (HELO names, Received headers), so they can hold
anything; a name that no DNS could hold is reported where it was read, never made a server.
"""
from __future__ import annotations

import fnmatch
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
    if address(name) is not None:
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


def address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """The IP address `text` writes (bare or in brackets), or None."""
    candidate = text.strip("[]")
    # Most are host names, which ip_address refuses slowly (an exception from IPv4, then from IPv6).
    if ":" not in candidate and not candidate.replace(".", "").isdigit():
        return None
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        return None


@lru_cache(maxsize=65536)
def is_loopback(host: str | None, ip: str | None) -> bool:
    """A client on this machine: a content filter handing mail back, or a local program."""
    if (host or "").lower() in ("localhost", "localhost.localdomain"):
        return True
    found = address(ip or "") or address(host or "")
    if found is None:
        return False
    # ::ffff:127.0.0.1 is IPv4's loopback seen through an IPv6 socket.
    mapped = getattr(found, "ipv4_mapped", None)
    return (mapped or found).is_loopback


def matches(pattern: str, name: str) -> bool:
    """Whether `name` matches `pattern`, a name with shell wildcards (`*` any run of characters,
    dots included; `?` one character; `[...]` one of a set, `[!...]` one not in it).

    Host names are the same in any case (RFC 4343), so both sides are compared in lower case,
    whatever the platform: exemptions, trusted receivers, internal hops, the enforcement scope's
    connectors and TLS peers all match by this rule."""
    # fnmatch.fnmatch would fold case only where the file system does (Windows): spelled out instead.
    return fnmatch.fnmatchcase(name.lower(), pattern.lower())
