"""Bybit V5 public tickers: `GET /v5/market/tickers?category=spot|linear[&symbol=]`.

Funding (linear perpetuals): `GET /v5/market/funding/history?category=linear&symbol=&limit=`, the
settled rates newest first, each `fundingRate` with its `fundingRateTimestamp` (epoch ms).

bid/ask from `bid1Price`/`ask1Price`, last from `lastPrice`, mark from `markPrice` where the
category has one (linear; spot has none, so `mark` stays None and PRICE_MODE=mark fails there).
The quote time is the envelope's `time` (server time, epoch ms). Bybit answers errors with
HTTP 200 and `retCode` ≠ 0.
"""

from __future__ import annotations

from typing import Any

from pricing.quotes import PriceQuote
from pricing.sources.base import parse_price
from pricing.sources.http import AnswerError, ExchangeTickerSource, ms_timestamp

TICKERS_PATH = "/v5/market/tickers"
FUNDING_HISTORY_PATH = "/v5/market/funding/history"
FUNDING_HISTORY_LIMIT = 100  # events per request (Bybit allows 200): 33 days at 8 h, 4 days at 1 h
CATEGORIES = ("spot", "linear")


class BybitSource(ExchangeTickerSource):
    name = "bybit"

    def __init__(self, *, category: str = "linear", **kwargs: Any) -> None:
        if category not in CATEGORIES:
            raise ValueError(f"Bybit category must be one of {', '.join(CATEGORIES)}, not {category!r}")
        super().__init__(**kwargs)
        self.category = category

    def describe(self) -> str:
        return f"bybit {self.category} {self.base_url}{TICKERS_PATH}"

    @property
    def has_funding(self) -> bool:
        return self.category == "linear"

    def funding_request(self, symbol: str) -> tuple[str, dict[str, str]]:
        return FUNDING_HISTORY_PATH, {
            "category": self.category,
            "symbol": symbol.upper(),
            "limit": str(FUNDING_HISTORY_LIMIT),
        }

    def funding_row(self, row: dict[str, Any]) -> tuple[object, object]:
        return row.get("fundingRateTimestamp"), row.get("fundingRate")

    def single_request(self, symbol: str) -> tuple[str, dict[str, str]]:
        return TICKERS_PATH, {"category": self.category, "symbol": symbol.upper()}

    def batch_request(self) -> tuple[str, dict[str, str]]:
        return TICKERS_PATH, {"category": self.category}

    def error_code(self, payload: dict[str, Any]) -> object:
        return payload.get("retCode")

    def answer_rows(self, payload: dict[str, Any]) -> list[Any]:
        code = payload.get("retCode")
        if code != 0 or isinstance(code, bool):
            message = str(payload.get("retMsg", ""))[:120]
            raise AnswerError(f"Bybit retCode {code!r}" + (f" ({message})" if message else ""))
        result = payload.get("result")
        rows = result.get("list") if isinstance(result, dict) else None
        if not isinstance(rows, list):
            raise AnswerError("Bybit answer has no result.list")
        return rows

    def row_quote(self, symbol: str, row: dict[str, Any], payload: dict[str, Any]) -> PriceQuote:
        return PriceQuote(
            symbol=symbol,
            ts=ms_timestamp(payload.get("time"), "Bybit time"),
            bid=parse_price(symbol, "bid1Price", row.get("bid1Price")),
            ask=parse_price(symbol, "ask1Price", row.get("ask1Price")),
            last=parse_price(symbol, "lastPrice", row.get("lastPrice")),
            mark=parse_price(symbol, "markPrice", row.get("markPrice"), required=False),
            source=self.name,
            mode=self.mode,
        )
