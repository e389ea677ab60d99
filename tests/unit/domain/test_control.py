from datetime import UTC, date, datetime, timedelta

from pipeline.catalog_files import load_catalog
from pipeline.domain.config import Pause, PolicyConfig
from pipeline.domain.control import ControlCommand, Controls, apply
from pipeline.domain.events import ServerObservation
from pipeline.domain.policy import assess, step

ISSUED = datetime(2026, 3, 2, 14, 5, tzinfo=UTC)
SERVER = "ex13.contoso.example"


def command(action: str, target: str, number: int = 1, **fields) -> ControlCommand:
    return ControlCommand(f"c{number}", action, target, fields.pop("issued_at", ISSUED), **fields)


def folded(*commands: ControlCommand, config: PolicyConfig = PolicyConfig()) -> tuple[Controls, list]:
    controls, outcomes = Controls(), []
    for each in commands:
        controls, outcome = apply(controls, each, config)
        outcomes.append(outcome)
    return controls, outcomes


def test_a_pause_starts_on_its_day_and_counts_against_the_yearly_budget():
    config = PolicyConfig(pauses=(Pause("contoso.example", date(2026, 1, 10), 50),))
    controls, outcomes = folded(
        command("pause", "contoso.example", 1, days=30, reason="migration"),
        command("pause", "contoso.example", 2, days=20, reason="more", start=date(2026, 6, 1)),
        config=config)
    assert outcomes[0].applied and outcomes[0].detail == "contoso.example paused from 2026-03-02 until 2026-04-01"
    # 50 days by the config file and 30 granted leave 10 of 90 in 2026.
    assert not outcomes[1].applied
    assert outcomes[1].detail == ("over budget: contoso.example has 10 of 90 pause days left in 2026, "
                                  "the pause needs 20 more")
    assert controls.pauses == (Pause("contoso.example", date(2026, 3, 2), 30),)


def test_days_already_paused_do_not_count_twice_and_a_new_year_has_its_own_budget():
    _, outcomes = folded(
        command("pause", "fabrikam.example", 1, days=80, reason="a", start=date(2026, 10, 1)),
        command("pause", "fabrikam.example", 2, days=20, reason="b", start=date(2026, 12, 15)))
    # 80 days from 1 October reach 19 December; the second adds 12 days of 2026 (up to 31
    # December, 92 > 90: refused) ...
    assert [o.applied for o in outcomes] == [True, False]
    _, outcomes = folded(
        command("pause", "fabrikam.example", 1, days=80, reason="a", start=date(2026, 10, 1)),
        command("pause", "fabrikam.example", 2, days=30, reason="b", start=date(2026, 12, 25)))
    # ... from 25 December: 6 days of 2026 overlap, 1 new (86 of 90), the rest counts in 2027.
    assert [o.applied for o in outcomes] == [True, True]


def test_resume_ends_the_granted_pause_on_its_day():
    controls, outcomes = folded(
        command("pause", "contoso.example", 1, days=30, reason="migration"),
        command("resume", "contoso.example", 2, issued_at=ISSUED + timedelta(days=5)),
        command("resume", "contoso.example", 3, issued_at=ISSUED + timedelta(days=6)))
    assert [o.applied for o in outcomes] == [True, True, False]
    assert controls.pauses == (Pause("contoso.example", date(2026, 3, 2), 5),)
    assert outcomes[2].detail == "contoso.example has no granted pause to end on or after 2026-03-08"


def test_a_resume_on_the_first_day_leaves_no_pause():
    controls, _ = folded(command("pause", "contoso.example", 1, days=3, reason="x"),
                         command("resume", "contoso.example", 2))
    assert controls.pauses == ()


