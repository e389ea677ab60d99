import ssl
import subprocess
from pathlib import Path

import pytest

from pipeline.domain.config import ConfigError
from pipeline.kafka_clients import connection_options
from pipeline.settings import load_settings

SCRAM = {"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
         "KAFKA_SASL_USERNAME": "patchgate-worker", "KAFKA_SASL_PASSWORD": "s3cret"}


@pytest.fixture(scope="module")
def tls(tmp_path_factory) -> dict[str, Path]:
    """A CA and a client certificate it signed, as openssl makes them (PEM, unencrypted key)."""
    folder = tmp_path_factory.mktemp("tls")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "client.key", "-out", "client.csr",
            "-subj", "/CN=patchgate-mta")
    openssl("x509", "-req", "-in", "client.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "client.pem", "-days", "2")
    openssl("genrsa", "-aes128", "-passout", "pass:word", "-out", "encrypted.key", "2048")
    return {name: folder / name for name in ("ca.pem", "client.pem", "client.key", "ca.key", "encrypted.key")}


def error(environ: dict[str, str]) -> str:
    with pytest.raises(ConfigError) as raised:
        load_settings(None, environ=environ)
    return str(raised.value)


def test_plaintext_is_the_default_and_passes_no_credentials():
    connection = load_settings(None, environ={}).kafka
    assert connection.security_protocol == "PLAINTEXT" and connection.ssl_context is None
    assert connection_options(connection) == {"security_protocol": "PLAINTEXT"}


def test_sasl_ssl_with_scram_reaches_every_client_by_the_same_options(tls):
    connection = load_settings(None, environ={**SCRAM, "KAFKA_SSL_CAFILE": str(tls["ca.pem"])}).kafka
    options = connection_options(connection)
    assert options.pop("ssl_context") is connection.ssl_context
    assert options == {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512",
                       "sasl_plain_username": "patchgate-worker", "sasl_plain_password": "s3cret"}
    context = connection.ssl_context
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [ca["subject"] for ca in context.get_ca_certs()] == [((("commonName", "test CA"),),)]
    assert "s3cret" not in repr(connection)


def test_the_password_comes_from_a_file_without_its_line_end(tmp_path):
    secret = tmp_path / "password"
    secret.write_text("from-a-file\n")
    environ = {**SCRAM, "KAFKA_SASL_PASSWORD_FILE": str(secret)}
    del environ["KAFKA_SASL_PASSWORD"]
    assert load_settings(None, environ=environ).kafka.sasl_password == "from-a-file"
    config = tmp_path / "site.toml"
    config.write_text(f'[kafka]\nsecurity_protocol = "SASL_PLAINTEXT"\nsasl_mechanism = "PLAIN"\n'
                      f'sasl_username = "operator"\nsasl_password_file = "{secret}"\n')
    assert load_settings(config, environ={}).kafka.sasl_password == "from-a-file"
    assert error({**environ, "KAFKA_SASL_PASSWORD": "too"}) == (
        "KAFKA_SASL_PASSWORD_FILE and KAFKA_SASL_PASSWORD are both set: give one")
    secret.write_text("")
    assert error(environ) == f"KAFKA_SASL_PASSWORD_FILE is empty: {secret}"


def test_mutual_tls_loads_the_client_certificate(tls):
    connection = load_settings(None, environ={
        "KAFKA_SECURITY_PROTOCOL": "ssl", "KAFKA_SSL_CAFILE": str(tls["ca.pem"]),
        "KAFKA_SSL_CERTFILE": str(tls["client.pem"]), "KAFKA_SSL_KEYFILE": str(tls["client.key"])}).kafka
    assert connection.security_protocol == "SSL" and not connection.uses_sasl
    assert connection.who == f"the client certificate {tls['client.pem']}"


@pytest.mark.parametrize(("environ", "message"), [
    ({"KAFKA_SECURITY_PROTOCOL": "TLS"},
     "KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, got 'TLS'"),
    ({**SCRAM, "KAFKA_SASL_MECHANISM": "GSSAPI"},
     "KAFKA_SASL_MECHANISM must be one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, got 'GSSAPI'"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"},
     "KAFKA_SECURITY_PROTOCOL is SASL_SSL, so KAFKA_SASL_MECHANISM (kafka.sasl_mechanism) must be one of "
     "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL", "KAFKA_SASL_MECHANISM": "PLAIN"},
     "KAFKA_SASL_MECHANISM needs a username: KAFKA_SASL_USERNAME (kafka.sasl_username) is not set"),
    ({**SCRAM, "KAFKA_SASL_PASSWORD": ""},
     "KAFKA_SASL_MECHANISM needs a password: KAFKA_SASL_PASSWORD (kafka.sasl_password) or "
     "KAFKA_SASL_PASSWORD_FILE (kafka.sasl_password_file) is not set"),
    ({"KAFKA_SASL_USERNAME": "worker"},
     "KAFKA_SASL_USERNAME is set, but the security protocol PLAINTEXT uses no SASL (SASL_SSL or SASL_PLAINTEXT does)"),
    ({"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "PLAIN", "KAFKA_SASL_USERNAME": "u",
      "KAFKA_SASL_PASSWORD": "p", "KAFKA_SSL_CAFILE": "/etc/hostname"},
     "KAFKA_SSL_CAFILE is set, but the security protocol SASL_PLAINTEXT uses no TLS (SSL or SASL_SSL does)"),
    ({**SCRAM, "KAFKA_SSL_CAFILE": "/nonexistent/ca.pem"},
     "KAFKA_SSL_CAFILE cannot be read: /nonexistent/ca.pem: No such file or directory"),
    ({"PATCHGATE_REPLICATION_FACTOR": "2", "PATCHGATE_MIN_INSYNC_REPLICAS": "3"},
     "PATCHGATE_MIN_INSYNC_REPLICAS is 3, more than the 2 replicas of PATCHGATE_REPLICATION_FACTOR: "
     "no write could succeed"),
    ({"PATCHGATE_REPLICATION_FACTOR": "0"}, "PATCHGATE_REPLICATION_FACTOR must be an integer from 1 to 100, got 0"),
])
def test_a_connection_that_cannot_work_names_the_setting(environ, message):
    assert error(environ) == message


def test_tls_files_that_do_not_read_name_their_setting(tls, tmp_path):
    not_pem = tmp_path / "ca.txt"
    not_pem.write_text("not a certificate\n")
    assert error({**SCRAM, "KAFKA_SSL_CAFILE": str(not_pem)}).startswith(
        f"KAFKA_SSL_CAFILE holds no PEM CA certificate: {not_pem} (")
    mutual = {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERTFILE": str(tls["client.pem"])}
    assert error({**mutual, "KAFKA_SSL_KEYFILE": str(tls["ca.key"])}).startswith(
        "KAFKA_SSL_KEYFILE does not match the certificate, or is no PEM key (")
    assert error({**mutual, "KAFKA_SSL_KEYFILE": str(tls["encrypted.key"])}) == (
        f"KAFKA_SSL_KEYFILE is encrypted: give an unencrypted key: {tls['encrypted.key']}")
    assert error({"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_KEYFILE": str(tls["client.key"])}) == (
        "KAFKA_SSL_KEYFILE is set without KAFKA_SSL_CERTFILE (kafka.ssl_certfile), the certificate it belongs to")
