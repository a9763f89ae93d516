"""Bybit V5 linear perpetuals through ccxt. Demo trading: Bybit's demo host (api-demo.bybit.com).
One-way position mode (positionIdx 0); symbols are Bybit's ids (BTCUSDT)."""

from __future__ import annotations

from decimal import Decimal

import ccxt
from django.conf import settings

from oms.brokers.base import AccountCheck, ClosedOnExchange, ExchangePosition, Fill, OrderNotFound
from oms.brokers.ccxt_base import CcxtBroker, as_decimal

STATES = {
    "Created": "submitted",
    "New": "submitted",
    "Untriggered": "submitted",
    "PartiallyFilled": "partial",
    "Filled": "filled",
    "Cancelled": "cancelled",
    "PartiallyFilledCanceled": "partial",
    "Rejected": "rejected",
    "Deactivated": "cancelled",
}


class BybitBroker(CcxtBroker):
    name = "bybit"
    order_sides = ("Buy", "Sell")  # the exchange's words for buy and sell
    ccxt_class = ccxt.bybit
    live_base_url = "https://api.bybit.com"
    demo_base_url = "https://api-demo.bybit.com"

    def client_config(self) -> dict:
        return {
            **super().client_config(),
            "apiKey": settings.BYBIT_API_KEY,
            "secret": settings.BYBIT_API_SECRET,
            "options": {"fetchMarkets": {"types": ["linear"]}, "defaultType": "swap"},
        }

    def configured_base_url(self) -> str:
        return settings.BYBIT_BASE_URL

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
        body = {
            "category": "linear",
            "symbol": symbol,
            "side": side,
            "orderType": "Market",
            "qty": format(qty, "f"),
            "orderLinkId": client_order_id,
            "positionIdx": 0,
            "reduceOnly": reduce_only,
        }
        if tp_price is not None or sl_price is not None:
            body["tpslMode"] = "Full"
        if tp_price is not None:
            body.update(takeProfit=self.price_str(symbol, tp_price), tpTriggerBy="MarkPrice")
        if sl_price is not None:
            body.update(stopLoss=self.price_str(symbol, sl_price), slTriggerBy="MarkPrice")
        return self.place("privatePostV5OrderCreate", body, symbol=symbol, client_order_id=client_order_id)

    def lookup(self, *, symbol: str, client_order_id: str) -> Fill:
        query = {"category": "linear", "symbol": symbol, "orderLinkId": client_order_id}
        rows = (self.call("privateGetV5OrderRealtime", query).get("result") or {}).get("list") or []
        if not rows:  # closed orders leave the realtime list after a while
            rows = (self.call("privateGetV5OrderHistory", query).get("result") or {}).get("list") or []
        if not rows:
            raise OrderNotFound(f"no order {client_order_id} on bybit")
        row = rows[0]
        filled = as_decimal(row.get("cumExecQty"), Decimal("0"))
        status = STATES.get(row.get("orderStatus", ""), "submitted")
        if status == "cancelled" and filled > 0:
            status = "partial"
        return Fill(
            status=status,
            price=as_decimal(row.get("avgPrice")) if filled else None,
            qty=filled,
            fee=abs(as_decimal(row.get("cumExecFee"), Decimal("0"))),
            exchange_order_id=str(row.get("orderId", "")),
            client_order_id=client_order_id,
        )

    def positions(self) -> list[ExchangePosition]:
        rows = (
            self.call("privateGetV5PositionList", {"category": "linear", "settleCoin": "USDT"}).get("result") or {}
        ).get("list") or []
        return [
            ExchangePosition(
                symbol=r["symbol"],
                side="long" if r.get("side") == "Buy" else "short",
                qty=as_decimal(r["size"]),
                entry_price=as_decimal(r.get("avgPrice")),
            )
            for r in rows
            if as_decimal(r.get("size"), Decimal("0")) > 0
        ]

    def open_orders(self) -> list[dict]:
        rows = (
            self.call("privateGetV5OrderRealtime", {"category": "linear", "settleCoin": "USDT", "openOnly": 0}).get(
                "result"
            )
            or {}
        ).get("list") or []
        return [
            {"symbol": r.get("symbol"), "client_order_id": r.get("orderLinkId"), "exchange_order_id": r.get("orderId")}
            for r in rows
        ]

    def cancel_all(self) -> None:
        self.call("privatePostV5OrderCancelAll", {"category": "linear", "settleCoin": "USDT"}, sending=True)

    def last_close(self, *, symbol: str, side: str, since_ms: int) -> ClosedOnExchange | None:
        rows = (
            self.call(
                "privateGetV5PositionClosedPnl", {"category": "linear", "symbol": symbol, "startTime": since_ms}
            ).get("result")
            or {}
        ).get("list") or []
        rows = [r for r in rows if int(r.get("updatedTime", 0)) >= since_ms]
        if not rows:
            return None
        row = max(rows, key=lambda r: int(r.get("updatedTime", 0)))
        return ClosedOnExchange(
            symbol=symbol,
            side=side,
            qty=as_decimal(row.get("closedSize") or row.get("qty")),
            close_price=as_decimal(row["avgExitPrice"]),
            close_fee=abs(as_decimal(row.get("closeFee"), Decimal("0"))),
            closed_at_ms=int(row["updatedTime"]),
        )

    def move_stop(self, *, symbol: str, side: str, sl_price: Decimal) -> None:
        self.call(
            "privatePostV5PositionTradingStop",
            {
                "category": "linear",
                "symbol": symbol,
                "positionIdx": 0,
                "tpslMode": "Full",
                "stopLoss": self.price_str(symbol, sl_price),
                "slTriggerBy": "MarkPrice",
            },
            sending=True,
        )

    def account_check(self, symbols: list[str]) -> AccountCheck:
        check = AccountCheck()
        wallets = (self.call("privateGetV5AccountWalletBalance", {"accountType": "UNIFIED"}).get("result") or {}).get(
            "list"
        ) or []
        check.equity_usdt = as_decimal(wallets[0].get("totalEquity"), Decimal("0")) if wallets else Decimal("0")
        key = self.call("privateGetV5UserQueryApi", {}).get("result") or {}
        permissions = key.get("permissions") or {}
        check.withdraw_permission = any(
            "withdraw" in str(p).lower() for perms in permissions.values() for p in (perms or [])
        )
        for symbol in symbols:
            rows = (
                self.call("privateGetV5PositionList", {"category": "linear", "symbol": symbol}).get("result") or {}
            ).get("list") or []
            check.one_way_mode = (check.one_way_mode is not False) and all(
                int(r.get("positionIdx", 0)) == 0 for r in rows
            )
            row = rows[0] if rows else {}
            check.symbols[symbol] = {
                "margin_mode": "isolated" if int(row.get("tradeMode", 0)) == 1 else "cross",
                "leverage": int(as_decimal(row.get("leverage"), Decimal("0"))),
            }
        return check
