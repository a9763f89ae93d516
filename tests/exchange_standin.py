"""A loopback stand-in for Bitget (API v2 mix) and Bybit (V5) USDT perpetuals, for tests.

It speaks the subset of each REST API that `oms/brokers/` uses (the answer shapes follow the
exchanges' documentation), keeps a tiny book (one-way positions, orders by client id, a history
of closes) and **checks every private request's signature** exactly as the exchange documents it:

- Bitget: `ACCESS-SIGN = base64(HMAC-SHA256(secret, timestamp + METHOD + requestPath
  [+ "?" + queryString] + body))`, with `ACCESS-KEY`, `ACCESS-TIMESTAMP`, `ACCESS-PASSPHRASE`;
  demo trading adds the header `paptrading: 1`.
- Bybit: `X-BAPI-SIGN = hex(HMAC-SHA256(secret, timestamp + apiKey + recvWindow
  + (queryString | jsonBody)))`, with `X-BAPI-API-KEY`, `X-BAPI-TIMESTAMP`, `X-BAPI-RECV-WINDOW`.

A bad signature, key or passphrase is answered with the exchange's own error code. Faults can be
queued per path (`fail_next`). Never a real key: tests make their own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

TAKER_FEE = Decimal("0.0006")
BITGET_ERRORS = {  # kind → (HTTP status, code, message)
    "key": (400, "40037", "Apikey does not exist"),
    "passphrase": (400, "40012", "apikey/password is incorrect"),
    "sign": (400, "40009", "sign signature error"),
    "auth": (400, "40037", "Apikey does not exist"),
    "insufficient": (400, "40762", "The order amount exceeds the balance"),
    "rate_limit": (429, "429", "Too Many Requests"),
    "not_found": (400, "40109", "order not found"),
    "qty": (400, "45110", "less than the minimum order quantity"),
    "duplicate": (400, "40757", "Duplicate clientOid"),
    "reduce_only": (400, "22002", "No position to close"),
    "symbol": (400, "40034", "Parameter does not exist"),
}
BYBIT_ERRORS = {
    "key": (401, 10003, "API key is invalid."),
    "sign": (401, 10004, "error sign!"),
    "auth": (401, 10003, "API key is invalid."),
    "passphrase": (401, 10003, "API key is invalid."),
    "insufficient": (200, 110007, "ab not enough for new order"),
    "rate_limit": (403, 10006, "Too many visits!"),
    "qty": (200, 10001, "Qty invalid"),
    "duplicate": (200, 110072, "OrderLinkedID is duplicate"),
    "reduce_only": (200, 110017, "Reduce-only rule not satisfied"),
    "symbol": (200, 10001, "symbol invalid"),
}


@dataclass
class Market:
    symbol: str
    price: Decimal
    qty_step: Decimal = Decimal("0.001")
    min_qty: Decimal = Decimal("0.001")
    tick: Decimal = Decimal("0.1")
    min_notional: Decimal = Decimal("5")


@dataclass
class Held:
    side: str  # long / short
    qty: Decimal
    entry: Decimal
    tp: Decimal | None = None
    sl: Decimal | None = None
    opened_ms: int = 0
    open_fee: Decimal = Decimal("0")


@dataclass
class StandInOrder:
    client_id: str
    order_id: str
    symbol: str
    side: str  # buy / sell
    qty: Decimal
    price: Decimal | None
    fee: Decimal
    state: str  # filled / canceled / live
    reduce_only: bool
    tp: str | None = None
    sl: str | None = None
    created_ms: int = 0
    unfilled_lookups: int = 0  # answered as not yet filled this many times (a fill that takes a moment)


@dataclass
class Request:
    method: str
    path: str
    query: str
    body: str
    headers: dict
    private: bool
    signature_ok: bool | None


@dataclass
class StandIn:
    exchange: str  # "bitget" or "bybit"
    api_key: str = "standin-key"
    api_secret: str = "standin-secret"
    passphrase: str = "standin-pass"
    equity: Decimal = Decimal("100")
    withdraw_permission: bool = False
    one_way: bool = True
    margin_mode: str = "isolated"
    leverage: int = 1
    markets: dict[str, Market] = field(
        default_factory=lambda: {
            "BTCUSDT": Market("BTCUSDT", Decimal("60000"), Decimal("0.001"), Decimal("0.001"), Decimal("0.1")),
            "ETHUSDT": Market("ETHUSDT", Decimal("3000"), Decimal("0.01"), Decimal("0.01"), Decimal("0.01")),
        }
    )
    requests: list[Request] = field(default_factory=list)
    positions: dict[str, Held] = field(default_factory=dict)
    orders: dict[str, StandInOrder] = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)
    open_orders: list[dict] = field(default_factory=list)
    faults: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    delay_sec: float = 0.0
    unfilled_lookups: int = 0  # each new order is first reported unfilled this many times

    def __post_init__(self) -> None:
        self.lock = threading.RLock()
        self.server: ThreadingHTTPServer | None = None
        self.next_id = 1000

    # --- test controls ----------------------------------------------------------------------
    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> StandIn:
        standin = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                standin._handle(self, "GET")

            def do_POST(self):  # noqa: N802
                standin._handle(self, "POST")

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server:
            self.server.shutdown()
            self.server.server_close()

    def fail_next(self, path: str, *faults: str) -> None:
        """Queue faults for the next requests to `path`: insufficient, auth, rate_limit, down,
        timeout_after_accept (the order is taken, the answer never comes), timeout_before_accept."""
        with self.lock:
            self.faults[path].extend(faults)

    @property
    def private_requests(self) -> list[Request]:
        return [r for r in self.requests if r.private]

    def trigger(self, symbol: str, which: str = "sl") -> Decimal:
        """The exchange-side stop (or take profit) fires: the position closes at its level."""
        with self.lock:
            held = self.positions.pop(symbol)
            price = held.sl if which == "sl" else held.tp
            self._record_close(symbol, held, price, held.qty)
            return price

    def set_price(self, symbol: str, price: Decimal) -> None:
        self.markets[symbol].price = Decimal(price)

    # --- the book ---------------------------------------------------------------------------
    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    def _record_close(self, symbol: str, held: Held, price: Decimal, qty: Decimal) -> Decimal:
        close_fee = (price * qty * TAKER_FEE).quantize(Decimal("0.00000001"))
        pnl = (price - held.entry) * qty if held.side == "long" else (held.entry - price) * qty
        self.history.append(
            {
                "symbol": symbol,
                "side": held.side,
                "qty": qty,
                "entry": held.entry,
                "exit": price,
                "open_fee": held.open_fee * qty / held.qty if held.qty else held.open_fee,
                "close_fee": close_fee,
                "pnl": pnl,
                "opened_ms": held.opened_ms,
                "closed_ms": self._now_ms(),
            }
        )
        return close_fee

    def _place(
        self, *, symbol: str, side: str, qty: Decimal, client_id: str, reduce_only: bool, tp: str | None, sl: str | None
    ) -> tuple[str | None, StandInOrder | None]:
        """A market order; returns (error, order)."""
        if client_id in self.orders:
            return "duplicate", None
        market = self.markets.get(symbol)
        if market is None:
            return "symbol", None
        if qty < market.min_qty or (qty / market.qty_step) % 1 != 0:
            return "qty", None
        price = market.price
        position_side = "long" if side == "buy" else "short"
        held = self.positions.get(symbol)
        self.next_id += 1
        order = StandInOrder(
            client_id,
            str(self.next_id),
            symbol,
            side,
            qty,
            price,
            Decimal("0"),
            "filled",
            reduce_only,
            tp,
            sl,
            self._now_ms(),
            self.unfilled_lookups,
        )
        if reduce_only:
            if held is None or held.side == position_side:
                return "reduce_only", None
            fill = min(qty, held.qty)
            order.qty = fill
            order.fee = self._record_close(symbol, held, price, fill)
            held.qty -= fill
            if held.qty == 0:
                del self.positions[symbol]
        else:
            if price * qty > self.equity * self.leverage:
                return "insufficient", None
            order.fee = (price * qty * TAKER_FEE).quantize(Decimal("0.00000001"))
            if held is None:
                self.positions[symbol] = Held(
                    position_side,
                    qty,
                    price,
                    Decimal(tp) if tp else None,
                    Decimal(sl) if sl else None,
                    self._now_ms(),
                    order.fee,
                )
            elif held.side == position_side:
                held.entry = (held.entry * held.qty + price * qty) / (held.qty + qty)
                held.qty += qty
                held.open_fee += order.fee
            else:
                return "reduce_only", None
        self.orders[client_id] = order
        return None, order

    # --- HTTP ---------------------------------------------------------------------------------
    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        headers = {k.lower(): v for k, v in handler.headers.items()}
        private = self._is_private(parts.path)
        signature_ok = self._check_signature(method, parts.path, parts.query, body, headers) if private else None
        with self.lock:
            self.requests.append(Request(method, parts.path, parts.query, body, headers, private, signature_ok))
            fault = self.faults[parts.path].pop(0) if self.faults.get(parts.path) else None
        if self.delay_sec:
            time.sleep(self.delay_sec)
        params = dict(parse_qsl(parts.query)) if method == "GET" else (json.loads(body) if body else {})
        if fault == "down":
            return self._send(handler, 503, "<html><body>503 Service Unavailable</body></html>", "text/html")
        if fault == "timeout_before_accept":
            time.sleep(3)
            return self._send(handler, 504, "<html>gateway timeout</html>", "text/html")
        if fault == "rate_limit":
            return self._error(handler, "rate_limit")
        if private and (signature_ok is not True or fault == "auth"):
            return self._error(handler, "auth" if fault == "auth" else signature_ok or "sign")
        if fault == "insufficient":
            return self._error(handler, "insufficient")
        with self.lock:
            try:
                status, answer = self._route(method, parts.path, params)
            except KeyError as exc:
                status, answer = 404, {"error": f"stand-in has no {method} {parts.path} ({exc})"}
        if fault == "timeout_after_accept":
            time.sleep(3)  # longer than the client's timeout: the order exists, the answer is lost
        self._send(handler, status, json.dumps(answer))

    def _send(self, handler, status: int, text: str, content_type: str = "application/json") -> None:
        try:
            data = text.encode()
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _is_private(self, path: str) -> bool:
        if self.exchange == "bitget":
            return not path.startswith(("/api/v2/mix/market", "/api/v2/spot/public", "/api/v2/public"))
        return not path.startswith("/v5/market")

    def _check_signature(self, method, path, query, body, headers) -> bool | str:
        """True, or the reason the exchange would refuse the request: 'key', 'passphrase', 'sign'."""
        if self.exchange == "bitget":
            if headers.get("access-key") != self.api_key:
                return "key"
            if headers.get("access-passphrase") != self.passphrase:
                return "passphrase"
            timestamp = headers.get("access-timestamp", "")
            prehash = timestamp + method + path + (f"?{query}" if query else "") + body
            expected = base64.b64encode(
                hmac.new(self.api_secret.encode(), prehash.encode(), hashlib.sha256).digest()
            ).decode()
            sign = headers.get("access-sign", "")
        else:
            if headers.get("x-bapi-api-key") != self.api_key:
                return "key"
            timestamp = headers.get("x-bapi-timestamp", "")
            window = headers.get("x-bapi-recv-window", "")
            prehash = timestamp + self.api_key + window + (query if method == "GET" else body)
            expected = hmac.new(self.api_secret.encode(), prehash.encode(), hashlib.sha256).hexdigest()
            sign = headers.get("x-bapi-sign", "")
        try:
            fresh = abs(int(timestamp) - self._now_ms()) < 30_000
        except ValueError:
            fresh = False
        return "sign" if not (fresh and hmac.compare_digest(sign, expected)) else True

    def _error(self, handler, kind: str) -> None:
        status, body = self._error_answer(kind)
        self._send(handler, status, json.dumps(body))

    def _error_answer(self, kind: str) -> tuple[int, dict]:
        """The exchange's own answer for an error `kind` (status and body as documented)."""
        if self.exchange == "bitget":
            status, code, msg = BITGET_ERRORS[kind]
            return status, {"code": code, "msg": msg, "requestTime": self._now_ms(), "data": None}
        status, code, msg = BYBIT_ERRORS[kind]
        return status, {"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {}, "time": self._now_ms()}

    def _ok(self, data) -> tuple[int, dict]:
        if self.exchange == "bitget":
            return 200, {"code": "00000", "msg": "success", "requestTime": self._now_ms(), "data": data}
        return 200, {"retCode": 0, "retMsg": "OK", "result": data, "retExtInfo": {}, "time": self._now_ms()}

    def _route(self, method: str, path: str, params: dict) -> tuple[int, dict]:
        routes = BITGET_ROUTES if self.exchange == "bitget" else BYBIT_ROUTES
        handler = routes[(method, path)]
        outcome = handler(self, params)
        if isinstance(outcome, str):  # an error kind
            return self._error_answer(outcome)
        return self._ok(outcome)


def _s(value: Decimal | None) -> str:
    return "" if value is None else format(Decimal(value).normalize(), "f")


# --- Bitget v2 mix -------------------------------------------------------------------------------
def _bg_contracts(s: StandIn, p: dict):
    if p.get("productType") != "USDT-FUTURES":
        return []
    return [
        {
            "symbol": m.symbol,
            "baseCoin": m.symbol[:-4],
            "quoteCoin": "USDT",
            "buyLimitPriceRatio": "0.01",
            "sellLimitPriceRatio": "0.01",
            "feeRateUpRatio": "0.005",
            "makerFeeRate": "0.0002",
            "takerFeeRate": "0.0006",
            "openCostUpRatio": "0.01",
            "supportMarginCoins": ["USDT"],
            "minTradeNum": _s(m.min_qty),
            "priceEndStep": "1",
            "volumePlace": str(-m.qty_step.as_tuple().exponent),
            "pricePlace": str(-m.tick.as_tuple().exponent),
            "sizeMultiplier": _s(m.qty_step),
            "symbolType": "perpetual",
            "minTradeUSDT": _s(m.min_notional),
            "maxSymbolOrderNum": "200",
            "maxProductOrderNum": "400",
            "maxPositionNum": "150",
            "symbolStatus": "normal",
            "offTime": "-1",
            "limitOpenTime": "-1",
            "deliveryTime": "",
            "deliveryStartTime": "",
            "deliveryPeriod": "",
            "launchTime": "",
            "fundInterval": "8",
            "minLever": "1",
            "maxLever": "125",
            "posLimit": "0.05",
            "maintainTime": "",
        }
        for m in s.markets.values()
    ]


def _bg_place(s: StandIn, p: dict):
    error, order = s._place(
        symbol=p["symbol"],
        side=p["side"],
        qty=Decimal(p["size"]),
        client_id=p["clientOid"],
        reduce_only=p.get("reduceOnly") == "YES",
        tp=p.get("presetStopSurplusPrice"),
        sl=p.get("presetStopLossPrice"),
    )
    return error or {"orderId": order.order_id, "clientOid": order.client_id}


def _not_yet_filled(order: StandInOrder) -> bool:
    if order.unfilled_lookups > 0:
        order.unfilled_lookups -= 1
        return True
    return False


def _bg_detail(s: StandIn, p: dict):
    order = s.orders.get(p.get("clientOid", ""))
    if order is None:
        return "not_found"
    if _not_yet_filled(order):
        return {
            "symbol": order.symbol,
            "size": _s(order.qty),
            "orderId": order.order_id,
            "clientOid": order.client_id,
            "baseVolume": "0",
            "priceAvg": "",
            "fee": "0",
            "state": "live",
            "side": order.side,
            "cTime": str(order.created_ms),
            "uTime": str(order.created_ms),
        }
    return {
        "symbol": order.symbol,
        "size": _s(order.qty),
        "orderId": order.order_id,
        "clientOid": order.client_id,
        "baseVolume": _s(order.qty),
        "priceAvg": _s(order.price),
        "fee": "-" + _s(order.fee),
        "price": "",
        "state": order.state,
        "side": order.side,
        "force": "gtc",
        "totalProfits": "0",
        "posSide": "net",
        "marginCoin": "USDT",
        "presetStopSurplusPrice": order.tp or "",
        "presetStopLossPrice": order.sl or "",
        "quoteVolume": _s(order.qty * order.price),
        "orderType": "market",
        "leverage": str(s.leverage),
        "marginMode": s.margin_mode,
        "reduceOnly": "YES" if order.reduce_only else "NO",
        "enterPointSource": "API",
        "tradeSide": "buy_single" if order.side == "buy" else "sell_single",
        "posMode": "one_way_mode",
        "orderSource": "market",
        "cTime": str(order.created_ms),
        "uTime": str(order.created_ms),
    }


def _bg_positions(s: StandIn, p: dict):
    return [
        {
            "marginCoin": "USDT",
            "symbol": sym,
            "holdSide": h.side,
            "openDelegateSize": "0",
            "marginSize": "0",
            "available": _s(h.qty),
            "locked": "0",
            "total": _s(h.qty),
            "leverage": str(s.leverage),
            "achievedProfits": "0",
            "openPriceAvg": _s(h.entry),
            "marginMode": s.margin_mode,
            "posMode": "one_way_mode" if s.one_way else "hedge_mode",
            "unrealizedPL": "0",
            "liquidationPrice": "0",
            "keepMarginRate": "0.004",
            "markPrice": _s(s.markets[sym].price),
            "cTime": str(h.opened_ms),
            "uTime": str(h.opened_ms),
        }
        for sym, h in s.positions.items()
    ]


def _bg_history(s: StandIn, p: dict):
    rows = [h for h in s.history if h["symbol"] == p.get("symbol", h["symbol"])]
    return {
        "list": [
            {
                "symbol": h["symbol"],
                "marginCoin": "USDT",
                "holdSide": h["side"],
                "openAvgPrice": _s(h["entry"]),
                "closeAvgPrice": _s(h["exit"]),
                "marginMode": s.margin_mode,
                "openTotalPos": _s(h["qty"]),
                "closeTotalPos": _s(h["qty"]),
                "pnl": _s(h["pnl"]),
                "netProfit": _s(h["pnl"] - h["open_fee"] - h["close_fee"]),
                "totalFunding": "0",
                "openFee": "-" + _s(h["open_fee"]),
                "closeFee": "-" + _s(h["close_fee"]),
                "cTime": str(h["opened_ms"]),
                "uTime": str(h["closed_ms"]),
            }
            for h in reversed(rows)
        ],
        "endId": "",
    }


def _bg_accounts(s: StandIn, p: dict):
    return [
        {
            "marginCoin": "USDT",
            "locked": "0",
            "available": _s(s.equity),
            "crossedMaxAvailable": _s(s.equity),
            "isolatedMaxAvailable": _s(s.equity),
            "maxTransferOut": _s(s.equity),
            "accountEquity": _s(s.equity),
            "usdtEquity": _s(s.equity),
            "btcEquity": "0",
            "crossedRiskRate": "0",
            "unrealizedPL": "0",
            "coupon": "0",
            "crossedUnrealizedPL": "0",
            "isolatedUnrealizedPL": "0",
            "assetMode": "single",
        }
    ]


def _bg_account(s: StandIn, p: dict):
    return {
        "marginCoin": "USDT",
        "locked": "0",
        "available": _s(s.equity),
        "accountEquity": _s(s.equity),
        "usdtEquity": _s(s.equity),
        "marginMode": "crossed" if s.margin_mode == "cross" else "isolated",
        "crossedMarginLeverage": s.leverage,
        "isolatedLongLever": s.leverage,
        "isolatedShortLever": s.leverage,
        "posMode": "one_way_mode" if s.one_way else "hedge_mode",
    }


def _bg_info(s: StandIn, p: dict):
    # Documented permission codes: coow/cpow futures orders/holdings (read and write), wwow withdrawal.
    authorities = ["coor", "cpor", "coow", "cpow"] + (["wwow"] if s.withdraw_permission else [])
    return {
        "userId": "1",
        "inviterId": "",
        "ipList": "127.0.0.1",
        "authorities": authorities,
        "parentId": 0,
        "traderType": "",
        "channelCode": "",
        "channel": "",
        "regisTime": "0",
    }


def _bg_pending(s: StandIn, p: dict):
    return {
        "entrustedList": [
            {"symbol": o["symbol"], "clientOid": o["client_id"], "orderId": o["order_id"]} for o in s.open_orders
        ]
        or None,
        "endId": "",
    }


def _bg_cancel_all(s: StandIn, p: dict):
    done = [{"orderId": o["order_id"], "clientOid": o["client_id"]} for o in s.open_orders]
    s.open_orders.clear()
    return {"successList": done, "failureList": []}


def _bg_pos_tpsl(s: StandIn, p: dict):
    s.positions[p["symbol"]].sl = Decimal(p["stopLossTriggerPrice"])
    return [{"orderId": "1", "clientOid": ""}]


BITGET_ROUTES = {
    ("GET", "/api/v2/mix/market/contracts"): _bg_contracts,
    ("POST", "/api/v2/mix/order/place-order"): _bg_place,
    ("GET", "/api/v2/mix/order/detail"): _bg_detail,
    ("GET", "/api/v2/mix/position/all-position"): _bg_positions,
    ("GET", "/api/v2/mix/position/history-position"): _bg_history,
    ("GET", "/api/v2/mix/account/accounts"): _bg_accounts,
    ("GET", "/api/v2/mix/account/account"): _bg_account,
    ("GET", "/api/v2/spot/account/info"): _bg_info,
    ("GET", "/api/v2/mix/order/orders-pending"): _bg_pending,
    ("POST", "/api/v2/mix/order/cancel-all-orders"): _bg_cancel_all,
    ("POST", "/api/v2/mix/order/place-pos-tpsl"): _bg_pos_tpsl,
}


# --- Bybit V5 ----------------------------------------------------------------------------------
def _by_instruments(s: StandIn, p: dict):
    if p.get("category") != "linear" or p.get("status") == "PreLaunch" or p.get("cursor"):
        return {"category": "linear", "list": [], "nextPageCursor": ""}
    return {
        "category": "linear",
        "nextPageCursor": "",
        "list": [
            {
                "symbol": m.symbol,
                "contractType": "LinearPerpetual",
                "status": "Trading",
                "baseCoin": m.symbol[:-4],
                "quoteCoin": "USDT",
                "launchTime": "1585526400000",
                "deliveryTime": "0",
                "deliveryFeeRate": "",
                "priceScale": str(-m.tick.as_tuple().exponent),
                "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
                "priceFilter": {"minPrice": _s(m.tick), "maxPrice": "1999999.80", "tickSize": _s(m.tick)},
                "lotSizeFilter": {
                    "maxOrderQty": "1190.000",
                    "minOrderQty": _s(m.min_qty),
                    "qtyStep": _s(m.qty_step),
                    "postOnlyMaxOrderQty": "1190.000",
                    "maxMktOrderQty": "500.000",
                    "minNotionalValue": _s(m.min_notional),
                },
                "unifiedMarginTrade": True,
                "fundingInterval": 480,
                "settleCoin": "USDT",
                "copyTrading": "both",
                "upperFundingRate": "0.00375",
                "lowerFundingRate": "-0.00375",
                "isPreListing": False,
                "preListingInfo": None,
            }
            for m in s.markets.values()
        ],
    }


BYBIT_STATES = {"filled": "Filled", "canceled": "Cancelled", "live": "New"}


def _by_create(s: StandIn, p: dict):
    error, order = s._place(
        symbol=p["symbol"],
        side=p["side"].lower(),
        qty=Decimal(p["qty"]),
        client_id=p["orderLinkId"],
        reduce_only=bool(p.get("reduceOnly")),
        tp=p.get("takeProfit"),
        sl=p.get("stopLoss"),
    )
    return error or {"orderId": order.order_id, "orderLinkId": order.client_id}


def _by_order_row(o: StandInOrder) -> dict:
    return {
        "orderId": o.order_id,
        "orderLinkId": o.client_id,
        "symbol": o.symbol,
        "side": o.side.title(),
        "orderType": "Market",
        "orderStatus": BYBIT_STATES[o.state],
        "price": "0",
        "qty": _s(o.qty),
        "avgPrice": _s(o.price),
        "cumExecQty": _s(o.qty),
        "cumExecValue": _s(o.qty * o.price),
        "cumExecFee": _s(o.fee),
        "leavesQty": "0",
        "positionIdx": 0,
        "reduceOnly": o.reduce_only,
        "takeProfit": o.tp or "",
        "stopLoss": o.sl or "",
        "timeInForce": "IOC",
        "createdTime": str(o.created_ms),
        "updatedTime": str(o.created_ms),
    }


def _by_realtime(s: StandIn, p: dict):
    if p.get("orderLinkId"):
        order = s.orders.get(p["orderLinkId"])
        row = _by_order_row(order) if order else None
        if order and _not_yet_filled(order):
            row.update(
                orderStatus="New", avgPrice="", cumExecQty="0", cumExecValue="0", cumExecFee="0", leavesQty=row["qty"]
            )
        return {"category": "linear", "nextPageCursor": "", "list": [row] if row else []}
    return {
        "category": "linear",
        "nextPageCursor": "",
        "list": [
            {"orderId": o["order_id"], "orderLinkId": o["client_id"], "symbol": o["symbol"], "orderStatus": "New"}
            for o in s.open_orders
        ],
    }


def _by_history(s: StandIn, p: dict):
    return {"category": "linear", "nextPageCursor": "", "list": []}


def _by_positions(s: StandIn, p: dict):
    symbols = [p["symbol"]] if p.get("symbol") else list(s.positions)
    rows = []
    for sym in symbols:
        h = s.positions.get(sym)
        rows.append(
            {
                "positionIdx": 0 if s.one_way else 1,
                "symbol": sym,
                "side": ("Buy" if h.side == "long" else "Sell") if h else "",
                "size": _s(h.qty) if h else "0",
                "avgPrice": _s(h.entry) if h else "0",
                "leverage": str(s.leverage),
                "tradeMode": 1 if s.margin_mode == "isolated" else 0,
                "positionStatus": "Normal",
                "markPrice": _s(s.markets[sym].price),
                "takeProfit": _s(h.tp) if h else "",
                "stopLoss": _s(h.sl) if h else "",
                "createdTime": str(h.opened_ms if h else 0),
                "updatedTime": str(h.opened_ms if h else 0),
            }
        )
    return {"category": "linear", "nextPageCursor": "", "list": rows}


def _by_closed_pnl(s: StandIn, p: dict):
    rows = [h for h in s.history if h["symbol"] == p.get("symbol")]
    return {
        "category": "linear",
        "nextPageCursor": "",
        "list": [
            {
                "symbol": h["symbol"],
                "orderId": "1",
                "side": "Sell" if h["side"] == "long" else "Buy",
                "qty": _s(h["qty"]),
                "closedSize": _s(h["qty"]),
                "avgEntryPrice": _s(h["entry"]),
                "avgExitPrice": _s(h["exit"]),
                "closedPnl": _s(h["pnl"] - h["open_fee"] - h["close_fee"]),
                "openFee": _s(h["open_fee"]),
                "closeFee": _s(h["close_fee"]),
                "cumEntryValue": _s(h["entry"] * h["qty"]),
                "cumExitValue": _s(h["exit"] * h["qty"]),
                "orderType": "Market",
                "execType": "Trade",
                "leverage": "1",
                "createdTime": str(h["closed_ms"]),
                "updatedTime": str(h["closed_ms"]),
            }
            for h in reversed(rows)
        ],
    }


def _by_wallet(s: StandIn, p: dict):
    return {
        "list": [
            {
                "accountType": "UNIFIED",
                "totalEquity": _s(s.equity),
                "totalWalletBalance": _s(s.equity),
                "totalAvailableBalance": _s(s.equity),
                "coin": [{"coin": "USDT", "equity": _s(s.equity), "walletBalance": _s(s.equity)}],
            }
        ]
    }


def _by_query_api(s: StandIn, p: dict):
    wallet = ["AccountTransfer"] + (["Withdraw"] if s.withdraw_permission else [])
    return {
        "id": "1",
        "note": "stand-in",
        "apiKey": s.api_key,
        "readOnly": 0,
        "secret": "",
        "permissions": {
            "ContractTrade": ["Order", "Position"],
            "Spot": [],
            "Wallet": wallet,
            "Options": [],
            "Derivatives": [],
            "CopyTrading": [],
            "BlockTrade": [],
            "Exchange": [],
            "NFT": [],
        },
        "ips": ["*"],
        "type": 1,
        "unified": 1,
        "uta": 1,
    }


def _by_cancel_all(s: StandIn, p: dict):
    done = [{"orderId": o["order_id"], "orderLinkId": o["client_id"]} for o in s.open_orders]
    s.open_orders.clear()
    return {"list": done, "success": "1"}


def _by_trading_stop(s: StandIn, p: dict):
    s.positions[p["symbol"]].sl = Decimal(p["stopLoss"])
    return {}


BYBIT_ROUTES = {
    ("GET", "/v5/market/instruments-info"): _by_instruments,
    ("POST", "/v5/order/create"): _by_create,
    ("GET", "/v5/order/realtime"): _by_realtime,
    ("GET", "/v5/order/history"): _by_history,
    ("GET", "/v5/position/list"): _by_positions,
    ("GET", "/v5/position/closed-pnl"): _by_closed_pnl,
    ("GET", "/v5/account/wallet-balance"): _by_wallet,
    ("GET", "/v5/user/query-api"): _by_query_api,
    ("POST", "/v5/order/cancel-all"): _by_cancel_all,
    ("POST", "/v5/position/trading-stop"): _by_trading_stop,
}
