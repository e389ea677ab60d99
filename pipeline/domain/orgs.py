"""Which org a server, pause or report-only setting belongs to.

An org is named by its domain (the X-OriginatorOrg of its mail, a tenant's domain), and a domain is
the same in any case: `Contoso.example` in the config file names the org whose servers the logs
show as `contoso.example`. A server without an org belongs to none, so nothing named for an org
applies to it.
"""
from __future__ import annotations


def same_org(named: str | None, org: str | None) -> bool:
    """Whether `named` (a pause's, a setting's or a command's org) is `org`, a server's."""
    if not named or not org:
        return False
    return named.lower() == org.lower()
