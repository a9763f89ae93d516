"""Console forms: input parsing and validation only; the actions live in services."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django import forms
from django.utils import timezone

from oms.amounts import MAX_PRICE
from oms.models import OperatorActionKind, PositionStatus, Side, SignalOutcome

CLOSE_ALL_PHRASE = "CLOSE ALL"
POSITION_SORTS = {
    "id",
    "symbol",
    "side",
    "qty",
    "entry_price",
    "status",
    "pnl",
    "created_at",
    "closed_at",
    "strategy",
    "exchange",
}
DEFAULT_POSITION_SORT = "-created_at"


def _day_start(day) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())


class DateRangeMixin:
    """`since`/`until` as calendar days; `until` is inclusive on screen, exclusive in the query."""

    def clean_until(self):
        until = self.cleaned_data.get("until")
        if until is not None and until >= date.max:  # the day after it, the query's bound, does not exist
            raise forms.ValidationError(f"Must be before {date.max.isoformat()}.")
        return until

    def date_range(self) -> dict:
        data = self.cleaned_data
        return {
            "since": _day_start(data["since"]) if data.get("since") else None,
            "until": _day_start(data["until"] + timedelta(days=1)) if data.get("until") else None,
        }


def _choices(options) -> list[tuple[str, str]]:
    return [("", "Any")] + list(options)


def _text(label: str, max_length: int = 64) -> forms.CharField:
    return forms.CharField(
        label=label, required=False, max_length=max_length, widget=forms.TextInput(attrs={"placeholder": label})
    )


def _day(label: str) -> forms.DateField:
    return forms.DateField(label=label, required=False, widget=forms.DateInput(attrs={"type": "date"}))


class PositionFilterForm(DateRangeMixin, forms.Form):
    status = forms.ChoiceField(choices=_choices(PositionStatus.choices), required=False)
    symbol = _text("Symbol", 30)
    strategy = _text("Strategy")
    exchange = _text("Exchange", 32)
    side = forms.ChoiceField(choices=_choices(Side.choices), required=False)
    since = _day("From")
    until = _day("To")
    sort = forms.ChoiceField(
        label="Sort",
        required=False,
        widget=forms.HiddenInput,
        choices=[(f"{sign}{key}", key) for key in sorted(POSITION_SORTS) for sign in ("", "-")],
    )

    def sort_key(self) -> str:
        """The column (with `-` for descending) to sort by: the default when none or an unknown one is given."""
        if not self.is_bound:
            return DEFAULT_POSITION_SORT
        self.is_valid()  # the valid fields stay in cleaned_data even when another one is invalid
        return self.cleaned_data.get("sort") or DEFAULT_POSITION_SORT

    def filters(self) -> dict:
        """Keyword arguments for `positions_filtered` (empty values mean no filter)."""
        data = self.cleaned_data
        return {
            "status": data.get("status") or None,
            "symbol": (data.get("symbol") or "").strip().upper() or None,
            "strategy": (data.get("strategy") or "").strip() or None,
            "exchange": (data.get("exchange") or "").strip().lower() or None,
            "side": data.get("side") or None,
            **self.date_range(),
        }


class StatsFilterForm(DateRangeMixin, forms.Form):
    symbol = _text("Symbol", 30)
    strategy = _text("Strategy")
    exchange = _text("Exchange", 32)
    since = _day("From")
    until = _day("To")

    def filters(self) -> dict:
        data = self.cleaned_data
        return {
            "symbol": (data.get("symbol") or "").strip().upper() or None,
            "strategy": (data.get("strategy") or "").strip() or None,
            "exchange": (data.get("exchange") or "").strip().lower() or None,
            **self.date_range(),
        }


class SignalFilterForm(forms.Form):
    outcome = forms.ChoiceField(choices=_choices(SignalOutcome.choices), required=False)
    symbol = _text("Symbol", 30)


class AuditFilterForm(forms.Form):
    position = forms.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
    actor = _text("Actor", 150)
    action = forms.ChoiceField(choices=_choices(OperatorActionKind.choices), required=False)


class OrderFilterForm(forms.Form):
    symbol = _text("Symbol", 30)


class SwitchForm(forms.Form):
    # "flatten" (demo/live, issue #11): OFF, then cancel every order and close every position on the exchange.
    enabled = forms.TypedChoiceField(
        choices=[("on", "ON"), ("off", "OFF"), ("flatten", "OFF and flatten")], coerce=lambda v: v == "on"
    )
    reason = forms.CharField(
        max_length=500,
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": "Why? (recorded with your name)", "autocomplete": "off"}),
        error_messages={"required": "Give a reason: it is recorded with your name in the switch history."},
    )


class SettleForm(forms.Form):
    """A stuck position: close at a given price, or void (issue #12 §7)."""

    price = forms.DecimalField(
        required=False, min_value=Decimal("0"), max_digits=28, decimal_places=10, label="Close price"
    )
    void = forms.BooleanField(required=False, label="Void it instead (no price, no PnL, not a trade)")
    reason = forms.CharField(max_length=1000, strip=True, label="Why (recorded in the operator audit)")

    def clean(self) -> dict:
        data = super().clean()
        price, void = data.get("price"), data.get("void")
        if "price" in self.errors:
            return data
        if void and price is not None:
            raise forms.ValidationError("Give either a close price or void, not both.")
        if not void and (price is None or price <= 0):
            raise forms.ValidationError("Give a close price greater than 0, or tick void.")
        return data


class StopMoveForm(forms.Form):
    """Move the stop loss of an open position: to a price or to break even (issue #12 §1)."""

    sl_price = forms.DecimalField(
        required=False, min_value=Decimal("0"), max_value=MAX_PRICE, max_digits=28, decimal_places=10, label="New stop"
    )
    break_even = forms.BooleanField(required=False, label="Break even (the entry price)")
    allow_loosen = forms.BooleanField(required=False, label="Allow a looser stop")
    reason = forms.CharField(required=False, max_length=1000, strip=True, label="Why (recorded in the operator audit)")

    def clean(self) -> dict:
        data = super().clean()
        sl_price, break_even = data.get("sl_price"), data.get("break_even")
        if "sl_price" in self.errors:
            return data
        if break_even and sl_price is not None:
            raise forms.ValidationError("Give either a new stop or break even, not both.")
        if not break_even and (sl_price is None or sl_price <= 0):
            raise forms.ValidationError("Give a new stop greater than 0, or tick break even.")
        return data


class CloseAllForm(forms.Form):
    confirm = forms.CharField(
        label=f'Type "{CLOSE_ALL_PHRASE}" to confirm',
        max_length=20,
        strip=True,
        widget=forms.TextInput(
            attrs={"autocomplete": "off", "autocapitalize": "characters", "placeholder": CLOSE_ALL_PHRASE}
        ),
    )

    def clean_confirm(self) -> str:
        value = self.cleaned_data["confirm"]
        if value != CLOSE_ALL_PHRASE:
            raise forms.ValidationError(f'Type exactly "{CLOSE_ALL_PHRASE}" to close every open position.')
        return value

    reason = forms.CharField(label="Why (recorded in the operator audit)", max_length=1000, required=False, strip=True)
