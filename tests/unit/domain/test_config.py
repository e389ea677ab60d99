from datetime import date

import pytest

from pipeline.domain.builds import Build
from pipeline.domain.config import DEFAULT_STAGES, Pause, PolicyConfig


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
        "pauses": [{"org": "contoso.example", "start": "2026-03-01", "days": 14}],
    })
    assert [s.start_day for s in config.stages] == [0, 10, 20]
    assert config.stages[2].number == 3
    assert config.baselines == {"Exchange2019": Build.parse("15.2.1748.42")}
    assert config.enforce_products == {"Exchange2013"}
    assert config.build_window_days == 3
    assert config.pauses == (Pause("contoso.example", date(2026, 3, 1), 14),)
    assert config.is_exempt("ex01.lab.contoso.example") == "*.lab.contoso.example"
    assert config.is_exempt("ex01.contoso.example") is None
    assert config.stages != DEFAULT_STAGES


def test_unknown_keys_and_bad_builds_are_errors():
    with pytest.raises(ValueError, match="unknown policy settings: build_windw_days"):
        PolicyConfig.from_mapping({"build_windw_days": 3})
    with pytest.raises(ValueError, match="baselines.Exchange2016"):
        PolicyConfig.from_mapping({"baselines": {"Exchange2016": "CU23"}})


def test_internal_hops_take_host_patterns_and_cidr_ranges_that_read():
    config = PolicyConfig.from_mapping({"internal_hops": ["scan*.corp.example", "10.20.0.0/16"]})
    assert config.internal_hops == ("scan*.corp.example", "10.20.0.0/16")
    with pytest.raises(ValueError, match="internal_hops: '10.20.0.0/16x' is not a CIDR range"):
        PolicyConfig.from_mapping({"internal_hops": ["10.20.0.0/16x"]})
