"""Admin: read-mostly views of the book. Every state change goes through the services."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from oms.console.templatetags import money
from oms.models import (
    AutoCloseMonitor,
    CloseReason,
    Epoch,
    OmsControl,
    OmsSwitchChange,
    OperatorAction,
    OperatorSource,
    Order,
    Position,
    PositionStatus,
    Signal,
    StrategyControl,
    SwitchSource,
)
from oms.services.operator_audit import Operator
from oms.services.positions import positions_close_at_market
from oms.services.switch import oms_switch_set, switch_state

admin.site.site_header = "LOMS administration"
admin.site.site_title = "LOMS admin"
admin.site.index_title = "Positions, orders, signals and the OMS switch"


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows are written by the services only: no add, change or delete from the admin."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


def _pretty_json(value) -> str:
    return format_html("<pre style='margin:0;white-space:pre-wrap'>{}</pre>", json.dumps(value, indent=2, default=str))


class OrderInline(admin.TabularInline):
    model = Order
    fields = ("id", "purpose", "side", "qty", "price", "status", "created_at")
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "symbol",
        "side",
        "qty",
        "entry_price",
        "status",
        "close_price",
        "pnl_display",
        "auto_close_reason",
        "strategy",
        "exchange",
        "created_at",
        "closed_at",
    )
    list_display_links = ("id", "symbol")
    list_filter = (
        "status",
        "side",
        "auto_close_reason",
        "exchange",
        "strategy",
        "exit_strategy",
        "market_type",
        "created_at",
        "closed_at",
    )
    search_fields = ("=id", "symbol", "strategy", "external_order_id", "external_position_ref", "account_label")
    date_hierarchy = "created_at"
    list_per_page = 50
    show_full_result_count = False  # no COUNT(*) over the whole table on every filtered page
    actions = ["close_selected"]
    inlines = [OrderInline]
    readonly_fields = ("notional", "holding_time", "return_pct", "exit_meta_pretty")
    fieldsets = (
        (
            None,
            {
                "fields": (
                    "symbol",
                    "side",
                    "qty",
                    "status",
                    "exchange",
                    "market_type",
                    "account_label",
                    "strategy",
                    "timeframe_min",
                    "external_order_id",
                    "external_position_ref",
                )
            },
        ),
        (
            "Entry and levels",
            {
                "fields": (
                    "entry_price",
                    "notional",
                    "tp_price",
                    "sl_price",
                    "exit_strategy",
                    "dynamic_tp_price",
                    "dynamic_sl_price",
                    "max_favorable_move",
                    "exit_meta_pretty",
                )
            },
        ),
        (
            "Result",
            {
                "fields": (
                    "created_at",
                    "closed_at",
                    "holding_time",
                    "close_price",
                    "pnl",
                    "fee",
                    "funding",
                    "return_pct",
                    "auto_close_reason",
                )
            },
        ),
    )

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return [f.name for f in Position._meta.fields] + list(self.readonly_fields)

    @admin.display(description="PnL", ordering="pnl")
    def pnl_display(self, obj: Position) -> str:
        if obj.pnl is None:
            return "—"
        colour = "#117a43" if obj.pnl > 0 else "#b42318" if obj.pnl < 0 else "#5f6b7a"
        return format_html('<span style="color:{}">{}</span>', colour, money(obj.pnl))

    @admin.display(description="Notional (USDT)")
    def notional(self, obj: Position):
        return f"{obj.notional:.4f}"

    @admin.display(description="Holding time")
    def holding_time(self, obj: Position) -> str:
        if not obj.closed_at:
            return "open"
        seconds = int((obj.closed_at - obj.created_at).total_seconds())
        return f"{seconds // 3600} h {seconds % 3600 // 60} min {seconds % 60} s"

    @admin.display(description="Return on notional")
    def return_pct(self, obj: Position) -> str:
        if obj.pnl is None or not obj.opened_notional:
            return "—"
        return f"{100 * obj.pnl / obj.opened_notional:.3f} %"

    @admin.display(description="Exit state")
    def exit_meta_pretty(self, obj: Position) -> str:
        return _pretty_json(obj.exit_meta)

    def has_close_position_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("oms.close_position")

    @admin.action(description="Close selected positions at market", permissions=["close_position"])
    def close_selected(self, request: HttpRequest, queryset: QuerySet[Position]) -> None:
        """The same close service as the API and the console: one quote per symbol, reason manual."""
        chosen = list(queryset)
        already = sum(1 for p in chosen if p.status != PositionStatus.OPEN)
        operator = Operator.from_request(request, OperatorSource.ADMIN)
        result = positions_close_at_market(
            positions=chosen, reason=CloseReason.MANUAL, operator=operator, via="admin_action"
        )
        if result.closed:
            total = sum((p.pnl for p in result.closed), start=0)
            self.message_user(
                request, f"Closed {len(result.closed)} position(s), PnL {money(total)} USDT.", messages.SUCCESS
            )
        if already:
            self.message_user(request, f"{already} selected position(s) were not open.", messages.INFO)
        for symbol, why in result.failed.items():
            self.message_user(request, f"{symbol}: not closed ({why}).", messages.ERROR)
        for position_id, why in result.failed_positions.items():
            self.message_user(request, f"#{position_id}: not closed ({why}).", messages.ERROR)


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "symbol",
        "side",
        "purpose",
        "qty",
        "price",
        "status",
        "position_link",
        "exchange",
        "created_at",
    )
    list_filter = ("purpose", "status", "side", "exchange", "created_at")
    search_fields = ("=id", "symbol", "=position__id")
    date_hierarchy = "created_at"
    list_select_related = ("position",)
    show_full_result_count = False

    @admin.display(description="Position", ordering="position_id")
    def position_link(self, obj: Order) -> str:
        if not obj.position_id:
            return "—"
        return format_html('<a href="../position/{}/change/">#{}</a>', obj.position_id, obj.position_id)


@admin.register(OperatorAction)
class OperatorActionAdmin(ReadOnlyAdmin):
    """The operator audit (issue #12 §6): written by the services of each manual action only."""

    list_display = ("id", "at", "actor", "source", "action", "position", "reason")
    list_filter = ("action", "source", "at")
    search_fields = ("=id", "actor", "reason", "=position__id")
    date_hierarchy = "at"


@admin.register(Epoch)
class EpochAdmin(ReadOnlyAdmin):
    """The epochs' starting capitals: written by `new_epoch` (audited) only."""

    list_display = ("name", "starting_capital", "created_at")
    search_fields = ("name",)


@admin.register(Signal)
class SignalAdmin(ReadOnlyAdmin):
    list_display = (
        "id",
        "received_at",
        "kind",
        "symbol",
        "side",
        "strategy",
        "exchange",
        "outcome",
        "short_reason",
        "position_link",
    )
    list_filter = ("kind", "outcome", "exchange", "strategy", "side", "received_at")
    search_fields = ("=id", "symbol", "reason", "dedupe_key", "strategy")
    date_hierarchy = "received_at"
    show_full_result_count = False
    readonly_fields = ("payload_pretty", "response_pretty")
    exclude = ("payload", "response")

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return [f.name for f in Signal._meta.fields if f.name not in ("payload", "response")] + list(
            self.readonly_fields
        )

    @admin.display(description="Reason")
    def short_reason(self, obj: Signal) -> str:
        return obj.reason[:80] + ("…" if len(obj.reason) > 80 else "")

    @admin.display(description="Position", ordering="position_id")
    def position_link(self, obj: Signal) -> str:
        if not obj.position_id:
            return "—"
        return format_html('<a href="../position/{}/change/">#{}</a>', obj.position_id, obj.position_id)

    @admin.display(description="Payload received")
    def payload_pretty(self, obj: Signal) -> str:
        return _pretty_json(obj.payload)

    @admin.display(description="Response sent")
    def response_pretty(self, obj: Signal) -> str:
        return _pretty_json(obj.response)


@admin.register(OmsSwitchChange)
class OmsSwitchChangeAdmin(ReadOnlyAdmin):
    list_display = ("changed_at", "state", "changed_by", "source", "reason")
    list_filter = ("enabled", "source", "changed_at")
    search_fields = ("changed_by", "reason")
    date_hierarchy = "changed_at"

    @admin.display(description="State", boolean=False, ordering="enabled")
    def state(self, obj: OmsSwitchChange) -> str:
        return "ON" if obj.enabled else "OFF"


class OmsControlForm(forms.ModelForm):
    change_reason = forms.CharField(
        max_length=500,
        help_text="Required: recorded in the switch history with your name.",
        widget=forms.TextInput(attrs={"size": 60}),
    )

    class Meta:
        model = OmsControl
        fields = ("enabled",)


@admin.register(OmsControl)
class OmsControlAdmin(admin.ModelAdmin):
    """The switch row. Saving calls `oms_switch_set` (source admin), exactly like the console and API."""

    form = OmsControlForm
    list_display = ("__str__", "effective", "changed_by", "changed_at", "reason")
    readonly_fields = ("effective", "changed_by", "changed_at", "reason")
    fields = ("enabled", "change_reason", "effective", "changed_by", "changed_at", "reason")

    @admin.display(description="Effective (with the environment)")
    def effective(self, obj: OmsControl) -> str:
        state = switch_state(obj)
        if state.forced_off_by_env:
            return "OFF: forced by OMS_ENABLED=false"
        return "ON" if state.enabled else "OFF"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return request.user.has_perm("oms.change_switch")

    def save_model(self, request: HttpRequest, obj: OmsControl, form: forms.ModelForm, change: bool) -> None:
        oms_switch_set(
            enabled=form.cleaned_data["enabled"],
            reason=form.cleaned_data["change_reason"],
            actor=request.user.get_username(),
            source=SwitchSource.ADMIN,
            user=request.user,
        )
        obj.refresh_from_db()


@admin.register(StrategyControl)
class StrategyControlAdmin(ReadOnlyAdmin):
    """Read-only: a strategy is changed on /console/strategies, the API or `strategy_switch` (audited)."""

    list_display = (
        "strategy",
        "enabled",
        "max_open_positions",
        "max_positions_per_day",
        "max_exposure_usdt",
        "changed_by",
        "changed_at",
        "reason",
    )
    search_fields = ("strategy",)


@admin.register(AutoCloseMonitor)
class AutoCloseMonitorAdmin(ReadOnlyAdmin):
    list_display = (
        "__str__",
        "last_sweep_at",
        "sweeps",
        "positions_checked",
        "positions_closed",
        "errors",
        "last_error_at",
    )

    def get_readonly_fields(self, request: HttpRequest, obj=None):
        return [f.name for f in AutoCloseMonitor._meta.fields]
