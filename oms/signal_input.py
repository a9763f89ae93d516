"""Parsing and validation of the bot's signal bodies: `POST /signals/bounce` (docs/CONTRACT.md §2), `/signals/exit`
and `/signals/stop` (§2a)."""

from __future__ import annotations

import hashlib
import math
import re
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.conf import settings
from django.utils.dateparse import parse_datetime
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from oms.amounts import (
    MAX_PRICE,
    QUANT,
    amount_error,
    level_distance_errors,
    levels_for_storage,
    position_amount_errors,
)
from oms.models import ExitStrategy, Position

SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,30}$")
SIDES = {"buy": "long", "long": "long", "sell": "short", "short": "short"}
# The bot's id is stored as the position's external_order_id: longer would fail on PostgreSQL.
MAX_SIGNAL_ID = Position._meta.get_field("external_order_id").max_length


@extend_schema_field(OpenApiTypes.NUMBER)
class StrictNumberField(serializers.Field):
    """A JSON number (not a string, not a boolean), finite, as a Decimal, within (minimum, maximum)."""

    default_error_messages = {
        "invalid": "Must be a JSON number.",
        "not_finite": "Must be a finite number.",
        "too_small": "Must be greater than {minimum}.",
        "too_large": "Must be less than {maximum}.",
    }

    def __init__(self, *, minimum: Decimal = Decimal("0"), maximum: Decimal = MAX_PRICE, **kwargs) -> None:
        self.minimum, self.maximum = minimum, maximum
        super().__init__(**kwargs)

    def to_internal_value(self, data: object) -> Decimal:
        if isinstance(data, bool) or not isinstance(data, int | float):
            self.fail("invalid")
        if isinstance(data, float) and not math.isfinite(data):
            self.fail("not_finite")
        value = Decimal(str(data))
        if value <= self.minimum:
            self.fail("too_small", minimum=self.minimum)
        if value >= self.maximum:
            self.fail("too_large", maximum=self.maximum)
        return value

    def to_representation(self, value: Decimal) -> float:
        return float(value)


class StrictIntegerField(serializers.IntegerField):
    """An integer given as a JSON number, never as a string like "5m" or "5"."""

    def to_internal_value(self, data: object) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictCharField(serializers.CharField):
    """A JSON string only (DRF would turn a number into a string)."""

    def to_internal_value(self, data: object) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(OpenApiTypes.DATETIME)
class TimestampField(StrictCharField):
    """An ISO-8601 date-time given as a JSON string (parsed by the serializer's `validate_timestamp`)."""


class SymbolField(StrictCharField):
    """A trading symbol, normalised to upper case: `[A-Z0-9]{2,30}`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=60, **kwargs)

    def to_internal_value(self, data: object) -> str:
        symbol = super().to_internal_value(data).upper()
        if not SYMBOL_RE.match(symbol):
            raise serializers.ValidationError("Must be 2-30 letters or digits, e.g. BTCUSDT.")
        return symbol


class SideField(StrictCharField):
    """BUY/SELL/long/short in any case → `long`/`short`."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_length=10, **kwargs)

    def to_internal_value(self, data: object) -> str:
        try:
            return SIDES[super().to_internal_value(data).lower()]
        except KeyError:
            raise serializers.ValidationError("Must be one of BUY, SELL, long, short.") from None


class BounceSignalSerializer(serializers.Serializer):
    symbol = SymbolField()
    side = SideField()
    price = StrictNumberField()
    timestamp = TimestampField(max_length=64)
    exchange = StrictCharField(max_length=32, required=False)
    timeframe_min = StrictIntegerField(required=False, min_value=1, max_value=100_000)
    strategy = StrictCharField(max_length=64, required=False)
    tp_pct = StrictNumberField(required=False, allow_null=True, maximum=Decimal("100"))
    sl_pct = StrictNumberField(required=False, allow_null=True, maximum=Decimal("100"))
    qty = StrictNumberField(required=False, allow_null=True)
    signal_id = StrictCharField(required=False, allow_null=True, max_length=MAX_SIGNAL_ID)
    exit_strategy = serializers.ChoiceField(choices=ExitStrategy.choices, required=False)

    def validate_timestamp(self, value: str) -> datetime:
        try:
            parsed = parse_datetime(value.strip())
        except ValueError:
            parsed = None
        if parsed is None:
            raise serializers.ValidationError("Must be an ISO-8601 date-time, e.g. 2025-06-19T10:15:00Z.")
        try:
            return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)
        except OverflowError:  # e.g. 9999-12-31T23:59:59-23:59 is past the last representable instant
            raise serializers.ValidationError("Must be a date-time between the years 1 and 9999 in UTC.") from None

    def validate_exchange(self, value: str) -> str:
        exchange = value.strip().lower()
        if not re.match(r"^[a-z0-9_.-]{1,32}$", exchange):
            raise serializers.ValidationError("Must be a short exchange name, e.g. bitget.")
        return exchange