def test_exemptions_need_an_end_and_a_reason_and_are_lifted_by_name():
    controls, outcomes = folded(
        command("exempt", SERVER, 1, reason="vendor appliance"),
        command("exempt", SERVER, 2, until=date(2026, 3, 2), reason="x"),
        command("exempt", SERVER, 3, until=date(2026, 4, 1)),
        command("exempt", SERVER, 4, until=date(2026, 4, 1), reason="vendor appliance"),
        command("unexempt", "other.contoso.example", 5))
    assert [o.applied for o in outcomes] == [False, False, False, True, False]
    assert [e.pattern for e in controls.exemptions] == [SERVER]
    lifted, outcome = apply(controls, command("unexempt", SERVER, 6), PolicyConfig())
    assert outcome.applied and lifted.exemptions == ()


def test_the_config_files_exemptions_are_not_lifted_by_a_command():
    _, outcomes = folded(command("unexempt", SERVER), config=PolicyConfig(exemptions=("*.contoso.example",)))
    assert outcomes[0].detail == f"{SERVER} is exempt by the config file (policy.exemptions)"


def test_a_command_read_again_changes_nothing_and_keeps_its_outcome():
    once, first = folded(command("pause", "contoso.example", 1, days=30, reason="x"))
    twice, outcome = apply(once, command("pause", "contoso.example", 1, days=30, reason="x"), PolicyConfig())
    assert twice == once and outcome == first[0]


def test_unknown_actions_are_refused():
    _, outcomes = folded(command("block", SERVER))
    assert outcomes[0].detail == "unknown action 'block' (known: pause, resume, exempt, unexempt, report-only, enforce)"


def test_granted_pauses_and_exemptions_reach_the_policy_and_an_exemption_ends_on_its_day():
    observation = ServerObservation.once(f"contoso.example/{SERVER}", SERVER, "contoso.example",
                                         datetime(2026, 1, 5, 9, 30, tzinfo=UTC), "15.0.1497.2", "received-id")
    catalog = load_catalog()
    state, _ = step(None, observation, PolicyConfig(), catalog)
    controls, _ = folded(command("exempt", SERVER, 1, until=date(2026, 4, 1), reason="vendor appliance"),
                         command("pause", "contoso.example", 2, days=10, reason="x", start=date(2026, 5, 1)))
    config = controls.in_force(PolicyConfig())
    exempt = assess(state, datetime(2026, 3, 31, 23, tzinfo=UTC), config, catalog)
    assert exempt.stage == 0 and exempt.reason == f"exempt: matches {SERVER} until 2026-04-01 (vendor appliance)"
    after = assess(state, datetime(2026, 4, 1, tzinfo=UTC), config, catalog)
    assert after.stage > 1 and after.smtp_reply
    paused = assess(state, datetime(2026, 5, 3, tzinfo=UTC), config, catalog)
    assert paused.stage == 1 and paused.smtp_reply is None and "paused until 2026-05-11" in paused.reason


def test_report_only_for_an_org_or_the_site_is_granted_once_and_ended_by_enforce_outside_the_pause_budget():
    controls, outcomes = folded(
        command("report-only", "contoso.example", 1, reason="rollout"),
        command("report-only", "contoso.example", 2, reason="again"),
        command("report-only", "fabrikam.example", 3),
        command("report-only", "*", 4, reason="whole site first"),
        command("enforce", "contoso.example", 5),
        command("enforce", "contoso.example", 6),
        command("enforce", "fabrikam.example", 7),
        config=PolicyConfig(pause_budget_days=0))
    assert [o.applied for o in outcomes] == [True, False, False, True, True, False, False]
    assert outcomes[0].detail == "contoso.example in report-only mode: the MTAs accept and record what they would do"
    assert outcomes[1].detail == "contoso.example is in report-only mode already, by a command for contoso.example"
    assert outcomes[2].detail == "report-only mode needs a reason"
    assert outcomes[3].detail == "the whole site in report-only mode: the MTAs accept and record what they would do"
    assert outcomes[4].detail == "contoso.example enforced again"
    assert outcomes[6].detail == ("fabrikam.example has no report-only mode of its own to end; the whole site's "
                                  "ends with `enforce *`")
    assert controls.report_only == ("*",)
    assert controls.in_force(PolicyConfig()).report_only_by("anything.example") == "a command for the whole site"


