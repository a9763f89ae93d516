"""What Bitget and Bybit share: a ccxt client pointed at the configured base URL, markets loaded
once (precision and limits), ccxt's errors turned into `BrokerError` kinds.

ccxt signs every request, applies the exchange's rate limit and maps its error codes; the
adapters call the exchange's documented endpoints through ccxt's generated methods (one request
per call, so each failure mode is known), and read the answers themselves.
"""

from __future__ import annotations

import threading
import time
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal

import ccxt
from django.conf import settings

from oms.brokers.base import Broker, BrokerError, EntryRefused, Fill, OrderNotFound


def as_decimal(value, default: Decimal | None = None) -> Decimal | None:
    if value in (None, ""):
        return default
    return Decimal(str(value))


def translate(exc: Exception, *, sending: bool = False) -> BrokerError:
    """A ccxt error as a BrokerError; never carries a key (ccxt's messages hold the URL and body only)."""
    message = f"{type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(exc, ccxt.OrderNotFound):
        return OrderNotFound(message)
    if isinstance(exc, (ccxt.AuthenticationError, ccxt.PermissionDenied, ccxt.AccountSuspended)):
        return BrokerError(message, kind="auth")
    if isinstance(exc, (ccxt.RateLimitExceeded, ccxt.DDoSProtection)):
        return BrokerError(message, kind="rate_limited")
    if isinstance(exc, ccxt.InsufficientFunds):
        return BrokerError(f"insufficient balance ({message})", kind="refused")
    if isinstance(exc, (ccxt.InvalidOrder, ccxt.BadRequest, ccxt.BadSymbol)):
        return BrokerError(message, kind="refused")
    if isinstance(exc, ccxt.RequestTimeout):
        return BrokerError(message, kind="unavailable", maybe_sent=sending)
    if isinstance(exc, (ccxt.NetworkError, ccxt.ExchangeNotAvailable)):
        # Connection refused before sending is "not sent"; ccxt cannot always tell, so a send is unknown.
        return BrokerError(message, kind="unavailable", maybe_sent=sending)
    return BrokerError(message, kind="unavailable" if not sending else "refused")


