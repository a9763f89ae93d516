"""Bitget USDT-M perpetuals (API v2 mix) through ccxt. Demo trading: the same host with the
`paptrading: 1` header (ccxt's demo mode). One-way position mode; symbols are Bitget's ids (BTCUSDT)."""

from __future__ import annotations

from decimal import Decimal

import ccxt
from django.conf import settings

from oms.brokers.base import AccountCheck, ClosedOnExchange, ExchangePosition, Fill, OrderNotFound
from oms.brokers.ccxt_base import CcxtBroker, as_decimal

PRODUCT = "USDT-FUTURES"
STATES = {
    "live": "submitted",
    "new": "submitted",
    "init": "submitted",
    "partially_filled": "partial",
    "filled": "filled",
    "canceled": "cancelled",
    "cancelled": "cancelled",
}


class BitgetBroker(CcxtBroker):
    name = "bitget"
    order_sides = ("buy", "sell")  # the exchange's words for buy and sell
    ccxt_class = ccxt.bitget
    live_base_url = "https://api.bitget.com"

    def client_config(self) -> dict:
        return {
            **super().client_config(),
            "apiKey": settings.BITGET_API_KEY,
            "secret": settings.BITGET_API_SECRET,
            "password": settings.BITGET_API_PASSPHRASE,
            "options": {"fetchMarkets": {"types": ["swap"]}, "defaultType": "swap", "uta": False},
        }

    def setup_client(self) -> None:
        if self.mode == "demo":
            self.client.set_sandbox_mode(True)  # every request carries the demo header

    def configured_base_url(self) -> str:
        return settings.BITGET_BASE_URL

    def _common(self, symbol: str | None = None) -> dict:
        params = {"productType": PRODUCT, "marginCoin": "USDT"}
        if symbol:
            params["symbol"] = symbol
        return params

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
            **self._common(symbol),
            "marginMode": "crossed" if settings.LIVE_MARGIN_MODE == "cross" else "isolated",
            "size": format(qty, "f"),
            "side": side,
            "orderType": "market",
            "clientOid": client_order_id,
            "reduceOnly": "YES" if reduce_only else "NO",
        }
        if tp_price is not None:
            body["presetStopSurplusPrice"] = self.price_str(symbol, tp_price)
        if sl_price is not None:
            body["presetStopLossPrice"] = self.price_str(symbol, sl_price)
        return self.place("privateMixPostV2MixOrderPlaceOrder", body, symbol=symbol, client_order_id=client_order_id)

    def lookup(self, *, symbol: str, client_order_id: str) -> Fill:
        data = self.call(
            "privateMixGetV2MixOrderDetail", {"symbol": symbol, "productType": PRODUCT, "clientOid": client_order_id}
        ).get("data")
        if not data:
            raise OrderNotFound(f"no order {client_order_id} on bitget")
        filled = as_decimal(data.get("baseVolume"), Decimal("0"))
        status = STATES.get(data.get("state", ""), "submitted")
        if status == "cancelled" and filled > 0:
            status = "partial"
        return Fill(
            status=status,
            price=as_decimal(data.get("priceAvg")) if filled else None,
            qty=filled,
            fee=abs(as_decimal(data.get("fee"), Decimal("0"))),
            exchange_order_id=str(data.get("orderId", "")),
            client_order_id=client_order_id,
        )

    def positions(self) -> list[ExchangePosition]:
        data = self.call("privateMixGetV2MixPositionAllPosition", self._common()).get("data") or []
        return [
            ExchangePosition(
                symbol=row["symbol"],
                side=row["holdSide"],
                qty=as_decimal(row["total"]),
                entry_price=as_decimal(row.get("openPriceAvg")),
            )
            for row in data
            if as_decimal(row.get("total"), Decimal("0")) > 0
        ]

    def open_orders(self) -> list[dict]:
        data = self.call("privateMixGetV2MixOrderOrdersPending", {"productType": PRODUCT}).get("data") or {}
        return [
            {"symbol": o.get("symbol"), "client_order_id": o.get("clientOid"), "exchange_order_id": o.get("orderId")}
            for o in data.get("entrustedList") or []
        ]

    def cancel_all(self) -> None:
        self.call("privateMixPostV2MixOrderCancelAllOrders", self._common(), sending=True)

    def last_close(self, *, symbol: str, side: str, since_ms: int) -> ClosedOnExchange | None:
        data = (
            self.call(
                "privateMixGetV2MixPositionHistoryPosition",
                {"productType": PRODUCT, "symbol": symbol, "startTime": str(since_ms)},
            ).get("data")
            or {}
        )
        rows = [r for r in data.get("list") or [] if r.get("holdSide") == side and int(r.get("uTime", 0)) >= since_ms]
        if not rows:
            return None
        row = max(rows, key=lambda r: int(r.get("uTime", 0)))
        return ClosedOnExchange(
            symbol=symbol,
            side=side,
            qty=as_decimal(row.get("closeTotalPos"), Decimal("0")),
            close_price=as_decimal(row["closeAvgPrice"]),
            close_fee=abs(as_decimal(row.get("closeFee"), Decimal("0"))),
            closed_at_ms=int(row["uTime"]),
        )

    def move_stop(self, *, symbol: str, side: str, sl_price: Decimal) -> None:
        self.call(
            "privateMixPostV2MixOrderPlacePosTpsl",
            {
                **self._common(symbol),
                "holdSide": side,
                "stopLossTriggerPrice": self.price_str(symbol, sl_price),
                "stopLossTriggerType": "mark_price",
            },
            sending=True,
        )

    def account_check(self, symbols: list[str]) -> AccountCheck:
        check = AccountCheck()
        accounts = self.call("privateMixGetV2MixAccountAccounts", {"productType": PRODUCT}).get("data") or []
        usdt = next((a for a in accounts if a.get("marginCoin") == "USDT"), {})
        check.equity_usdt = as_decimal(usdt.get("usdtEquity") or usdt.get("accountEquity"), Decimal("0"))
        info = self.call("privateSpotGetV2SpotAccountInfo", {}).get("data") or {}
        authorities = [str(a).lower() for a in info.get("authorities") or []]
        # Documented codes: "wwow" is "wallet withdrawal" (read and write); older keys say "withdraw".
        check.withdraw_permission = any(a == "wwow" or "withdraw" in a for a in authorities)
        for symbol in symbols:
            row = self.call("privateMixGetV2MixAccountAccount", self._common(symbol)).get("data") or {}
            mode = "cross" if row.get("marginMode") == "crossed" else "isolated"
            lever = row.get("crossedMarginLeverage") if mode == "cross" else row.get("isolatedLongLever")
            check.one_way_mode = (check.one_way_mode is not False) and row.get("posMode") == "one_way_mode"
            check.symbols[symbol] = {"margin_mode": mode, "leverage": int(as_decimal(lever, Decimal("0")))}
        return check
