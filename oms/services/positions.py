"""Opening and closing paper positions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, Max, Q, Sum
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.exceptions import ExchangeCloseFailed, OmsDisabled, PositionNotFound, PriceUnavailable, RiskLimitExceeded
from oms.models import (
    STOP_LOSS_REASONS,
    BrokerMode,
    CloseReason,
    ExitStrategy,
    OmsControl,
    Order,
    OrderPurpose,
    OrderStatus,
    Position,
    PositionStatus,
    Side,
    TradeSide,
)
from oms.pnl import fee_for, gross_pnl, slipped_close_price
from oms.services.book import book_changed
from oms.services.switch import switch_state
from oms.services.trips import trips_check_on_commit
from pricing.quotes import PriceMode, QuoteError, select_price
from pricing.sources import fetch_prices, get_price_source
from risk.limits import ExposureSnapshot, RiskLimits, check_risk_limits

logger = logging.getLogger("loms.oms")


@dataclass(frozen=True)
class PositionRequest:
    """A fully validated request to open one position."""

    symbol: str
    side: str
    qty: Decimal
    entry_price: Decimal
    tp_price: Decimal | None
    sl_price: Decimal | None
    exchange: str
    strategy: str = ""
    timeframe_min: int | None = None
    exit_strategy: str = ExitStrategy.TP_SL_STATIC
    external_order_id: str = ""


@dataclass(frozen=True)
class OpenedPosition:
    position: Position
    order: Order


def lock_oms_control() -> OmsControl:
    """Lock the switch row: every position open runs one at a time behind it (no-op lock on
    SQLite, where the IMMEDIATE transaction already holds the database write lock)."""
    try:
        return OmsControl.objects.select_for_update().get(pk=1)
    except OmsControl.DoesNotExist:  # created by migration 0002; recreated if someone deleted it
        OmsControl.load()
        return OmsControl.objects.select_for_update().get(pk=1)


def exposure_snapshot(*, symbol: str, limits: RiskLimits, now: datetime) -> ExposureSnapshot:
    """Open counts and notional (one query), plus today's counts and the last SL only when limited."""
    open_figures = Position.objects.filter(status=PositionStatus.OPEN).aggregate(
        total=Count("id"),
        symbol=Count("id", filter=Q(symbol=symbol)),
        notional=Sum(F("entry_price") * F("qty")),
    )
    signals_today = symbol_signals_today = 0
    if limits.max_signals_per_day is not None or limits.max_signals_per_day_per_symbol is not None:
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        today = Position.objects.filter(created_at__gte=day_start).aggregate(
            total=Count("id"), symbol=Count("id", filter=Q(symbol=symbol))
        )
        signals_today, symbol_signals_today = today["total"], today["symbol"]
    last_sl_at = None
    if limits.sl_cooldown_min:
        since = now - timedelta(minutes=limits.sl_cooldown_min)
        last_sl_at = Position.objects.filter(
            symbol=symbol, auto_close_reason__in=STOP_LOSS_REASONS, closed_at__gte=since
        ).aggregate(last=Max("closed_at"))["last"]
    return ExposureSnapshot(
        total_open=open_figures["total"],
        symbol_open=open_figures["symbol"],
        total_open_notional=open_figures["notional"] or Decimal("0"),
        signals_today=signals_today,
        symbol_signals_today=symbol_signals_today,
        last_symbol_sl_at=last_sl_at,
        now=now,
    )


