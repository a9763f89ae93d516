"""Opening paper positions; closing them at market through the one close path (`closing.py`)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from decimal import Decimal
from functools import cache

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone

from lomsite.jsonlog import log_event
from lomsite.rowsql import row_by, row_insert, sql_decimal
from oms.exceptions import (
    ExchangeCloseFailed,
    OmsDisabled,
    PositionCloseFailed,
    PositionNotFound,
    PriceUnavailable,
    RiskLimitExceeded,
)
from oms.models import (
    STOP_LOSS_REASONS,
    BrokerMode,
    CloseReason,
    ExitStrategy,
    MarketType,
    OmsControl,
    Order,
    OrderPurpose,
    OrderStatus,
    Position,
    PositionStatus,
    Side,
    TradeSide,
)
from oms.pnl import fee_for
from oms.services.book import book_changed
from oms.services.closing import CloseInstruction, close_positions
from oms.services.figures import book_figures_record_one_open
from oms.services.operator_audit import Operator, position_close_details
from oms.services.sizing import risk_sized_qty
from oms.services.strategies import strategy_exposure_room, strategy_gate, strategy_limits_enforce
from oms.services.switch import switch_state
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
    size_by_risk: bool = False  # a signal: RISK_PER_TRADE_PCT, when set, replaces `qty` (oms/services/sizing.py)


@dataclass(frozen=True)
class OpenedPosition:
    position: Position
    order: Order


def lock_oms_control() -> OmsControl:
    """Lock the switch row: every position open runs one at a time behind it (no-op lock on
    SQLite, where the IMMEDIATE transaction already holds the database write lock)."""
    control = row_by(OmsControl, "id", 1, lock=True)  # on every signal: SQL built once (lomsite/rowsql.py)
    if control is None:  # created by migration 0002; recreated if someone deleted it
        OmsControl.load()
        control = row_by(OmsControl, "id", 1, lock=True)
    return control


@cache
def _open_figures_statement(vendor: str) -> str:
    """Open positions: how many, how many of one symbol, their notional at entry (the covering
    index `position_exposure` answers it without reading the table)."""
    quote = connection.ops.quote_name
    symbol, status, price, qty = (
        quote(Position._meta.get_field(name).column) for name in ("symbol", "status", "entry_price", "qty")
    )
    return (
        f"SELECT COUNT(*), SUM(CASE WHEN {symbol} = %s THEN 1 ELSE 0 END), SUM({price} * {qty}) "
        f"FROM {quote(Position._meta.db_table)} WHERE {status} = %s"
    )


def exposure_snapshot(*, symbol: str, limits: RiskLimits, now: datetime) -> ExposureSnapshot:
    """Open counts and notional (one query), plus today's counts and the last SL only when limited."""
    with connection.cursor() as cursor:  # on every signal, behind the OMS lock: SQL built once (lomsite/rowsql.py)
        cursor.execute(_open_figures_statement(connection.vendor), [symbol, PositionStatus.OPEN.value])
        total_open, symbol_open, notional = cursor.fetchone()
    positions_today = symbol_positions_today = 0
    if limits.max_positions_per_day is not None or limits.max_positions_per_day_per_symbol is not None:
        day_start = now.replace(hour=0, minute=0, second=0, microsecond=0)
        today = Position.objects.filter(created_at__gte=day_start).aggregate(
            total=Count("id"), symbol=Count("id", filter=Q(symbol=symbol))
        )
        positions_today, symbol_positions_today = today["total"], today["symbol"]
    last_sl_at = None
    if limits.sl_cooldown_min:
        since = now - timedelta(minutes=limits.sl_cooldown_min)
        last_sl_at = Position.objects.filter(
            symbol=symbol, auto_close_reason__in=STOP_LOSS_REASONS, closed_at__gte=since
        ).aggregate(last=Max("closed_at"))["last"]
    return ExposureSnapshot(
        total_open=total_open,
        symbol_open=symbol_open or 0,
        total_open_notional=sql_decimal(notional),
        positions_today=positions_today,
        symbol_positions_today=symbol_positions_today,
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
    strategy_limits = strategy_gate(request.strategy, symbol=request.symbol)  # issue #12 §5: its own switch
    exchange_mode = settings.BROKER_MODE != "paper"
    limits = RiskLimits.from_settings()
    exposure = exposure_snapshot(symbol=request.symbol, limits=limits, now=now)
    if request.size_by_risk and settings.RISK_PER_TRADE_PCT is not None:  # sized before the exchange rounds it
        qty = risk_sized_qty(
            epoch=control.epoch,
            entry_price=request.entry_price,
            sl_price=request.sl_price,
            limits=limits,
            exposure=exposure,
            strategy_room=strategy_exposure_room(strategy_limits, now=now),
        )
        request = replace(request, qty=qty)
    if exchange_mode:  # BROKER (#11): the qty the exchange takes (lot size, minimum, LIVE_MAX_NOTIONAL_USDT)
        from oms.services.execution import entry_qty

        request = replace(
            request,
            qty=entry_qty(symbol=request.symbol, qty=request.qty, price=request.entry_price),
            exchange=settings.BROKER_EXCHANGE,
        )  # where the order goes, not the signal's field
    decision = check_risk_limits(request.symbol, request.entry_price, request.qty, exposure=exposure, limits=limits)
    if not decision.ok:
        raise RiskLimitExceeded(decision.reason, decision.scope)
    strategy_limits_enforce(
        strategy_limits, symbol=request.symbol, entry_price=request.entry_price, qty=request.qty, now=now
    )
    position = row_insert(
        Position(
            exchange=request.exchange,
            market_type=MarketType.LINEAR_PERP if exchange_mode else MarketType.PAPER_SIM,
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
    )
    order = row_insert(
        Order(
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
    )
    if exchange_mode:  # BROKER (#11): sent after commit by execution.entry_execute, filled from the exchange
        from oms.services.execution import mark_entry_submitted

        mark_entry_submitted(order)
    book_changed()
    book_figures_record_one_open(position)
    # Logged once the position is committed, never for one that is rolled back.
    transaction.on_commit(
        lambda: log_event(
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
        ),
        robust=True,  # a failing log line never turns a committed open into an error (nor skips other hooks)
    )
    return OpenedPosition(position=position, order=order)


@transaction.atomic
def position_open(*, request: PositionRequest) -> OpenedPosition:
    return position_open_locked(request=request, control=lock_oms_control())


@dataclass(frozen=True)
class CloseResult:
    position: Position
    closed_now: bool  # False: it was already closed (by someone else, or earlier), or only part of it closed
    exited_qty: Decimal = Decimal("0")  # the quantity this call closed: all that was open, or a partial exit


def position_close(
    *,
    position: Position,
    price: Decimal | None,
    reason: str,
    now: datetime | None = None,
    fraction: Decimal | None = None,
) -> CloseResult:
    """Close an open position at `price` (an exchange position: with a reduce-only order, at its
    fill), or, with a `fraction` below 1, that share of what is open (a partial exit). Books the
    close (and its PnL) exactly once; raises `PositionCloseFailed` when this position's close cannot
    be booked (`ExchangeCloseFailed` when the exchange refuses it)."""
    if position.broker_mode != BrokerMode.PAPER:
        from oms.services.execution import exchange_position_close

        closed = exchange_position_close(position=position, reason=reason, now=now, fraction=fraction)
        return CloseResult(
            position=closed.position, closed_now=closed.closed_now, exited_qty=closed.exited_qty or Decimal("0")
        )
    outcome = close_positions([CloseInstruction(position.pk, price, reason, fraction=fraction)], now=now)
    if outcome.failed:
        raise PositionCloseFailed(f"position {position.pk} could not be closed: {outcome.failed[position.pk]}")
    if outcome.closed or outcome.partially_closed:
        booked = (outcome.closed or outcome.partially_closed)[0]
        return CloseResult(position=booked, closed_now=bool(outcome.closed), exited_qty=outcome.exited[booked.pk])
    position.refresh_from_db()
    return CloseResult(position=position, closed_now=False)


def market_price(symbol: str) -> Decimal:
    """The current price of `symbol` from the configured source and price mode (as the auto-close)."""
    try:
        quote = get_price_source().get_quote(symbol)
        return select_price(quote, PriceMode(settings.PRICE_MODE))
    except QuoteError as exc:
        raise PriceUnavailable(f"no usable price for {symbol}: {exc.reason}") from exc


def position_close_at_market(
    *,
    position_id: int,
    reason: str = CloseReason.MANUAL,
    operator: Operator | None = None,
    fraction: Decimal | None = None,
) -> CloseResult:
    """Close one position at the current market price (with a `fraction` below 1: that share of
    what is open); an already closed one is returned as is. With an `operator`, a close made now is
    recorded in the operator audit (action `close`)."""
    try:
        position = Position.objects.get(pk=position_id)
    except Position.DoesNotExist:
        raise PositionNotFound(f"position {position_id} does not exist") from None
    if not position.is_open:
        return CloseResult(position=position, closed_now=False)
    price = None if position.broker_mode != BrokerMode.PAPER else market_price(position.symbol)  # else: the fill
    try:
        result = position_close(position=position, price=price, reason=reason, fraction=fraction)
    except ExchangeCloseFailed:
        booked = Position.objects.get(pk=position.pk)  # an exit order filled in part is booked for what filled
        if operator and booked.closed_qty > position.closed_qty:
            exited = booked.closed_qty - position.closed_qty
            operator.record(
                "close", position=booked, details=position_close_details(booked, via="close", exited_qty=exited)
            )
        raise
    if operator and result.exited_qty:
        details = position_close_details(result.position, via="close", exited_qty=result.exited_qty)
        operator.record("close", position=result.position, details=details)
    return result


@dataclass
class CloseAllResult:
    closed: list[Position] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)  # symbol → why its positions stay open (no price)
    failed_positions: dict[int, str] = field(default_factory=dict)  # position id → why its close failed


def positions_close_at_market(
    *, positions: list[Position], reason: str, operator: Operator | None = None, via: str = "close"
) -> CloseAllResult:
    """Close the given positions at market: one quote per symbol; a bad quote leaves its symbol
    open, a position that cannot be closed stays open alone. With an `operator`, each position
    closed now is recorded in the operator audit (action `close`, `via` what closed it)."""
    result = _positions_close_at_market(positions=positions, reason=reason)
    if operator:
        for position in result.closed:
            operator.record("close", position=position, details=position_close_details(position, via=via))
    return result


def _positions_close_at_market(*, positions: list[Position], reason: str) -> CloseAllResult:
    result = CloseAllResult()
    open_positions = [p for p in positions if p.is_open]
    if not open_positions:
        return result
    symbols = list(dict.fromkeys(p.symbol for p in open_positions))
    prices, result.failed = fetch_prices(get_price_source(), symbols, PriceMode(settings.PRICE_MODE))
    paper = [p for p in open_positions if p.broker_mode == BrokerMode.PAPER]
    outcome = close_positions(CloseInstruction(p.pk, prices[p.symbol][0], reason) for p in paper if p.symbol in prices)
    result.closed, result.failed_positions = outcome.closed, outcome.failed
    for position in open_positions:
        if position.broker_mode == BrokerMode.PAPER:
            continue
        try:  # an exchange position closes at its fill, quote or not; a refusal leaves only it open
            closed = position_close(position=position, price=None, reason=reason)
        except ExchangeCloseFailed as exc:
            result.failed_positions[position.pk] = exc.message
            continue
        if closed.closed_now:
            result.closed.append(closed.position)
    return result


def positions_close_all(
    *, reason: str = CloseReason.PANIC, operator: Operator | None = None, via: str = "close_all"
) -> CloseAllResult:
    """Panic: close every open position at the current price. With an `operator`, each close is
    recorded in the operator audit, and (as `close_all`) the whole action with what stayed open."""
    result = positions_close_at_market(
        positions=list(Position.objects.open()), reason=reason, operator=operator, via=via
    )
    if operator and via == "close_all":
        operator.record(
            "close_all",
            details={
                "closed_ids": [p.pk for p in result.closed],
                "failed": result.failed,
                "failed_positions": {str(k): v for k, v in result.failed_positions.items()},
            },
        )
    return result
