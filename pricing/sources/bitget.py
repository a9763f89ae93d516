"""Bitget V2 public tickers.

- spot: `GET /api/v2/spot/market/tickers[?symbol=]` (no mark price: `mark` stays None);
- USDT futures: `GET /api/v2/mix/market/ticker?symbol=&productType=USDT-FUTURES` for one symbol,
  `GET /api/v2/mix/market/tickers?productType=USDT-FUTURES` for the whole category.

Funding (USDT futures): `GET /api/v2/mix/market/history-fund-rate?symbol=&productType=USDT-FUTURES&pageSize=`,
the settled rates newest first, each `fundingRate` with its `fundingTime` (epoch ms as a string).

bid/ask/last/mark from `bidPr`/`askPr`/`lastPr`/`markPrice`; the quote time is the row's `ts`
(epoch ms as a string). Bitget answers errors with HTTP 4xx and `code` ≠ "00000".
"""

from __future__ import annotations

from typing import Any

from pricing.quotes import PriceQuote
from pricing.sources.base import parse_price
from pricing.sources.http import AnswerError, ExchangeTickerSource, ms_timestamp

SPOT_TICKERS_PATH = "/api/v2/spot/market/tickers"
MIX_TICKER_PATH = "/api/v2/mix/market/ticker"
MIX_TICKERS_PATH = "/api/v2/mix/market/tickers"
MIX_PRODUCT_TYPE = "USDT-FUTURES"
FUNDING_HISTORY_PATH = "/api/v2/mix/market/history-fund-rate"
FUNDING_HISTORY_LIMIT = 100  # events per request, Bitget's maximum page
PRODUCTS = ("spot", "usdt-futures")
OK_CODE = "00000"


class BitgetSource(ExchangeTickerSource):
    name = "bitget"

    def __init__(self, *, product: str = "usdt-futures", **kwargs: Any) -> None:
        if product not in PRODUCTS:
            raise ValueError(f"Bitget product must be one of {', '.join(PRODUCTS)}, not {product!r}")
        super().__init__(**kwargs)
        self.product = product

    @property
    def is_spot(self) -> bool:
        return self.product == "spot"

    def describe(self) -> str:
        path = SPOT_TICKERS_PATH if self.is_spot else MIX_TICKERS_PATH
        return f"bitget {self.product} {self.base_url}{path}"

    @property
    def has_funding(self) -> bool:
        return not self.is_spot

    def funding_request(self, symbol: str) -> tuple[str, dict[str, str]]:
        return FUNDING_HISTORY_PATH, {
            "symbol": symbol.upper(),
            "productType": MIX_PRODUCT_TYPE,
            "pageSize": str(FUNDING_HISTORY_LIMIT),
        }

    def funding_row(self, row: dict[str, Any]) -> tuple[object, object]:
        return row.get("fundingTime"), row.get("fundingRate")

    def single_request(self, symbol: str) -> tuple[str, dict[str, str]]:
        if self.is_spot:
            return SPOT_TICKERS_PATH, {"symbol": symbol.upper()}
        return MIX_TICKER_PATH, {"symbol": symbol.upper(), "productType": MIX_PRODUCT_TYPE}

    def batch_request(self) -> tuple[str, dict[str, str]]:
        if self.is_spot:
            return SPOT_TICKERS_PATH, {}
        return MIX_TICKERS_PATH, {"productType": MIX_PRODUCT_TYPE}

    def error_code(self, payload: dict[str, Any]) -> object:
        return payload.get("code")

    def answer_rows(self, payload: dict[str, Any]) -> list[Any]:
        code = payload.get("code")
        if code != OK_CODE:
            message = str(payload.get("msg", ""))[:120]
            raise AnswerError(f"Bitget code {code!r}" + (f" ({message})" if message else ""))
        rows = payload.get("data")
        if not isinstance(rows, list):
            raise AnswerError("Bitget answer has no data list")
        return rows

    def row_quote(self, symbol: str, row: dict[str, Any], payload: dict[str, Any]) -> PriceQuote:
        return PriceQuote(
            symbol=symbol,
            ts=ms_timestamp(row.get("ts"), "Bitget ts"),
            bid=parse_price(symbol, "bidPr", row.get("bidPr")),
            ask=parse_price(symbol, "askPr", row.get("askPr")),
            last=parse_price(symbol, "lastPr", row.get("lastPr")),
            mark=parse_price(symbol, "markPrice", row.get("markPrice"), required=False),
            source=self.name,
            mode=self.mode,
        )
