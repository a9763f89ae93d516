"""Input and output shapes of the API. Validation only; the services do the work."""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from rest_framework import serializers

from oms.amounts import amount_error, level_distance_errors, level_distance_pct, position_amount_errors
from oms.models import Order, Position, Side, Signal, SignalKind
from oms.selectors import GROUP_FIELDS
from oms.signal_input import SideField, StrictCharField, StrictNumberField, SymbolField


class PositionSerializer(serializers.ModelSerializer):
    signal_ids = serializers.SerializerMethodField()

    class Meta:
        model = Position
        fields = [
            "id",
            "exchange",
            "market_type",
            "broker_mode",
            "symbol",
            "side",
            "qty",
            "closed_qty",
            "realized_gross_pnl",
            "account_label",
            "strategy",
            "timeframe_min",
            "external_order_id",
            "external_position_ref",
            "entry_price",
            "tp_price",
            "sl_price",
            "status",
            "created_at",
            "closed_at",
            "close_price",
            "pnl",
            "fee",
            "auto_close_reason",
            "exit_strategy",
            "dynamic_tp_price",
            "dynamic_sl_price",
            "max_favorable_move",
            "exit_meta",
            "signal_ids",
        ]

    def get_signal_ids(self, position: Position) -> list[int]:
        """The signals that opened it (exit and stop signals about it are in `GET /signals`)."""
        return [signal.pk for signal in position.signals.all() if signal.kind == SignalKind.ENTRY]


class OrderSerializer(serializers.ModelSerializer):
    class Meta:
        model = Order
        fields = [
            "id",
            "position",
            "exchange",
            "symbol",
            "side",
            "qty",
            "order_type",
            "price",
            "tp_price",
            "sl_price",
            "status",
            "purpose",
            "created_at",
            # issue #11: the buy/sell side, and for exchange orders their ids, fill and error
            "trade_side",
            "reduce_only",
            "client_order_id",
            "exchange_order_id",
            "filled_qty",
            "fee",
            "error",
        ]


class SignalSerializer(serializers.ModelSerializer):
    class Meta:
        model = Signal
        fields = [
            "id",
            "received_at",
            "kind",
            "symbol",
            "side",
            "strategy",
            "exchange",
            "outcome",
            "reason",
            "position",
            "duplicate_of",
            "payload",
            "response",
        ]


class OrderCreateSerializer(serializers.Serializer):
    """`POST /orders`: an order plus its open position with explicit levels."""

    symbol = SymbolField()
    side = SideField()
    qty = StrictNumberField()
    entry_price = StrictNumberField()
    tp_price = StrictNumberField(required=False, allow_null=True)
    sl_price = StrictNumberField(required=False, allow_null=True)
    exchange = StrictCharField(max_length=32, required=False)
    strategy = StrictCharField(max_length=64, required=False, allow_blank=True)

    def validate(self, data: dict) -> dict:
        entry, tp, sl = data["entry_price"], data.get("tp_price"), data.get("sl_price")
        if settings.BROKER_MODE != "paper":  # issue #11: never a real position without an exchange-side stop
            missing = {
                name: f"Required when BROKER_MODE={settings.BROKER_MODE} (the exchange-side TP/SL)."
                for name, value in (("sl_price", sl), ("tp_price", tp))
                if value is None
            }
            if missing:
                raise serializers.ValidationError(missing)
        errors = position_amount_errors(entry_price=entry, qty=data["qty"], tp_price=tp, sl_price=sl)
        if errors:  # what the book's columns cannot hold exactly (oms/amounts.py)
            raise serializers.ValidationError(errors)
        sign = Decimal(1) if data["side"] == Side.LONG else Decimal(-1)
        if tp is not None and (tp - entry) * sign <= 0:
            raise serializers.ValidationError({"tp_price": "Must be on the profit side of entry_price."})
        if sl is not None and (entry - sl) * sign <= 0:
            raise serializers.ValidationError({"sl_price": "Must be on the loss side of entry_price."})
        errors = level_distance_errors(
            tp_pct=level_distance_pct(entry_price=entry, level=tp),
            sl_pct=level_distance_pct(entry_price=entry, level=sl),
            names={"tp_pct": "tp_price", "sl_pct": "sl_price"},
        )
        if errors:  # value sanity (issue #12 §3): the same distances as a signal's tp_pct/sl_pct
            raise serializers.ValidationError(errors)
        return data


class StatsQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    symbol = serializers.CharField(required=False, max_length=30)
    strategy = serializers.CharField(required=False, max_length=64)
    exchange = serializers.CharField(required=False, max_length=32)
    account_label = serializers.CharField(required=False, max_length=64)
    group_by = serializers.ChoiceField(choices=list(GROUP_FIELDS), required=False)


class SwitchSetSerializer(serializers.Serializer):
    enabled = serializers.BooleanField()
    reason = serializers.CharField(max_length=500)


class PositionSettleSerializer(serializers.Serializer):
    """`POST /positions/{id}/settle`: close a stuck position at a price, or void it (issue #12 §7)."""

    price = StrictNumberField(
        required=False, allow_null=True, help_text="the close price (reason manual_price); null or absent with void"
    )
    void = serializers.BooleanField(
        required=False, default=False, help_text="true: cancel the position with no price and no PnL (reason void)"
    )
    reason = StrictCharField(max_length=1000, help_text="why (recorded in the operator audit)")

    def to_internal_value(self, data):
        # A JSON boolean only: DRF's BooleanField would read "yes", 1 or "true" as true.
        if isinstance(data, dict) and "void" in data and not isinstance(data["void"], bool):
            raise serializers.ValidationError({"void": ["Must be a JSON boolean."]})
        return super().to_internal_value(data)

    def validate(self, data: dict) -> dict:
        price, void = data.get("price"), data.get("void", False)
        if void and price is not None:
            raise serializers.ValidationError({"price": "Give either a price or void, not both."})
        if not void and price is None:
            raise serializers.ValidationError({"price": "Give the close price, or void: true."})
        if price is not None and (error := amount_error(price)):
            raise serializers.ValidationError({"price": error})
        return data


class CloseAllSerializer(serializers.Serializer):
    confirm = serializers.CharField()
    reason = serializers.CharField(
        required=False, allow_blank=True, max_length=1000, help_text="why (recorded in the operator audit)"
    )

    def validate_confirm(self, value: str) -> str:
        if value != "CLOSE ALL":
            raise serializers.ValidationError('Type exactly "CLOSE ALL" to confirm.')
        return value
