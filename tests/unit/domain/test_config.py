from dataclasses import replace
from datetime import UTC, date, datetime

import pytest

from pipeline.domain.builds import Build
from pipeline.domain.catalog import product_of
from pipeline.domain.config import DEFAULT_STAGES, PRODUCTS, ConfigError, Exemption, FormatConfig, Pause, PolicyConfig
from pipeline.domain.received import read_hop
from pipeline.domain.scope import Scope


def test_defaults_are_the_design_table():
    config = PolicyConfig()
    assert [(s.number, s.start_day, s.throttle_minutes, s.block_minutes) for s in config.stages] == [
        (1, 0, 0, 0), (2, 30, 5, 0), (3, 40, 10, 0), (4, 50, 20, 0),
        (5, 60, 30, 5), (6, 70, 30, 10), (7, 80, 30, 20), (8, 90, 0, 60),
    ]
    assert config.baselines["Exchange2016"] == Build.parse("15.1.2507.61")
    assert config.vulnerable_products == {"Exchange2007", "Exchange2010", "Exchange2013"}
    assert config.build_window_days == 7


def test_every_number_comes_from_the_mapping():
    config = PolicyConfig.from_mapping({
        "stages": [
            {"start_day": 0, "throttle_minutes": 0, "block_minutes": 0},
            {"start_day": 10, "throttle_minutes": 15, "block_minutes": 0},
            {"start_day": 20, "throttle_minutes": 0, "block_minutes": 60},
        ],
        "baselines": {"Exchange2019": "15.02.1748.042"},
        "vulnerable_products": ["Exchange2013"],
        "enforce_products": ["Exchange2013"],
        "exemptions": ["*.lab.contoso.example"],
        "build_window_days": 3,
        "pause_budget_days": 30,
        "pauses": [{"org": "contoso.example", "start": "2026-03-01", "days": 14},
                   {"org": "fabrikam.example", "start": date(2026, 4, 1), "days": 7}],
    })
    assert [s.start_day for s in config.stages] == [0, 10, 20]
    assert config.stages[2].number == 3
    assert config.baselines == {"Exchange2019": Build.parse("15.2.1748.42")}
    assert config.enforce_products == {"Exchange2013"}
    assert config.build_window_days == 3 and config.pause_budget_days == 30
    assert config.pauses == (Pause("contoso.example", date(2026, 3, 1), 14),
                             Pause("fabrikam.example", date(2026, 4, 1), 7))
    assert config.is_exempt("ex01.lab.contoso.example") == "*.lab.contoso.example"
    assert config.is_exempt("ex01.contoso.example") is None
    assert config.stages != DEFAULT_STAGES


def test_exemptions_match_server_names_in_any_case():
    """Host names are the same in any case: the pattern's and the server's case do not matter."""
    config = replace(PolicyConfig.from_mapping({"exemptions": ["*.Lab.contoso.example"]}),
                     granted_exemptions=(Exemption("EX02.contoso.example", date(2026, 4, 1), "migration"),))
    assert config.is_exempt("EX01.lab.Contoso.example") == "*.Lab.contoso.example"
    assert config.exemption_ends("ex02.CONTOSO.example") == [date(2026, 4, 1)]
    assert config.is_exempt("Ex02.contoso.example", datetime(2026, 3, 31, tzinfo=UTC)) == \
        "EX02.contoso.example until 2026-04-01 (migration)"


def test_internal_hops_take_host_patterns_and_cidr_ranges():
    config = PolicyConfig.from_mapping({"internal_hops": ["scan*.corp.example", "10.20.0.0/16"]})
    assert config.internal_hops == ("scan*.corp.example", "10.20.0.0/16")


def test_the_scope_table_is_read_with_the_policy():
    scope = {"connectors": ["Inbound from Contoso"], "client_networks": ["198.51.100.0/24"],
             "tls_peers": ["*.Contoso.example"]}
    config = PolicyConfig.from_mapping({"scope": scope})
    assert config.scope.connectors == ("inbound from contoso",) and config.scope.tls_peers == ("*.contoso.example",)
    assert config.scope.admits(None, "198.51.100.7", None) and not config.scope.admits(None, "192.0.2.1", None)
    assert PolicyConfig.from_mapping({"scope": {}}).scope == Scope()


