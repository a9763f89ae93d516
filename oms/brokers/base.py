"""The broker interface: where an order goes once the risk check has let it through (issue #11).

`paper` simulates fills (today's behaviour); `bitget` and `bybit` send real orders (demo or live)
through ccxt. The rest of LOMS talks to a `Broker` and cannot tell them apart, except through
`is_paper` (a paper fill is known at once; an exchange fill arrives after the order was sent).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal


class BrokerError(Exception):
    """An exchange call failed. `kind` says what to do about it:

    - `refused`: the exchange said no (insufficient balance, below minimum, bad order): nothing
      was opened; the signal is answered with the reason.
    - `auth`: the key does not work (revoked, wrong secret, IP not allowed): the switch goes off.
    - `rate_limited`: back off and try later; nothing was sent.
    - `unavailable`: the exchange is down or did not answer; whether an order arrived is unknown
      when `maybe_sent` is true (resolved by looking it up by its client order id, never by
      sending it again).

    `accepted` is true when the exchange took the order and only reading it back failed: the order
    exists (or is about to); it is never sent again and never given up on (issue #11, defect 1).
    """

    def __init__(self, message: str, *, kind: str, maybe_sent: bool = False, accepted: bool = False) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind
        self.maybe_sent = maybe_sent or accepted
        self.accepted = accepted


class OrderNotFound(BrokerError):
    def __init__(self, message: str) -> None:
        super().__init__(message, kind="not_found")


class EntryRefused(Exception):
    """The order cannot be placed as asked (below the market's minimum, above the live cap)."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class Fill:
    """An order's outcome: average fill price, filled quantity and the fee paid (positive: a cost)."""

    status: str  # an OrderStatus value: submitted, partial, filled, cancelled, rejected
    price: Decimal | None
    qty: Decimal
    fee: Decimal
    exchange_order_id: str = ""
    client_order_id: str = ""


@dataclass(frozen=True)
class ExchangePosition:
    symbol: str  # LOMS symbol (exchange id), e.g. BTCUSDT
    side: str  # long / short
    qty: Decimal
    entry_price: Decimal | None


@dataclass(frozen=True)
class ClosedOnExchange:
    """The last close of a symbol's position found in the exchange's position history."""

    symbol: str
    side: str
    qty: Decimal
    close_price: Decimal
    close_fee: Decimal  # the fee of the closing trades of `qty` (the open fee is booked with the entry)
    closed_at_ms: int


@dataclass
class AccountCheck:
    """What the preflight reads from the account (read-only)."""

    equity_usdt: Decimal | None = None
    withdraw_permission: bool | None = None  # None: the exchange does not report permissions
    one_way_mode: bool | None = None
    symbols: dict[str, dict] = field(default_factory=dict)  # symbol → {margin_mode, leverage}


class Broker:
    name = "broker"
    mode = "paper"
    is_paper = True

    def entry_qty(self, *, symbol: str, qty: Decimal, price: Decimal) -> Decimal:
        """The quantity that will be ordered: rounded to the lot size, checked against minimums."""
        return qty

    def stop_level(self, *, symbol: str, side: str, price: Decimal) -> Decimal:
        """`price` on the exchange's price tick, rounded towards the tighter stop (up for a long, down
        for a short): the level the exchange will hold."""
        return price

    def lot_qty(self, *, symbol: str, qty: Decimal) -> Decimal:
        """`qty` rounded down to the lot size; EntryRefused when that is below the minimum order size."""
        return qty

    def open(
        self,
        *,
        symbol: str,
        side: str,
        qty: Decimal,
        price: Decimal,
        client_order_id: str,
        tp_price: Decimal | None,
        sl_price: Decimal | None,
    ) -> Fill:
        raise NotImplementedError

    def close(self, *, symbol: str, side: str, qty: Decimal, price: Decimal | None, client_order_id: str) -> Fill:
        """Close `qty` of a `side` position (reduce-only market order on an exchange)."""
        raise NotImplementedError

    def lookup(self, *, symbol: str, client_order_id: str) -> Fill:
        """The order sent with `client_order_id` (raises OrderNotFound when the exchange never got it)."""
        raise NotImplementedError

    def positions(self) -> list[ExchangePosition]:
        return []

    def open_orders(self) -> list[dict]:
        return []

    def cancel_all(self) -> None:
        return None

    def last_close(self, *, symbol: str, side: str, since_ms: int) -> ClosedOnExchange | None:
        return None

    def move_stop(self, *, symbol: str, side: str, sl_price: Decimal) -> None:
        return None

    def account_check(self, symbols: list[str]) -> AccountCheck:
        return AccountCheck()
