"""One org rule: an org's name in any case; a server without an org belongs to none."""
from datetime import UTC, date, datetime

import pytest

from pipeline.domain.config import Pause, PolicyConfig
from pipeline.domain.orgs import same_org
from pipeline.domain.pauses import pause_intervals


@pytest.mark.parametrize(("named", "org", "same"), [
    ("contoso.example", "contoso.example", True),
    ("Contoso.Example", "CONTOSO.example", True),
    ("contoso.example", "fabrikam.example", False),
    ("contoso.example", "lab.contoso.example", False),
    ("contoso.example", None, False),
    ("contoso.example", "", False),
    (None, None, False),
    ("", "", False),
])
def test_an_org_is_its_name_in_any_case(named, org, same):
    assert same_org(named, org) is same


def test_pauses_and_report_only_named_in_any_case_apply_to_the_orgs_servers_and_never_to_those_without_one():
    config = PolicyConfig(pauses=(Pause("Contoso.Example", date(2026, 3, 1), 2),),
                          report_only_orgs=("CONTOSO.example",))
    assert pause_intervals(config, "contoso.example") == [
        (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 3, tzinfo=UTC))]
    assert config.report_only_by("contoso.EXAMPLE") == "policy.report_only_orgs"
    assert "Contoso.Example" in config.controls_of("contoso.example", "ex01.contoso.example")
    assert pause_intervals(config, None) == [] and config.report_only_by(None) is None
    assert "Contoso.Example" not in config.controls_of(None, "ex01.contoso.example")
