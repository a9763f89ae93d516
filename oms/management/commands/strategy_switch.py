from __future__ import annotations

from argparse import ArgumentTypeError
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from oms.management.commands._cli import fmt, table
from oms.services.operator_audit import Operator
from oms.services.strategies import (
    UNCHANGED,
    StrategyControlInvalid,
    StrategyView,
    strategy_control_set,
    strategy_get,
    strategy_list,
)

NO_LIMIT = {"none", ""}
LIMIT_OPTIONS = (
    ("max_open", "max_open_positions"),
    ("max_per_day", "max_positions_per_day"),
    ("max_exposure", "max_exposure_usdt"),
)
COLUMNS = [
    ("strategy", "Strategy"),
    ("state", "State"),
    ("open_positions", "Open"),
    ("max_open_positions", "Max open"),
    ("positions_today", "Today"),
    ("max_positions_per_day", "Max/day"),
    ("open_exposure_usdt", "Exposure"),
    ("max_exposure_usdt", "Max exposure"),
    ("changed_by", "Changed by"),
]


def _count(value: str) -> int | None:
    if value.strip().lower() in NO_LIMIT:
        return None
    try:
        number = int(value)
    except ValueError:
        number = -1
    if number < 0:
        raise ArgumentTypeError(f"{value!r}: a whole number from 0 up, or none for no limit")
    return number


def _amount(value: str) -> Decimal | None:
    if value.strip().lower() in NO_LIMIT:
        return None
    try:
        amount = Decimal(value)
    except InvalidOperation:
        amount = Decimal("NaN")
    if not amount.is_finite() or amount <= 0:
        raise ArgumentTypeError(f"{value!r}: an amount in USDT greater than 0, or none for no limit")
    return amount


def _or_none(value: object) -> str:
    return "none" if value is None else fmt(value)


class Command(BaseCommand):
    help = (
        "Per-strategy control: switch one strategy's new positions on or off, or set its own limits "
        "(beside the global switch and limits), effective for the next signal and recorded in the operator "
        "audit with who and why. Without arguments, list the strategies; with a strategy only, show it."
    )

    def add_arguments(self, parser):
        parser.add_argument("strategy", nargs="?", help="the strategy's name, exactly as signals send it")
        parser.add_argument("state", nargs="?", choices=["on", "off"], help="on or off; omit to keep it")
        # UNCHANGED unless given ("none" gives None: the limit is cleared).
        parser.add_argument(
            "--max-open", type=_count, default=UNCHANGED, help="open positions at most (none: no limit)"
        )
        parser.add_argument(
            "--max-per-day",
            type=_count,
            default=UNCHANGED,
            help="positions opened per UTC day at most (none: no limit)",
        )
        parser.add_argument(
            "--max-exposure", type=_amount, default=UNCHANGED, help="open notional in USDT at most (none: no limit)"
        )
        parser.add_argument("--reason", default="", help="why (required to change anything)")
        parser.add_argument("--actor", default=None, help="who is changing it (default: the OS user)")

    def handle(self, *args, strategy, state, reason, actor, **options):
        if strategy is None:
            self._list(strategy_list())
            return
        changes = {field: options[option] for option, field in LIMIT_OPTIONS if options[option] is not UNCHANGED}
        if state is not None:
            changes["enabled"] = state == "on"
        try:
            if changes:
                if not reason.strip():
                    raise CommandError('A reason is required: --reason "..." (it is recorded in the operator audit).')
                operator = Operator.command(actor, reason=reason)
                strategy = strategy_control_set(strategy=strategy, operator=operator, **changes).strategy
            self._show(strategy_get(strategy))
        except StrategyControlInvalid as exc:
            raise CommandError(exc.message) from None

    def _list(self, strategies: list[StrategyView]) -> None:
        if not strategies:
            self.stdout.write("No strategy yet: none has positions or a control row.")
            return
        for line in table([self._row(view) for view in strategies], COLUMNS):
            self.stdout.write(line)

    @staticmethod
    def _row(view: StrategyView) -> dict:
        return {**view.as_dict(), "state": "ON" if view.enabled else "OFF", "changed_by": view.changed_by or "-"}

    def _show(self, view: StrategyView) -> None:
        style = self.style.SUCCESS if view.enabled else self.style.ERROR
        self.stdout.write(style(f"Strategy {view.strategy} {'ON' if view.enabled else 'OFF'}"))
        exposure = "none" if view.max_exposure_usdt is None else f"{fmt(view.max_exposure_usdt)} USDT"
        self.stdout.write(
            f"  limits: max open {_or_none(view.max_open_positions)}, "
            f"max per day {_or_none(view.max_positions_per_day)}, max exposure {exposure}"
        )
        self.stdout.write(
            f"  now: {view.open_positions} open, {fmt(view.open_exposure_usdt)} USDT exposure, "
            f"{view.positions_today} opened today"
        )
        if view.configured:
            when = f"{view.changed_at:%Y-%m-%d %H:%M:%S} UTC"
            self.stdout.write(f"  changed by {view.changed_by or '-'} at {when}: {view.reason or '-'}")
        else:
            self.stdout.write("  never changed: on, with no limits of its own (the global switch and limits apply)")