class CcxtBroker(Broker):
    FILL_WAIT_SEC = 2.0
    is_paper = False
    ccxt_class: type = ccxt.Exchange
    live_base_url = ""
    demo_base_url = ""
    order_sides: tuple[str, str] = ("buy", "sell")  # the exchange's words for buy and sell

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.client = self.ccxt_class(self.client_config())
        # Currencies are not needed (and are a private, slow call on some exchanges).
        self.client.has = {**self.client.has, "fetchCurrencies": False}
        self.setup_client()
        base = self.base_url()
        self.client.urls["api"] = {key: base for key in self.client.urls["api"]}
        self._markets_lock = threading.Lock()

    # --- orders ------------------------------------------------------------------------------
    def _order(
        self,
        *,
        symbol: str,
        side: str,
        qty: Decimal,
        client_order_id: str,
        reduce_only: bool,
        tp_price: Decimal | None = None,
        sl_price: Decimal | None = None,
    ) -> Fill:
        """Send one market order (`side` in the exchange's words), with TP/SL attached when given."""
        raise NotImplementedError

    def open(self, *, symbol, side, qty, price, client_order_id, tp_price, sl_price) -> Fill:
        buy, sell = self.order_sides
        return self._order(
            symbol=symbol,
            side=buy if side == "long" else sell,
            qty=qty,
            client_order_id=client_order_id,
            reduce_only=False,
            tp_price=tp_price,
            sl_price=sl_price,
        )

    def close(self, *, symbol, side, qty, price=None, client_order_id) -> Fill:
        buy, sell = self.order_sides
        return self._order(
            symbol=symbol,
            side=sell if side == "long" else buy,
            qty=qty,
            client_order_id=client_order_id,
            reduce_only=True,
        )

    # --- configuration ---------------------------------------------------------------------
    def client_config(self) -> dict:
        return {"timeout": int(settings.BROKER_HTTP_TIMEOUT * 1000), "enableRateLimit": True}

    def setup_client(self) -> None:
        """Exchange-specific options (demo mode, market types)."""

    def configured_base_url(self) -> str:
        raise NotImplementedError

    def base_url(self) -> str:
        configured = self.configured_base_url().rstrip("/")
        if self.mode == "demo" and configured == self.live_base_url and self.demo_base_url:
            return self.demo_base_url
        return configured

    # --- markets ---------------------------------------------------------------------------
    def market(self, symbol: str) -> dict:
        with self._markets_lock:
            try:
                self.client.load_markets()
            except ccxt.BaseError as exc:
                raise translate(exc) from exc
        for market in self.client.markets_by_id.get(symbol, []):
            if market.get("swap") and market.get("linear"):
                return market
        raise EntryRefused(f"{symbol} is not a USDT-margined perpetual on {self.name}")

    def stop_level(self, *, symbol: str, side: str, price: Decimal) -> Decimal:
        tick = as_decimal(self.market(symbol)["precision"]["price"])
        if not tick:
            return price
        rounding = ROUND_CEILING if side == "long" else ROUND_FLOOR
        return ((price / tick).to_integral_value(rounding=rounding) * tick).normalize()

    def lot_qty(self, *, symbol: str, qty: Decimal) -> Decimal:
        market = self.market(symbol)
        step = as_decimal(market["precision"]["amount"])
        rounded = (qty / step).to_integral_value(rounding=ROUND_DOWN) * step if step else qty
        minimum = as_decimal(market["limits"]["amount"].get("min"), Decimal("0"))
        if rounded <= 0 or rounded < minimum:
            raise EntryRefused(f"qty {qty} is below the minimum order size {minimum} of {symbol} on {self.name}")
        return rounded

    def entry_qty(self, *, symbol: str, qty: Decimal, price: Decimal) -> Decimal:
        rounded = self.lot_qty(symbol=symbol, qty=qty)
        market = self.market(symbol)
        min_cost = as_decimal((market["limits"].get("cost") or {}).get("min"), Decimal("0"))
        if rounded * price < min_cost:
            raise EntryRefused(
                f"order value {rounded * price} USDT is below the minimum {min_cost} USDT of {symbol} on {self.name}"
            )
        if rounded * price > settings.LIVE_MAX_NOTIONAL_USDT:
            raise EntryRefused(
                f"order value {rounded * price} USDT is above LIVE_MAX_NOTIONAL_USDT {settings.LIVE_MAX_NOTIONAL_USDT}"
            )
        return rounded.normalize()

    def price_str(self, symbol: str, price: Decimal) -> str:
        market = self.market(symbol)
        return self.client.price_to_precision(market["symbol"], float(price))

    def settled(self, *, symbol: str, client_order_id: str) -> Fill:
        """The order just sent, read back by its client id until it is no longer `submitted` (a
        market order fills at once; this waits up to FILL_WAIT_SEC for the exchange to say so)."""
        deadline = time.monotonic() + self.FILL_WAIT_SEC
        while True:
            fill = self.lookup(symbol=symbol, client_order_id=client_order_id)
            if fill.status != "submitted" or time.monotonic() > deadline:
                return fill
            time.sleep(0.2)

    def place(self, method: str, body: dict, *, symbol: str, client_order_id: str) -> Fill:
        """Send an order, then read it back. Once the exchange accepted it, a failed read-back (down,
        rate limited, not indexed yet) is an `accepted` BrokerError of kind `unavailable`: the caller
        looks it up again by its client id and never sends it a second time."""
        self.call(method, body, sending=True)
        try:
            return self.settled(symbol=symbol, client_order_id=client_order_id)
        except BrokerError as exc:
            raise BrokerError(
                f"order {client_order_id} accepted, read-back failed: {exc.message}", kind="unavailable", accepted=True
            ) from exc

    def call(self, method: str, params: dict, *, sending: bool = False) -> dict:
        try:
            return getattr(self.client, method)(params)
        except ccxt.BaseError as exc:
            raise translate(exc, sending=sending) from exc