@dataclass(frozen=True)
class BounceSignal:
    symbol: str
    side: str
    price: Decimal
    timestamp: datetime
    exchange: str
    timeframe_min: int
    strategy: str
    tp_pct: Decimal
    sl_pct: Decimal
    qty: Decimal
    signal_id: str | None
    exit_strategy: str

    @property
    def dedupe_key(self) -> str:
        """The bot's own id when it sent one, else a hash of what makes two signals the same."""
        if self.signal_id:
            return f"id:{self.signal_id}"
        identity = "|".join(
            [self.symbol, self.side, self.strategy, str(self.timeframe_min), self.exchange, self.timestamp.isoformat()]
        )
        return "k:" + hashlib.sha256(identity.encode()).hexdigest()


class SignalInvalid(Exception):
    def __init__(self, errors: dict) -> None:
        super().__init__(str(errors))
        self.errors = errors


def default_qty(price: Decimal) -> Decimal:
    """Sizing: DEFAULT_NOTIONAL_USDT / price when that is set, else DEFAULT_QTY."""
    if settings.DEFAULT_NOTIONAL_USDT > 0:
        return (settings.DEFAULT_NOTIONAL_USDT / price).quantize(QUANT)
    return settings.DEFAULT_QTY


def non_finite_fields(payload: object) -> list[str]:
    """Where the body holds a number that overflowed to infinity (`1e400`) or NaN, known field or not."""
    found, stack = [], [(payload, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            found.append((path or "body")[:200])
        elif isinstance(value, dict):
            stack.extend((item, f"{path}.{key}" if path else str(key)[:100]) for key, item in value.items())
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{index}]") for index, item in enumerate(value))
    return sorted(found)


def parse_bounce_signal(payload: object, *, idempotency_key: str | None = None) -> BounceSignal:
    """Validate and normalise a signal body; raise SignalInvalid with per-field errors."""
    data = _validated(BounceSignalSerializer, payload, idempotency_key)
    tp_pct = data.get("tp_pct")
    sl_pct = data.get("sl_pct")
    signal = BounceSignal(
        symbol=data["symbol"],
        side=data["side"],
        price=data["price"],
        timestamp=data["timestamp"],
        exchange=data.get("exchange") or settings.DEFAULT_EXCHANGE,
        timeframe_min=data.get("timeframe_min", 5),
        strategy=data.get("strategy") or "bounce_ema10_strict",
        tp_pct=settings.DEFAULT_TP_PCT if tp_pct is None else tp_pct,
        sl_pct=settings.DEFAULT_SL_PCT if sl_pct is None else sl_pct,
        qty=data.get("qty") or default_qty(data["price"]),
        signal_id=data["signal_id"],
        exit_strategy=data.get("exit_strategy") or settings.DEFAULT_EXIT_STRATEGY,
    )
    errors = amount_errors(signal, qty_given=data.get("qty") is not None)
    if errors:
        raise SignalInvalid(errors)
    return signal


def amount_errors(signal: BounceSignal, *, qty_given: bool = True) -> dict[str, list[str]]:
    """The book's amount rule (oms/amounts.py) applied to a signal: price, qty, notional, TP/SL distances
    (value sanity: MIN_TP_SL_PCT .. MAX_TP_PCT / MAX_SL_PCT) and levels."""
    if not qty_given and amount_error(signal.qty):
        return {
            "qty": [
                f"No qty given, and the default sizing gives {signal.qty} at this price, which the book "
                "cannot hold: send a qty."
            ]
        }
    errors = position_amount_errors(
        entry_price=signal.price, qty=signal.qty, tp_price=None, sl_price=None, names={"entry_price": "price"}
    )
    if errors:
        return errors
    errors = level_distance_errors(tp_pct=signal.tp_pct, sl_pct=signal.sl_pct)
    if errors:
        return errors
    (tp, sl), errors = levels_for_storage(
        side=signal.side, price=signal.price, tp_pct=signal.tp_pct, sl_pct=signal.sl_pct
    )
    if errors:
        return errors
    return position_amount_errors(
        entry_price=signal.price,
        qty=signal.qty,
        tp_price=tp,
        sl_price=sl,
        names={"entry_price": "price", "tp_price": "tp_pct", "sl_price": "sl_pct"},
    )


# --- exit and stop signals (`POST /signals/exit`, `POST /signals/stop`, docs/CONTRACT.md §2a) -----------
MAX_POSITION_ID = 2**63 - 1
BREAK_EVEN = "break_even"
DEFAULT_STRATEGY = "bounce_ema10_strict"


@extend_schema_field(
    {"oneOf": [{"type": "number"}, {"type": "string", "enum": [BREAK_EVEN]}], "description": 'a price or "break_even"'}
)
class StopLevelField(serializers.Field):
    """The new stop: a JSON number (a price > 0) or the string "break_even"."""

    default_error_messages = {"invalid": 'Must be a JSON number (a price) or "break_even".'}

    def to_internal_value(self, data: object) -> Decimal | str:
        if data == BREAK_EVEN:
            return BREAK_EVEN
        if isinstance(data, str):
            self.fail("invalid")
        return StrictNumberField().to_internal_value(data)

    def to_representation(self, value: Decimal | str) -> float | str:
        return value if value == BREAK_EVEN else float(value)


class StrictBooleanField(serializers.BooleanField):
    """A JSON boolean only (DRF would read "yes", 1 or "true" as True)."""

    def to_internal_value(self, data: object) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


class PositionTargetSerializer(serializers.Serializer):
    """Which open position a signal is about: `position_id`, or symbol + side (+ strategy + exchange)."""

    position_id = StrictIntegerField(required=False, min_value=1, max_value=MAX_POSITION_ID)
    symbol = SymbolField(required=False)
    side = SideField(required=False)
    strategy = StrictCharField(max_length=64, required=False)
    exchange = StrictCharField(max_length=32, required=False)
    timestamp = TimestampField(max_length=64)
    signal_id = StrictCharField(required=False, allow_null=True, max_length=MAX_SIGNAL_ID)

    validate_timestamp = BounceSignalSerializer.validate_timestamp
    validate_exchange = BounceSignalSerializer.validate_exchange

    def validate(self, data: dict) -> dict:
        if "position_id" not in data and not ("symbol" in data and "side" in data):
            raise serializers.ValidationError(
                {"position_id": ["Give position_id, or symbol and side (with strategy and exchange) of the position."]}
            )
        return data


class ExitSignalSerializer(PositionTargetSerializer):
    fraction = StrictNumberField(required=False, allow_null=True)

    def validate_fraction(self, value: Decimal | None) -> Decimal | None:
        if value is not None and value > 1:
            raise serializers.ValidationError("Must be at most 1 (1 closes the whole position).")
        return value


class StopSignalSerializer(PositionTargetSerializer):
    sl_price = StopLevelField()
    allow_loosen = StrictBooleanField(required=False, default=False)


@dataclass(frozen=True)
class PositionTarget:
    """`position_id`, or the fields of the position; a field the signal did not send is None."""

    position_id: int | None
    symbol: str | None
    side: str | None
    strategy: str | None
    exchange: str | None

    def describe(self) -> str:
        if self.position_id is not None:
            return f"position {self.position_id}"
        return f"symbol={self.symbol} side={self.side} strategy={self.strategy} exchange={self.exchange}"


@dataclass(frozen=True)
class ExitSignal:
    target: PositionTarget
    fraction: Decimal | None  # None or 1: the whole position; else that fraction of what is still open
    timestamp: datetime
    signal_id: str | None

    kind = "exit"

    @property
    def dedupe_key(self) -> str:
        return _action_dedupe_key(self.kind, self.signal_id, self.target, str(self.fraction), self.timestamp)


@dataclass(frozen=True)
class StopSignal:
    target: PositionTarget
    sl_price: Decimal | None  # None: break even
    timestamp: datetime
    signal_id: str | None
    allow_loosen: bool = False

    kind = "stop"

    @property
    def break_even(self) -> bool:
        return self.sl_price is None

    @property
    def dedupe_key(self) -> str:
        level = BREAK_EVEN if self.break_even else str(self.sl_price)
        return _action_dedupe_key(self.kind, self.signal_id, self.target, level, self.timestamp)


def _action_dedupe_key(kind: str, signal_id: str | None, target: PositionTarget, what: str, at: datetime) -> str:
    """Per kind, so an exit never dedupes against the entry (or stop) that carries the same `signal_id`."""
    if signal_id:
        return f"{kind}:id:{signal_id}"
    identity = "|".join(str(part) for part in (*vars(target).values(), what, at.isoformat()))
    return f"{kind}:k:" + hashlib.sha256(identity.encode()).hexdigest()


_serializers = threading.local()


def _serializer(serializer_class: type[serializers.Serializer]) -> serializers.Serializer:
    """This thread's instance of `serializer_class`, built once: building one deep-copies every declared
    field (a tenth of a signal's CPU), while `run_validation` keeps nothing on the instance."""
    built = _serializers.__dict__.setdefault("by_class", {})
    if serializer_class not in built:
        built[serializer_class] = serializer_class()
    return built[serializer_class]


def _validated(serializer_class: type[serializers.Serializer], payload: object, idempotency_key: str | None) -> dict:
    """The validated body plus `signal_id` (the body's, else the Idempotency-Key header); SignalInvalid
    with per-field errors (infinite numbers and an over-long header included)."""
    if not isinstance(payload, dict):
        raise SignalInvalid({"body": ["Must be a JSON object."]})
    try:
        data, errors = _serializer(serializer_class).run_validation(payload), {}
    except serializers.ValidationError as exc:  # what `is_valid()` keeps as `.errors`
        data, errors = {}, dict(exc.detail)
    for path in non_finite_fields(payload):
        errors.setdefault(path, ["Must be a finite number (this one overflows to infinity)."])
    idempotency_key = (idempotency_key or "").strip()
    if len(idempotency_key) > MAX_SIGNAL_ID:
        errors["Idempotency-Key"] = [f"Ensure this header has no more than {MAX_SIGNAL_ID} characters."]
    if errors:
        raise SignalInvalid({"body" if key == "non_field_errors" else key: value for key, value in errors.items()})
    data = dict(data)
    data["signal_id"] = data.get("signal_id") or idempotency_key or None
    return data


def _target(data: dict) -> PositionTarget:
    """By id: only the fields sent are checked against the position. By fields: strategy and exchange
    default as on `/signals/bounce`, so an exit names its position with the fields of its entry."""
    if "position_id" in data:
        return PositionTarget(
            data["position_id"], data.get("symbol"), data.get("side"), data.get("strategy"), data.get("exchange")
        )
    return PositionTarget(
        None,
        data["symbol"],
        data["side"],
        data.get("strategy") or DEFAULT_STRATEGY,
        data.get("exchange") or settings.DEFAULT_EXCHANGE,
    )


def parse_exit_signal(payload: object, *, idempotency_key: str | None = None) -> ExitSignal:
    """Validate and normalise an exit signal body; raise SignalInvalid with per-field errors."""
    data = _validated(ExitSignalSerializer, payload, idempotency_key)
    fraction = data.get("fraction")
    return ExitSignal(
        target=_target(data),
        fraction=None if fraction == 1 else fraction,
        timestamp=data["timestamp"],
        signal_id=data["signal_id"],
    )


def parse_stop_signal(payload: object, *, idempotency_key: str | None = None) -> StopSignal:
    """Validate and normalise a stop signal body; raise SignalInvalid with per-field errors."""
    data = _validated(StopSignalSerializer, payload, idempotency_key)
    level = data["sl_price"]
    if level != BREAK_EVEN and (error := amount_error(level)):
        raise SignalInvalid({"sl_price": [error]})
    return StopSignal(
        target=_target(data),
        sl_price=None if level == BREAK_EVEN else level,
        timestamp=data["timestamp"],
        signal_id=data["signal_id"],
        allow_loosen=data["allow_loosen"],
    )