def test_every_product_a_server_can_get_is_a_known_product():
    exchange = {product_of(Build.parse(build)) for build in
                ("8.3.83.6", "14.3.123.4", "15.0.1497.2", "15.1.2507.6", "15.2.1748.10", "15.2.2562.17")}
    mtas = {read_hop(header).software for header in (
        "from a.example by mx.example with esmtp (Exim 4.97) id 1vDm9G",
        "from a.example by mx.example (8.17.1/8.17.1) with ESMTP id 51A2",
        "from a.example by mx.example (Postfix) with ESMTP id 4Z7x")}
    assert exchange | mtas == set(PRODUCTS)


STAGE = {"start_day": 0, "throttle_minutes": 0, "block_minutes": 0}
PAUSE = {"org": "contoso.example", "start": "2026-03-01", "days": 14}
PRODUCT_LIST = ", ".join(PRODUCTS)
POLICY_KEYS = ("stages, vulnerable_products, baselines, enforce_products, exemptions, trusted_receivers, "
               "internal_hops, scope, build_window_days, pause_budget_days, pauses, max_exemption_days, report_only, "
               "report_only_orgs")


@pytest.mark.parametrize(("policy", "message"), [
    # unknown keys
    ({"build_windw_days": 3}, f"policy.build_windw_days is not a setting (known: {POLICY_KEYS})"),
    ({"stages": [{**STAGE, "blok_minutes": 5}]},
     "policy.stages[0].blok_minutes is not a setting (known: start_day, throttle_minutes, block_minutes)"),
    ({"pauses": [{**PAUSE, "until": "2026-04-01"}]},
     "policy.pauses[0].until is not a setting (known: org, start, days)"),
    ({"scope": {"connector": ["x"]}},
     "policy.scope.connector is not a setting (known: connectors, client_networks, tls_peers)"),
    ({"baselines": {"Exchange2021": "15.3.1.1"}},
     f"policy.baselines.Exchange2021 is not a product (known: {PRODUCT_LIST})"),
    # missing keys
    ({"stages": [STAGE, {"start_day": 30, "throttle_minutes": 5}]}, "policy.stages[1].block_minutes is missing"),
    ({"pauses": [{"org": "contoso.example", "start": "2026-03-01"}]}, "policy.pauses[0].days is missing"),
    # wrong types
    (3, "policy must be a table, got 3"),
    ({"stages": "none"}, "policy.stages must be a list of tables, got 'none'"),
    ({"stages": [STAGE, 30]}, "policy.stages[1] must be a table, got 30"),
    ({"stages": [STAGE, {**STAGE, "start_day": 30, "block_minutes": "5"}]},
     "policy.stages[1].block_minutes must be an integer from 0 to 60, got '5'"),
    ({"vulnerable_products": "Exchange2013"},
     "policy.vulnerable_products must be a list of strings, got 'Exchange2013'"),
    ({"exemptions": ["*.lab.example", 7]}, "policy.exemptions[1] must be a non-empty string, got 7"),
    ({"trusted_receivers": "*.outlook.com"}, "policy.trusted_receivers must be a list of strings, got '*.outlook.com'"),
    ({"baselines": {"Exchange2016": 15.1}},
     "policy.baselines.Exchange2016 must be a build number like 15.1.2507.61, got 15.1"),
    ({"build_window_days": "7"}, "policy.build_window_days must be an integer >= 0, got '7'"),
    ({"build_window_days": True}, "policy.build_window_days must be an integer >= 0, got True"),
    ({"pauses": {"org": "contoso.example"}}, "policy.pauses must be a list of tables, got {'org': 'contoso.example'}"),
    # A TOML local date-time, which tomllib reads without a time zone.
    ({"pauses": [{**PAUSE, "start": datetime(2026, 3, 1, 8, 0)}]},  # noqa: DTZ001
     "policy.pauses[0].start must be a date like 2026-03-01, got datetime.datetime(2026, 3, 1, 8, 0)"),
    ({"pauses": [{**PAUSE, "org": ""}]}, "policy.pauses[0].org must be a non-empty string, got ''"),
    ({"scope": {"tls_peers": "*.contoso.example"}},
     "policy.scope.tls_peers must be a list of strings, got '*.contoso.example'"),
    ({"report_only": "yes"}, "policy.report_only must be true or false, got 'yes'"),
    ({"report_only_orgs": "contoso.example"},
     "policy.report_only_orgs must be a list of strings, got 'contoso.example'"),
    # values that do not read or are out of range
    ({"stages": [{**STAGE, "start_day": 5}]},
     "policy.stages[0].start_day must be 0 (the first stage starts at detection), got 5"),
    ({"stages": [STAGE, {**STAGE, "start_day": 30}, {**STAGE, "start_day": 30}]},
     "policy.stages[2].start_day must be greater than the previous stage's 30, got 30"),
    ({"stages": [STAGE, {**STAGE, "start_day": -30}]}, "policy.stages[1].start_day must be an integer >= 0, got -30"),
    ({"stages": [STAGE, {**STAGE, "start_day": 30, "throttle_minutes": -5}]},
     "policy.stages[1].throttle_minutes must be an integer from 0 to 60, got -5"),
    ({"stages": [STAGE, {"start_day": 30, "throttle_minutes": 40, "block_minutes": 30}]},
     "policy.stages[1] throttle_minutes + block_minutes must be at most 60 (per hour), got 70"),
    ({"stages": []}, "policy.stages must hold at least one stage"),
    ({"enforce_products": ["Exchange2013", "Exchange2012"]},
     f"policy.enforce_products[1] must be one of {PRODUCT_LIST}, got 'Exchange2012'"),
    ({"baselines": {"Exchange2016": "CU23"}},
     "policy.baselines.Exchange2016 must be a build number like 15.1.2507.61, got 'CU23'"),
    ({"internal_hops": ["scan*.corp.example", "10.20.0.0/16x"]},
     "policy.internal_hops[1] must be a host name pattern or a CIDR range like 10.20.0.0/16, got '10.20.0.0/16x'"),
    ({"build_window_days": -1}, "policy.build_window_days must be an integer >= 0, got -1"),
    ({"pause_budget_days": 400}, "policy.pause_budget_days must be an integer from 0 to 366, got 400"),
    ({"pauses": [{**PAUSE, "start": "2026-02-30"}]},
     "policy.pauses[0].start must be a date like 2026-03-01, got '2026-02-30'"),
    ({"pauses": [{**PAUSE, "days": -3}]}, "policy.pauses[0].days must be an integer >= 1, got -3"),
    ({"scope": {"client_networks": ["198.51.100.0/33"]}},
     "policy.scope.client_networks[0] must be a CIDR range like 198.51.100.0/24, got '198.51.100.0/33'"),
])
def test_a_policy_setting_that_does_not_read_names_its_key_and_the_problem(policy, message):
    with pytest.raises(ConfigError) as error:
        PolicyConfig.from_mapping(policy)
    assert str(error.value) == message
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize(("formats", "message"), [
    ({"exo_date_order": "dmy"}, "formats.exo_date_order must be one of auto, month-first, day-first, got 'dmy'"),
    ({"exo_date_order": 1}, "formats.exo_date_order must be one of auto, month-first, day-first, got 1"),
    ({"date_order": "auto"},
     "formats.date_order is not a setting (known: exo_date_order, max_line_bytes, syslog_timezone)"),
    ("auto", "formats must be a table, got 'auto'"),
    ({"max_line_bytes": 4095}, "formats.max_line_bytes must be an integer >= 4096, got 4095"),
    ({"max_line_bytes": "1M"}, "formats.max_line_bytes must be an integer >= 4096, got '1M'"),
    ({"max_line_bytes": True}, "formats.max_line_bytes must be an integer >= 4096, got True"),
])
def test_a_formats_setting_that_does_not_read_names_its_key_and_the_problem(formats, message):
    with pytest.raises(ConfigError) as error:
        FormatConfig.from_mapping(formats)
    assert str(error.value) == message


def test_formats_read():
    assert FormatConfig.from_mapping({"exo_date_order": "day-first"}).exo_date_order == "day-first"
    assert FormatConfig.from_mapping({}) == FormatConfig()
    assert FormatConfig().max_line_bytes == 1048576
    assert FormatConfig.from_mapping({"max_line_bytes": 65536}) == FormatConfig(max_line_bytes=65536)
