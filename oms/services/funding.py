"""Funding on open paper positions (issue #12 §8): paper pays what a perpetual on the exchange pays.

When prices come from an exchange's perpetuals (Bybit `linear`, Bitget `usdt-futures`; never the
simulator, a replay or spot) and PAPER_FUNDING is on, `funding_run` (the one-minute schedule
`oms.paper_funding`) books, for every open paper position, each funding time the exchange has
settled since the position opened: `qty × mark price × rate`, paid by a long and received by a
short at a positive rate (`oms.pnl.funding_payment`), added to the position's `fee` (so its net
PnL counts it) and to its running `funding`.

- Public endpoints only: the exchange's funding history (the settled rate of each funding time)
  and one batch of tickers (the mark price). Paper never sends a private request.
- Exactly once: one `PositionFunding` row per (position, funding time), written with the fee in one
  transaction under the position's row lock, after checking the row is not there yet. Running twice,
  or two runs at once, books one payment.
- Never a closed position, never a lost payment: the lock selects the row only while it is open,
  and the fee is written with `UPDATE … WHERE status = 'open'`. The one close path
  (`oms/services/closing.py`) reads the fee under the same lock, so whichever comes second sees the
  other's result. A position closed before its funding time was booked is not charged for it
  (the run comes at most a minute after the exchange settles).
- Catching up: each run reads the latest settled funding times (100 per symbol), so after a restart
  the times missed while nothing ran are booked, once, at the mark price of the catch-up.
- Isolation: one symbol's failed answer or one position's refused row never stops the others;
  failures are logged (`funding_failed`), alerted (kind `funding`) and returned in the task result.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from lomsite.jsonlog import log_event
from oms.amounts import COLUMN_LIMIT, QUANT
from oms.models import BrokerMode, Position, PositionFunding, PositionStatus
from oms.pnl import funding_payment
from oms.selectors import position_qty_held_at
from pricing.funding import FundingError, FundingEvent, funding_source_or_reason
from pricing.quotes import PriceMode
from pricing.sources import fetch_prices

logger = logging.getLogger("loms.oms.funding")


class FundingRefused(Exception):
    """This payment cannot be stored (an amount the columns cannot hold)."""


@dataclass
class FundingRunResult:
    state: str = "ok"  # ok, off
    reason: str = ""  # why it is off
    booked: int = 0
    amount: Decimal = Decimal("0")  # net paid by the book in this run (negative: received)
    failed: dict[str, str] = field(default_factory=dict)  # symbol or position → why

    def as_dict(self) -> dict:
        if self.state == "off":
            return {"state": self.state, "reason": self.reason}
        return {"state": self.state, "booked": self.booked, "amount": str(self.amount), "failed": self.failed}


def funding_run(*, now: datetime | None = None) -> FundingRunResult:
    """Book every settled funding time not yet booked on the open paper positions."""
    now = now or timezone.now()
    source, why_off = funding_source_or_reason()
    if source is None:
        return FundingRunResult(state="off", reason=why_off)
    result = FundingRunResult()
    positions_by_symbol: dict[str, list[Position]] = defaultdict(list)
    for position in Position.objects.open().filter(broker_mode=BrokerMode.PAPER).order_by("id"):
        positions_by_symbol[position.symbol].append(position)
    if not positions_by_symbol:
        return result
    prices, price_failures = fetch_prices(source, list(positions_by_symbol), PriceMode.MARK)
    for symbol, why in price_failures.items():
        result.failed[symbol] = f"no mark price: {why}"
    for symbol, (mark_price, _quote) in prices.items():
        try:
            events = source.funding_history(symbol)
        except FundingError as exc:
            result.failed[symbol] = f"funding history: {exc.reason}"
            continue
        except Exception as exc:  # a parsing bug on one symbol must not stop the others
            logger.exception("funding history of %s failed", symbol)
            result.failed[symbol] = f"funding history: {type(exc).__name__}: {exc}"
            continue
        _book_symbol(positions_by_symbol[symbol], events, mark_price, now, result)
    _report(result)
    return result


def _book_symbol(
    positions: list[Position], events: list[FundingEvent], price: Decimal, now: datetime, result: FundingRunResult
) -> None:
    booked = set(PositionFunding.objects.filter(position__in=positions).values_list("position_id", "funding_time"))
    for position in positions:
        for event in events:
            if not position.created_at < event.time <= now or (position.pk, event.time) in booked:
                continue
            try:
                payment = position_funding_book(position_id=position.pk, event=event, price=price, now=now)
            except Exception as exc:  # this position's row only; the others are still booked
                logger.exception("funding of position %s failed", position.pk)
                result.failed[f"#{position.pk}"] = f"{type(exc).__name__}: {exc}"
                break
            if payment is not None:
                result.booked += 1
                result.amount += payment.amount


@transaction.atomic
def position_funding_book(
    *, position_id: int, event: FundingEvent, price: Decimal, now: datetime | None = None
) -> PositionFunding | None:
    """Book `event` on the position if it is still open and not booked yet; None otherwise."""
    now = now or timezone.now()
    # The row lock (only while open) serialises this with a close and with another run.
    position = Position.objects.select_for_update().open().filter(pk=position_id).first()
    if position is None or position.fundings.filter(funding_time=event.time).exists():
        return None
    # Rate and price as their columns hold them, so the stored row reproduces its amount.
    rate, price = event.rate.quantize(QUANT), price.quantize(QUANT)
    held = position_qty_held_at(position, event.time)  # a partial exit since then does not count
    amount = funding_payment(side=position.side, qty=held, price=price, rate=rate).quantize(QUANT)
    fee, funding = position.fee + amount, position.funding + amount
    if any(abs(value) >= COLUMN_LIMIT for value in (amount, fee, funding)):
        raise FundingRefused(f"funding {amount} does not fit the fee column")
    payment = PositionFunding.objects.create(
        position=position,
        funding_time=event.time,
        rate=rate,
        price=price,
        qty=held,
        amount=amount,
        booked_at=now,
    )
    # Conditional as the close is: never write the fee of a row that is no longer open.
    updated = Position.objects.filter(pk=position.pk, status=PositionStatus.OPEN).update(fee=fee, funding=funding)
    if updated != 1:
        raise RuntimeError(f"position {position.pk} changed under the funding's lock")
    transaction.on_commit(
        lambda: log_event(
            logger,
            "position_funding",
            position_id=position.pk,
            symbol=position.symbol,
            side=position.side,
            funding_time=event.time.isoformat(),
            rate=rate,
            price=price,
            qty=held,
            amount=amount,
        )
    )
    return payment


def _report(result: FundingRunResult) -> None:
    if not result.failed:
        return
    from oms.services.notify import notify_safely

    for what, why in result.failed.items():
        log_event(logger, "funding_failed", level=logging.ERROR, what=what, error=why)
    lines = "\n".join(f"- {what}: {why}" for what, why in sorted(result.failed.items()))
    notify_safely(
        "funding",
        "LOMS paper funding not booked",
        f"Funding could not be booked for {len(result.failed)} symbol(s) or position(s); "
        f"the next run retries:\n{lines}",
        dedupe_key="funding:failed",
    )
