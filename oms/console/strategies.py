"""The console's strategies page (issue #12 §5): each strategy's own switch and limits.

Viewers read it; changing a strategy needs `oms.change_switch`, like the global switch. Every change
goes through `strategy_control_set`, as the API and `manage.py strategy_switch` do.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from oms.console.views import console_view
from oms.models import OperatorSource
from oms.services.operator_audit import Operator
from oms.services.strategies import (
    MAX_NAME,
    StrategyControlInvalid,
    strategy_changes,
    strategy_control_set,
    strategy_get,
    strategy_list,
)
from oms.services.switch import switch_state

STATES = [("on", "ON"), ("off", "OFF")]


def _reason() -> forms.CharField:
    return forms.CharField(
        max_length=500,
        strip=True,
        widget=forms.TextInput(attrs={"placeholder": "Why? (recorded with your name)", "autocomplete": "off"}),
        error_messages={"required": "Give a reason: it is recorded with your name in the operator audit."},
    )


def _limit(label: str) -> forms.IntegerField:
    return forms.IntegerField(label=label, required=False, min_value=0, max_value=2**31 - 1)


class StrategySwitchForm(forms.Form):
    """A row's quick switch: one strategy ON or OFF, with a reason."""

    strategy = forms.CharField(max_length=MAX_NAME, widget=forms.HiddenInput)
    enabled = forms.TypedChoiceField(choices=STATES, coerce=lambda v: v == "on")
    reason = _reason()


class StrategySetForm(forms.Form):
    """A strategy's whole control: its switch and its three limits (blank: no limit of its own)."""

    strategy = forms.CharField(label="Strategy", max_length=MAX_NAME, strip=True)
    enabled = forms.TypedChoiceField(label="State", choices=STATES, coerce=lambda v: v == "on", initial="on")
    max_open_positions = _limit("Max open positions")
    max_positions_per_day = _limit("Max positions per day (UTC)")
    max_exposure_usdt = forms.DecimalField(
        label="Max exposure (USDT)", required=False, min_value=0, max_digits=28, decimal_places=10
    )
    reason = _reason()

    def clean_max_exposure_usdt(self):
        value = self.cleaned_data.get("max_exposure_usdt")
        if value is not None and value <= 0:
            raise forms.ValidationError("Must be greater than 0, or blank for no limit.")
        return value


def _set_form_for(name: str) -> StrategySetForm:
    """The form filled with the strategy's current control (to edit it)."""
    try:
        view = strategy_get(name)
    except StrategyControlInvalid:
        return StrategySetForm()
    return StrategySetForm(
        initial={
            "strategy": view.strategy,
            "enabled": "on" if view.enabled else "off",
            "max_open_positions": view.max_open_positions,
            "max_positions_per_day": view.max_positions_per_day,
            "max_exposure_usdt": None if view.max_exposure_usdt is None else f"{view.max_exposure_usdt.normalize():f}",
        }
    )


def _apply(request: HttpRequest, name: str, reason: str, **changes) -> bool:
    try:
        row = strategy_control_set(
            strategy=name, operator=Operator.from_request(request, OperatorSource.CONSOLE, reason), **changes
        )
    except StrategyControlInvalid as exc:
        messages.error(request, f"Strategy {name}: {exc.message}.")
        return False
    verdict = "accepted" if row.enabled else "refused"
    messages.success(
        request, f"Strategy {row.strategy} is {'ON' if row.enabled else 'OFF'}: its new positions are {verdict}."
    )
    return True


@console_view
@require_http_methods(["GET", "POST"])
def strategies(request: HttpRequest) -> HttpResponse:
    """Every strategy with positions or a control row; POST switches one or sets its limits."""
    switch_form = set_form = None
    if request.method == "POST":
        if not request.user.has_perm("oms.change_switch"):
            raise PermissionDenied("Your account lacks the permission oms.change_switch.")
        if request.POST.get("action") == "set":
            set_form = StrategySetForm(request.POST)
            if set_form.is_valid():
                data = set_form.cleaned_data
                fields = ("enabled", "max_open_positions", "max_positions_per_day", "max_exposure_usdt")
                if _apply(request, data["strategy"], data["reason"], **{f: data[f] for f in fields}):
                    return redirect(reverse("oms:strategies"))
        else:
            switch_form = StrategySwitchForm(request.POST)
            if switch_form.is_valid():
                data = switch_form.cleaned_data
                if _apply(request, data["strategy"], data["reason"], enabled=data["enabled"]):
                    return redirect(reverse("oms:strategies"))
            else:
                for errors in switch_form.errors.values():
                    messages.error(request, " ".join(errors))
    editing = request.GET.get("edit", "")
    context = {
        "strategies": strategy_list(),
        "switch": switch_state(),
        "set_form": set_form or (_set_form_for(editing) if editing else StrategySetForm()),
        "editing": editing,
        "changes": strategy_changes(),
    }
    return render(request, "oms/strategies.html", context, status=400 if request.method == "POST" else 200)