def position_open_locked(
    *, request: PositionRequest, control: OmsControl, now: datetime | None = None
) -> OpenedPosition:
    """Check the switch and risk limits and insert the entry order and position.

    `control` is the row returned by `lock_oms_control()` in the same transaction: holding that
    lock is what makes the check and the insert one atomic step.
    """
    now = now or timezone.now()
    state = switch_state(control)
    if not state.enabled:
        raise OmsDisabled(state.disabled_reason)
    exchange_mode = settings.BROKER_MODE != "paper"
    if exchange_mode:  # BROKER (#11): the qty the exchange takes (lot size, minimum, LIVE_MAX_NOTIONAL_USDT)
        from oms.services.execution import entry_qty

        request = replace(request, qty=entry_qty(symbol=request.symbol, qty=request.qty, price=request.entry_price))
    limits = RiskLimits.from_settings()
    exposure = exposure_snapshot(symbol=request.symbol, limits=limits, now=now)
    decision = check_risk_limits(request.symbol, request.entry_price, request.qty, exposure=exposure, limits=limits)
    if not decision.ok:
        raise RiskLimitExceeded(decision.reason, decision.scope)
    position = Position.objects.create(
        exchange=request.exchange,
        symbol=request.symbol,
        side=request.side,
        qty=request.qty,
        account_label=control.epoch,  # the current paper book (manage.py new_epoch)
        strategy=request.strategy,
        timeframe_min=request.timeframe_min,
        external_order_id=request.external_order_id,
        entry_price=request.entry_price,
        tp_price=request.tp_price,
        sl_price=request.sl_price,
        fee=fee_for(price=request.entry_price, qty=request.qty, rate=settings.PAPER_FEE_RATE),
        exit_strategy=request.exit_strategy,
        created_at=now,
    )
    order = Order.objects.create(
        position=position,
        exchange=request.exchange,
        symbol=request.symbol,
        side=request.side,
        qty=request.qty,
        price=request.entry_price,
        tp_price=request.tp_price,
        sl_price=request.sl_price,
        status=OrderStatus.FILLED,  # paper orders fill immediately
        purpose=OrderPurpose.ENTRY,
        trade_side=TradeSide.BUY if request.side == Side.LONG else TradeSide.SELL,
        created_at=now,
    )
    if exchange_mode:  # BROKER (#11): sent after commit by execution.entry_execute, filled from the exchange
        from oms.services.execution import mark_entry_submitted

        mark_entry_submitted(order)
    book_changed()
    log_event(
        logger,
        "position_opened",
        position_id=position.pk,
        order_id=order.pk,
        symbol=position.symbol,
        side=position.side,
        qty=position.qty,
        entry_price=position.entry_price,
        tp_price=position.tp_price,
        sl_price=position.sl_price,
        strategy=position.strategy,
    )
    return OpenedPosition(position=position, order=order)


@transaction.atomic
def position_open(*, request: PositionRequest) -> OpenedPosition:
    return position_open_locked(request=request, control=lock_oms_control())


@dataclass(frozen=True)
class CloseResult:
    position: Position
    closed_now: bool  # False: it was already closed (by someone else, or earlier)


def close_values(*, position: Position, price: Decimal, reason: str, now: datetime) -> dict:
    """The column values that close `position` at market `price`: slippage, exit fee, net PnL."""
    close_price = slipped_close_price(side=position.side, price=price, slippage_bps=settings.PAPER_SLIPPAGE_BPS)
    total_fee = position.fee + fee_for(price=close_price, qty=position.qty, rate=settings.PAPER_FEE_RATE)
    pnl = gross_pnl(side=position.side, entry_price=position.entry_price, close_price=close_price, qty=position.qty)
    return {
        "status": PositionStatus.CLOSED,
        "closed_at": max(now, position.created_at),
        "close_price": close_price,
        "fee": total_fee,
        "pnl": pnl - total_fee,
        "auto_close_reason": reason,
    }


def exit_order_for(position: Position) -> Order:
    """The filled market order that records a close (not saved)."""
    return Order(
        position=position,
        exchange=position.exchange,
        symbol=position.symbol,
        side=position.side,
        qty=position.qty,
        price=position.close_price,
        status=OrderStatus.FILLED,
        purpose=OrderPurpose.EXIT,
        trade_side=TradeSide.SELL if position.side == Side.LONG else TradeSide.BUY,
        created_at=position.closed_at,
    )


