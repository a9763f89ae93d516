"""manage.py strategy_switch: list, show, switch and limits of one strategy (issue #12 §5)."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from oms.models import OperatorAction, OperatorActionKind, OperatorSource, StrategyControl
from oms.tests.factories import open_position

pytestmark = pytest.mark.django_db

BOUNCE = "bounce_ema10_strict"


def run(*args) -> str:
    out = StringIO()
    call_command("strategy_switch", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def test_off_is_recorded_with_actor_and_reason_and_refuses_the_next_signal(anon_client, signal_body):
    output = run(BOUNCE, "off", "--reason", "losing streak", "--actor", "ops-oncall")
    assert f"Strategy {BOUNCE} OFF" in output and "losing streak" in output
    action = OperatorAction.objects.get()
    assert (action.action, action.source, action.actor, action.reason) == (
        OperatorActionKind.STRATEGY,
        OperatorSource.COMMAND,
        "ops-oncall",
        "losing streak",
    )
    body = anon_client.post("/signals/bounce", signal_body(), format="json").json()
    assert body["risk_reason"] == f"strategy_switched_off (strategy={BOUNCE})"


def test_limits_are_set_and_cleared_with_none_and_the_actor_defaults_to_the_os_user(monkeypatch):
    monkeypatch.setattr("getpass.getuser", lambda: "deploy")
    run(BOUNCE, "--max-open", "3", "--max-per-day", "10", "--max-exposure", "750.5", "--reason", "cap")
    row = StrategyControl.objects.get()
    assert (row.enabled, row.max_open_positions, row.max_positions_per_day, row.max_exposure_usdt) == (
        True,
        3,
        10,
        Decimal("750.5"),
    )
    assert row.changed_by == "deploy (command)"
    output = run(BOUNCE, "--max-open", "none", "--reason", "uncap")
    row.refresh_from_db()
    assert (row.max_open_positions, row.max_positions_per_day) == (None, 10)
    assert "max open none, max per day 10, max exposure 750.5 USDT" in output


def test_a_change_without_reason_is_refused():
    with pytest.raises(CommandError, match="reason is required"):
        run(BOUNCE, "off")
    assert not StrategyControl.objects.exists()


@pytest.mark.parametrize(
    "args",
    [
        ["--max-open", "-1"],
        ["--max-open", "many"],
        ["--max-per-day", "1.5"],
        ["--max-exposure", "0"],
        ["--max-exposure", "abc"],
    ],
)
def test_bad_limits_are_clear_errors(args):
    with pytest.raises(CommandError):
        run(BOUNCE, *args, "--reason", "x")
    assert not StrategyControl.objects.exists()


def test_a_bad_name_is_a_clear_error():
    with pytest.raises(CommandError, match="at most 64"):
        run("x" * 65, "off", "--reason", "x")


def test_without_arguments_it_lists_the_strategies():
    open_position(strategy=BOUNCE, entry="100", qty="2")
    run("quiet_one", "off", "--reason", "parked")
    lines = run().splitlines()
    assert lines[0].split()[:3] == ["Strategy", "State", "Open"]
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert rows[BOUNCE][1:3] == ["ON", "1"] and rows["quiet_one"][1:3] == ["OFF", "0"]


def test_with_only_a_name_it_shows_the_strategy_and_changes_nothing():
    output = run(BOUNCE)
    assert f"Strategy {BOUNCE} ON" in output and "never changed" in output
    assert not StrategyControl.objects.exists() and not OperatorAction.objects.exists()


def test_an_empty_list_says_so():
    assert "No strategy yet" in run()
