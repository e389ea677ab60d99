"""How every Kafka client of the project reaches the brokers: TLS, SASL and their files, read from
the `[kafka]` settings and the KAFKA_* variables and checked at start.

The checks that join several keys live here (a mechanism needs a username, TLS files need a TLS
protocol); each raises ConfigError naming the key as the operator wrote it. The files are opened
and the TLS context built at this point, so a missing or unreadable CA, certificate or key stops a
command before it connects anywhere, not at its first request.
"""
from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.domain.config import ConfigError, text

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
TLS_PROTOCOLS = ("SSL", "SASL_SSL")
SASL_PROTOCOLS = ("SASL_PLAINTEXT", "SASL_SSL")


@dataclass(frozen=True)
class KafkaConnection:
    """What a client needs besides the bootstrap servers. `ssl_context` is built once from the
    files (None without TLS); the password never shows in a repr."""

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in TLS_PROTOCOLS

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in SASL_PROTOCOLS

    @property
    def who(self) -> str:
        """The identity the brokers see, for messages: the SASL user, the client certificate, or nobody."""
        if self.uses_sasl:
            return f"user {self.sasl_username!r} ({self.sasl_mechanism})"
        if self.ssl_certfile is not None:
            return f"the client certificate {self.ssl_certfile}"
        return "no credentials"


def protocol(value: Any, key: str) -> str:
    name = text(value, key, shape=f"one of {', '.join(PROTOCOLS)}")
    if name.upper() not in PROTOCOLS:
        raise ConfigError(key, f"must be one of {', '.join(PROTOCOLS)}, got {value!r}")
    return name.upper()


def mechanism(value: Any, key: str) -> str:
    name = text(value, key, shape=f"one of {', '.join(MECHANISMS)}")
    if name.upper() not in MECHANISMS:
        raise ConfigError(key, f"must be one of {', '.join(MECHANISMS)}, got {value!r}")
    return name.upper()


def readable_file(value: Any, key: str) -> Path:
    path = Path(text(value, key, shape="the path of a file"))
    try:
        with path.open("rb"):
            pass
    except OSError as exc:
        raise ConfigError(key, f"cannot be read: {path}: {exc.strerror}") from None
    return path


def password_from_file(value: Any, key: str) -> str:
    """The file's text without the line end an editor or `echo` leaves (a password has none)."""
    path = readable_file(value, key)
    try:
        secret = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
    except UnicodeDecodeError:
        raise ConfigError(key, f"is not a UTF-8 text file: {path}") from None
    if not secret:
        raise ConfigError(key, f"is empty: {path}")
    return secret


def checked(values: Mapping[str, Any], keys: Mapping[str, str]) -> KafkaConnection:
    """The connection of the values read (field -> value), checked as a whole. `keys` names, per
    field, the key it was given by (an environment variable or `kafka.<key>`), for the messages;
    `sasl_password_file` tells that the password came from a file."""
    def given(name: str) -> bool:
        return name in values

    def key(name: str) -> str:
        return keys[name]

    chosen = values.get("security_protocol", PROTOCOLS[0])
    if given("sasl_password") and given("sasl_password_file"):
        raise ConfigError(key("sasl_password_file"), f"and {key('sasl_password')} are both set: give one")
    password = values.get("sasl_password", values.get("sasl_password_file"))
    sasl = {"sasl_mechanism": values.get("sasl_mechanism"), "sasl_username": values.get("sasl_username"),
            "sasl_password": password}
    if chosen in SASL_PROTOCOLS:
        protocol_key = key("security_protocol")
        if sasl["sasl_mechanism"] is None:
            raise ConfigError(protocol_key, f"is {chosen}, so {_named('sasl_mechanism')} must be one of "
                                            f"{', '.join(MECHANISMS)}")
        if sasl["sasl_username"] is None:
            raise ConfigError(key("sasl_mechanism"), f"needs a username: {_named('sasl_username')} is not set")
        if password is None:
            raise ConfigError(key("sasl_mechanism"), f"needs a password: {_named('sasl_password')} or "
                                                     f"{_named('sasl_password_file')} is not set")
    else:
        for name in ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_file"):
            if given(name):
                raise ConfigError(key(name), f"is set, but the security protocol {chosen} uses no SASL "
                                             "(SASL_SSL or SASL_PLAINTEXT does)")
    files = {name: values[name] for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile") if given(name)}
    if chosen not in TLS_PROTOCOLS:
        if files:
            raise ConfigError(key(next(iter(files))),
                              f"is set, but the security protocol {chosen} uses no TLS (SSL or SASL_SSL does)")
        return KafkaConnection(chosen, **sasl)
    if "ssl_keyfile" in files and "ssl_certfile" not in files:
        raise ConfigError(key("ssl_keyfile"), f"is set without {_named('ssl_certfile')}, the certificate it belongs to")
    return KafkaConnection(chosen, **sasl, **files, ssl_context=_tls_context(files, keys))


def _named(name: str) -> str:
    """A setting as both places call it, for a message about a setting that was not given."""
    return f"KAFKA_{name.upper()} (kafka.{name})"


def _tls_context(files: Mapping[str, Path], keys: Mapping[str, str]) -> ssl.SSLContext:
    """Server certificates checked against the CA file alone (the system's CAs without one), as a
    Java client's truststore would; host names verified; the client certificate loaded for mutual TLS."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # verifies certificates and host names
    if "ssl_cafile" in files:
        try:
            context.load_verify_locations(cafile=str(files["ssl_cafile"]))
        except ssl.SSLError as exc:
            raise ConfigError(keys["ssl_cafile"],
                              f"holds no PEM CA certificate: {files['ssl_cafile']} ({exc.reason})") from None
    else:
        context.load_default_certs(ssl.Purpose.SERVER_AUTH)
    if "ssl_certfile" in files:
        wrong = keys.get("ssl_keyfile", keys["ssl_certfile"])
        try:
            context.load_cert_chain(str(files["ssl_certfile"]), files.get("ssl_keyfile") and str(files["ssl_keyfile"]),
                                    password=_no_passphrase)
        except (ssl.SSLError, _Encrypted) as exc:
            reason = "is encrypted: give an unencrypted key" if isinstance(exc, _Encrypted) else (
                f"does not match the certificate, or is no PEM key ({exc.reason})")
            raise ConfigError(wrong, f"{reason}: {files.get('ssl_keyfile', files['ssl_certfile'])}") from None
    return context


class _Encrypted(Exception):
    """A key that asks for a passphrase: without this, OpenSSL would prompt on the terminal."""


def _no_passphrase() -> str:
    raise _Encrypted