def log_position_closed(position: Position) -> None:
    log_event(
        logger,
        "position_closed",
        position_id=position.pk,
        symbol=position.symbol,
        side=position.side,
        reason=position.auto_close_reason,
        close_price=position.close_price,
        pnl=position.pnl,
        fee=position.fee,
    )


@transaction.atomic
def position_close(*, position: Position, price: Decimal, reason: str, now: datetime | None = None) -> CloseResult:
    """Close an open position at `price`. Books the close (and its PnL) exactly once."""
    if position.broker_mode != BrokerMode.PAPER:  # BROKER (#11): a reduce-only order; its fill is the close
        from oms.services.execution import exchange_position_close

        outcome = exchange_position_close(position=position, reason=reason, now=now)
        return CloseResult(position=outcome.position, closed_now=outcome.closed_now)
    values = close_values(position=position, price=price, reason=reason, now=now or timezone.now())
    # Conditional update: whoever flips open→closed first wins; a racing close updates nothing.
    updated = Position.objects.filter(pk=position.pk, status=PositionStatus.OPEN).update(**values)
    if updated != 1:
        position.refresh_from_db()
        return CloseResult(position=position, closed_now=False)
    for name, value in values.items():
        setattr(position, name, value)
    exit_order_for(position).save()
    book_changed()
    log_position_closed(position)
    trips_check_on_commit()  # loss limits may turn the switch off once this close is committed
    return CloseResult(position=position, closed_now=True)


def market_price(symbol: str) -> Decimal:
    """The current price of `symbol` from the configured source and price mode (as the auto-close)."""
    try:
        quote = get_price_source().get_quote(symbol)
        return select_price(quote, PriceMode(settings.PRICE_MODE))
    except QuoteError as exc:
        raise PriceUnavailable(f"no usable price for {symbol}: {exc.reason}") from exc


def position_close_at_market(*, position_id: int, reason: str = CloseReason.MANUAL) -> CloseResult:
    """Close one position at the current market price; an already closed one is returned as is."""
    try:
        position = Position.objects.get(pk=position_id)
    except Position.DoesNotExist:
        raise PositionNotFound(f"position {position_id} does not exist") from None
    if not position.is_open:
        return CloseResult(position=position, closed_now=False)
    if position.broker_mode != BrokerMode.PAPER:  # BROKER (#11): the exchange's fill is the price
        return position_close(position=position, price=None, reason=reason)
    return position_close(position=position, price=market_price(position.symbol), reason=reason)


@dataclass
class CloseAllResult:
    closed: list[Position] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # symbol → why its positions stay open


def positions_close_at_market(*, positions: list[Position], reason: str) -> CloseAllResult:
    """Close the given positions at market: one quote per symbol, a bad quote leaves its symbol open."""
    result = CloseAllResult()
    open_positions = [p for p in positions if p.is_open]
    if not open_positions:
        return result
    symbols = list(dict.fromkeys(p.symbol for p in open_positions))
    prices, result.failed = fetch_prices(get_price_source(), symbols, PriceMode(settings.PRICE_MODE))
    for position in open_positions:
        if position.symbol not in prices and position.broker_mode == BrokerMode.PAPER:
            continue  # BROKER (#11): an exchange position closes at its fill, quote or not
        price = prices[position.symbol][0] if position.symbol in prices else None
        try:
            outcome = position_close(position=position, price=price, reason=reason)
        except ExchangeCloseFailed as exc:  # BROKER (#11): a refused exchange close leaves that one open
            result.failed[position.symbol] = exc.message
            continue
        if outcome.closed_now:
            result.closed.append(outcome.position)
    return result


def positions_close_all(*, reason: str = CloseReason.PANIC) -> CloseAllResult:
    """Panic: close every open position at the current price."""
    return positions_close_at_market(positions=list(Position.objects.filter(status=PositionStatus.OPEN)), reason=reason)