def test_report_only_by_the_config_file_cannot_be_ended_by_a_command():
    config = PolicyConfig(report_only_orgs=("Contoso.Example",))
    _, outcomes = folded(command("enforce", "contoso.example", 1), command("report-only", "*", 2, reason="x"),
                         command("enforce", "*", 3), config=config)
    assert [o.applied for o in outcomes] == [False, True, True]
    assert outcomes[0].detail == "contoso.example is in report-only mode by the config file (policy.report_only_orgs)"
    _, outcomes = folded(command("enforce", "*", 1), config=PolicyConfig(report_only=True))
    assert outcomes[0].detail == "the whole site is in report-only mode by the config file (policy.report_only)"


def test_report_only_keeps_the_stage_and_marks_the_decision_which_is_taken_again_when_it_changes():
    observation = ServerObservation.once(f"contoso.example/{SERVER}", SERVER, "contoso.example",
                                         datetime(2026, 1, 5, 9, 30, tzinfo=UTC), "15.0.1497.2", "received-id")
    later = ServerObservation.once(f"contoso.example/{SERVER}", SERVER, "contoso.example",
                                   datetime(2026, 4, 20, 9, 30, tzinfo=UTC), "15.0.1497.2", "received-id")
    catalog = load_catalog()
    state, _ = step(None, observation, PolicyConfig(), catalog)
    state, enforced = step(state, later, PolicyConfig(), catalog)
    assert enforced is not None and enforced.block_minutes_per_hour == 60 and not enforced.report_only
    controls, _ = folded(command("report-only", "contoso.example", 1, reason="rollout"))
    state, reported = step(state, later, controls.in_force(PolicyConfig()), catalog)
    assert reported is not None and reported.version == enforced.version + 1
    assert (reported.stage, reported.block_minutes_per_hour, reported.smtp_reply) == (
        enforced.stage, 60, enforced.smtp_reply)
    assert reported.report_only and reported.reason == (
        enforced.reason + "; report-only rollout (a command for contoso.example): the MTAs accept its mail and "
                          "record what they would do")
    # Another org's report-only mode changes nothing for this server.
    _, unchanged = step(state, later, PolicyConfig(granted_report_only=("contoso.example", "fabrikam.example")),
                        catalog)
    assert unchanged is None


def test_an_exemption_is_bounded_and_one_of_every_server_must_be_meant():
    _, outcomes = folded(
        command("exempt", SERVER, 1, until=ISSUED.date() + timedelta(days=366), reason="too long"),
        command("exempt", SERVER, 2, until=ISSUED.date() + timedelta(days=365), reason="a year"),
        command("exempt", "*", 3, until=date(2026, 4, 1), reason="switch off"),
        command("exempt", "*.*", 4, until=date(2026, 4, 1), reason="switch off"),
        command("exempt", "*.contoso.example", 5, until=date(2026, 4, 1), reason="one org's"),
        command("exempt", "*", 6, until=date(2026, 4, 1), reason="incident 4711", all_servers=True))
    assert [o.applied for o in outcomes] == [False, True, False, False, True, True]
    assert outcomes[0].detail == ("an exemption may last at most 365 days (policy.max_exemption_days): until "
                                  "2027-03-02 at the latest")
    assert outcomes[3].detail == ("*.* matches every server and would switch enforcement off: name the servers, "
                                  "or say all_servers (--all-servers) if that is meant")
    _, outcomes = folded(command("exempt", SERVER, 1, until=date(2026, 3, 20), reason="short"),
                         config=PolicyConfig(max_exemption_days=14))
    assert outcomes[0].detail.startswith("an exemption may last at most 14 days")
