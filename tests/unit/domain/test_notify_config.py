"""The [notify] table: how the relay is secured by default, and the settings that would send a
password in clear text refused with the key named."""
from pathlib import Path

import pytest

from pipeline.domain.config import ConfigError
from pipeline.domain.notify_config import NotifyConfig


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost", "LOCALHOST"])
def test_a_loopback_relay_is_spoken_to_in_clear_text_by_default(host):
    config = NotifyConfig.from_mapping({"smtp_host": host})
    assert (config.smtp_tls, config.smtp_port) == ("none", 25)


@pytest.mark.parametrize("host", ["smtp.office365.com", "10.0.0.25", "localhost.example", "::ffff:10.0.0.25"])
def test_any_other_relay_gets_starttls_by_default(host):
    config = NotifyConfig.from_mapping({"smtp_host": host})
    assert (config.smtp_tls, config.smtp_port) == ("starttls", 25)


def test_the_table_left_out_is_the_loopback_relay_in_clear_text():
    assert NotifyConfig.from_mapping({}) == NotifyConfig()


def test_implicit_tls_defaults_to_port_465_and_a_port_given_stays():
    assert NotifyConfig.from_mapping({"smtp_host": "relay.example", "smtp_tls": "tls"}).smtp_port == 465
    assert NotifyConfig.from_mapping({"smtp_host": "relay.example", "smtp_tls": "TLS", "smtp_port": 10465}) \
        == NotifyConfig(smtp_host="relay.example", smtp_tls="tls", smtp_port=10465)


def test_a_submission_relay_with_a_login():
    config = NotifyConfig.from_mapping({
        "smtp_host": "smtp.office365.com", "smtp_port": 587, "smtp_username": "patchgate@contoso.example",
        "smtp_password_file": "/run/secrets/smtp", "smtp_ca_file": "/etc/patchgate/ca.pem"})
    assert config == NotifyConfig(
        smtp_host="smtp.office365.com", smtp_port=587, smtp_tls="starttls", smtp_username="patchgate@contoso.example",
        smtp_password_file=Path("/run/secrets/smtp"), smtp_ca_file=Path("/etc/patchgate/ca.pem"))


def test_a_plain_relay_beyond_loopback_must_be_asked_for():
    config = NotifyConfig.from_mapping({"smtp_host": "relay.example", "smtp_tls": "none"})
    assert (config.smtp_tls, config.smtp_port) == ("none", 25)


@pytest.mark.parametrize(("table", "message"), [
    ({"smtp_tls": "ssl"}, "notify.smtp_tls must be one of none, starttls, tls, got 'ssl'"),
    ({"smtp_tls": True}, "notify.smtp_tls must be one of none, starttls, tls, got True"),
    ({"smtp_username": ""}, "notify.smtp_username must be a non-empty string, got ''"),
    ({"smtp_ca_file": 3}, "notify.smtp_ca_file must be the path of a file, got 3"),
    ({"smtp_host": "relay.example", "smtp_tls": "none", "smtp_username": "pg"},
     'notify.smtp_username is set, but notify.smtp_tls is "none": a password is sent over TLS only '
     '(set smtp_tls to "starttls" or "tls")'),
    ({"smtp_username": "pg", "smtp_password_file": "/run/secrets/smtp"},
     'notify.smtp_username is set, but notify.smtp_tls defaults to "none" for the loopback relay 127.0.0.1: '
     'a password is sent over TLS only (set smtp_tls to "starttls" or "tls")'),
    ({"smtp_tls": "none", "smtp_ca_file": "/etc/ca.pem"},
     'notify.smtp_ca_file is set, but notify.smtp_tls is "none": no certificate is checked '
     '(set smtp_tls to "starttls" or "tls")'),
    ({"smtp_tls": "starttls", "smtp_password_file": "/run/secrets/smtp"},
     "notify.smtp_password_file is set without notify.smtp_username, the login it belongs to"),
    ({"smtp_tls": "starttls", "smtp_username": "pg", "smtp_password": "hunter2"},
     "notify.smtp_password is not read from the config file: put the password in a file named by "
     "notify.smtp_password_file, or in PATCHGATE_SMTP_PASSWORD"),
])
def test_settings_that_do_not_read_or_would_leak_a_password_name_the_key(table, message):
    with pytest.raises(ConfigError) as raised:
        NotifyConfig.from_mapping(table)
    assert str(raised.value) == message
