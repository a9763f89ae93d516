"""Hypothesis: the signal validator never fails in an unplanned way, and the paper arithmetic holds."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.test import override_settings
from django.utils import timezone
from hypothesis import given, settings
from hypothesis import strategies as st

from oms.amounts import MAX_NOTIONAL
from oms.models import Position
from oms.pnl import fee_for, gross_pnl, levels_from_pct, slipped_close_price
from oms.services.closing import close_values
from oms.signal_input import MAX_PRICE, QUANT, SYMBOL_RE, BounceSignal, SignalInvalid, parse_bounce_signal

JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True) | st.text()
JSON = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
FIELDS = [
    "symbol",
    "side",
    "price",
    "timestamp",
    "exchange",
    "timeframe_min",
    "strategy",
    "tp_pct",
    "sl_pct",
    "qty",
    "signal_id",
    "exit_strategy",
]
PLAUSIBLE = {
    "symbol": st.sampled_from(["BTCUSDT", "btcusdt", "ETH", "BTC/USDT", "", "X" * 31, "1INCHUSDT"]) | st.text(),
    "side": st.sampled_from(["BUY", "sell", "Long", "SHORT", "up", ""]) | st.text(max_size=12),
    "price": st.floats(allow_nan=True, allow_infinity=True) | st.integers() | st.decimals().map(str) | st.booleans(),
    "timestamp": st.sampled_from(
        [
            "2025-06-19T10:15:00Z",
            "2025-06-19 10:15:00",
            "2025-06-19T10:15:00+02:00",
            "2025-13-40T99:00:00Z",
            "yesterday",
        ]
    )
    | st.text(max_size=70),
    "tp_pct": st.floats(allow_nan=True, allow_infinity=True) | st.none() | st.integers(-5, 200),
    "sl_pct": st.floats(allow_nan=True, allow_infinity=True) | st.none() | st.integers(-5, 200),
    "qty": st.floats(allow_nan=True, allow_infinity=True) | st.none() | st.integers(-5, 10**13),
    "timeframe_min": st.integers() | st.sampled_from(["5m", "5", 5.0, None]),
    "exchange": st.sampled_from(["bitget", "BYBIT", "bad exchange!", ""]) | st.text(max_size=40),
}
BODIES = st.fixed_dictionaries({}, optional={name: PLAUSIBLE.get(name, JSON) for name in FIELDS}) | JSON


@settings(max_examples=400, deadline=None)
@given(body=BODIES)
def test_the_signal_validator_only_ever_raises_signal_invalid_and_normalises_what_it_accepts(body):
    try:
        signal = parse_bounce_signal(body)
    except SignalInvalid as exc:
        assert isinstance(exc.errors, dict) and exc.errors
        return
    assert isinstance(signal, BounceSignal)
    assert SYMBOL_RE.match(signal.symbol) and signal.symbol == signal.symbol.upper()
    assert signal.side in ("long", "short")
    assert isinstance(signal.price, Decimal) and Decimal(0) < signal.price < MAX_PRICE and signal.price.is_finite()
    assert signal.timestamp.tzinfo is not None and signal.timestamp.utcoffset().total_seconds() == 0
    assert Decimal(0) < signal.tp_pct < 100 and Decimal(0) < signal.sl_pct < 100
    assert signal.qty > 0 and signal.qty.is_finite()
    assert signal.exchange == signal.exchange.lower() and signal.exchange
    assert isinstance(signal.timeframe_min, int) and not isinstance(signal.timeframe_min, bool)
    assert len(signal.dedupe_key) <= 128
    # What it accepts the book can hold exactly, and its levels stay strictly on their sides (issue #9).
    assert signal.price == signal.price.quantize(QUANT) and signal.qty == signal.qty.quantize(QUANT)
    assert signal.price * signal.qty <= MAX_NOTIONAL
    tp, sl = (
        level.quantize(QUANT)
        for level in levels_from_pct(side=signal.side, price=signal.price, tp_pct=signal.tp_pct, sl_pct=signal.sl_pct)
    )
    assert tp > 0 and sl > 0 and ((sl < signal.price < tp) if signal.side == "long" else (tp < signal.price < sl))


PRICES = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("10000000"), places=8)
QTYS = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("1000000"), places=8)
PCTS = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("99.99"), places=2)
SIDES = st.sampled_from(["long", "short"])


@given(entry=PRICES, close=PRICES, qty=QTYS)
def test_a_short_earns_exactly_what_a_long_loses_on_the_same_move(entry, close, qty):
    long = gross_pnl(side="long", entry_price=entry, close_price=close, qty=qty)
    short = gross_pnl(side="short", entry_price=entry, close_price=close, qty=qty)
    assert long == -short
    assert (long > 0) == (close > entry) and (short > 0) == (close < entry)


# Levels are stored with 10 decimal places: below a price of about 1e-6 a 0.01 % level can round onto
# the entry price itself (found by this test; docs/RELIABILITY.md), so the stored-level property is
# stated for prices from 0.0001 up.
STORABLE_PRICES = st.decimals(min_value=Decimal("0.0001"), max_value=Decimal("10000000"), places=8)


@given(price=STORABLE_PRICES, tp=PCTS, sl=PCTS)
def test_levels_sit_on_the_right_side_and_mirror_between_long_and_short(price, tp, sl):
    long_tp, long_sl = levels_from_pct(side="long", price=price, tp_pct=tp, sl_pct=sl)
    short_tp, short_sl = levels_from_pct(side="short", price=price, tp_pct=tp, sl_pct=sl)
    assert long_sl < price < long_tp and short_tp < price < short_sl
    assert long_tp - price == price - short_tp and price - long_sl == short_sl - price
    # What the intake stores: quantized to the column's 10 places, still on the right side.
    assert long_tp.quantize(QUANT) > price and short_tp.quantize(QUANT) < price


@given(side=SIDES, price=PRICES, bps=st.decimals(min_value=0, max_value=500, places=2))
def test_slippage_always_moves_the_fill_against_the_position(side, price, bps):
    fill = slipped_close_price(side=side, price=price, slippage_bps=bps)
    assert (fill <= price) if side == "long" else (fill >= price)
    assert abs(fill - price) == price * bps / Decimal(10000)


@settings(max_examples=200, deadline=None)
@given(
    side=SIDES,
    entry=PRICES,
    close=PRICES,
    qty=QTYS,
    rate=st.decimals(min_value=0, max_value="0.01", places=6),
    bps=st.decimals(min_value=0, max_value=100, places=2),
)
def test_fees_and_slippage_only_ever_reduce_the_booked_pnl(side, entry, close, qty, rate, bps):
    now = timezone.now()
    position = Position(
        side=side, entry_price=entry, qty=qty, created_at=now, fee=fee_for(price=entry, qty=qty, rate=rate)
    )
    with override_settings(PAPER_FEE_RATE=Decimal(0), PAPER_SLIPPAGE_BPS=Decimal(0)):
        frictionless = close_values(
            position=Position(side=side, entry_price=entry, qty=qty, created_at=now),
            price=close,
            reason="manual",
            now=now,
        )
    with override_settings(PAPER_FEE_RATE=rate, PAPER_SLIPPAGE_BPS=bps):
        real = close_values(position=position, price=close, reason="manual", now=now)
    assert frictionless["pnl"] == gross_pnl(side=side, entry_price=entry, close_price=close, qty=qty)
    assert real["pnl"] <= frictionless["pnl"]
    assert (
        real["fee"] >= 0
        and real["pnl"]
        == gross_pnl(side=side, entry_price=entry, close_price=real["close_price"], qty=qty) - real["fee"]
    )
    assert all(isinstance(real[k], Decimal) for k in ("pnl", "fee", "close_price"))


@given(st.floats(allow_nan=False, allow_infinity=False, min_value=1e-6, max_value=1e9))
def test_a_float_price_becomes_the_decimal_of_its_shortest_repr_not_its_binary_expansion(value):
    body = {"symbol": "BTCUSDT", "side": "BUY", "price": value, "timestamp": "2025-06-19T10:15:00Z"}
    if Decimal(repr(value)) != Decimal(repr(value)).quantize(QUANT):
        # More than 10 decimal places: the column would round it, so it is refused, not rounded (issue #9).
        with pytest.raises(SignalInvalid) as refused:
            parse_bounce_signal(body)
        assert "price" in refused.value.errors
        return
    signal = parse_bounce_signal(body)
    assert signal.price == Decimal(repr(value)) and math.isclose(float(signal.price), value)
    assert signal.timestamp == datetime(2025, 6, 19, 10, 15, tzinfo=UTC)
