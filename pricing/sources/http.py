"""Shared plumbing for exchange ticker sources over HTTP.

One `requests.Session` per source instance (connection reuse), `PRICE_HTTP_TIMEOUT` on every
request, and a single rule: whatever goes wrong — connection error, timeout, non-2xx status,
non-JSON body, an exchange error code, a missing symbol, a bad or stale price — becomes a
`QuoteError` for the symbols concerned. Nothing else escapes `get_quote` / `get_quotes`.
Decisions are made on status codes and error codes only, never on message text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

import requests
from django.utils import timezone

from pricing.funding import FundingError, FundingEvent, parse_rate
from pricing.quotes import PriceMode, PriceQuote, QuoteError
from pricing.sources.base import check_fresh

logger = logging.getLogger(__name__)

USER_AGENT = "loms-pricing/1"


class AnswerError(Exception):
    """The whole answer is unusable (transport, status, body or exchange code): every symbol fails."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def ms_timestamp(raw: object, field: str) -> datetime:
    """An aware UTC datetime from epoch milliseconds given as an integer or a digit string."""
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise AnswerError(f"{field} is not an epoch-ms timestamp: {raw!r}")
    text = str(raw).strip()
    if not text.isdigit():
        raise AnswerError(f"{field} is not an epoch-ms timestamp: {text[:40]!r}")
    millis = int(text)
    return datetime.fromtimestamp(millis // 1000, tz=UTC) + timedelta(milliseconds=millis % 1000)


class ExchangeTickerSource:
    """Base for ticker endpoints that answer one symbol or, without `symbol`, a whole category.

    Subclasses say which request to send (`single_request`, `batch_request`), how to unwrap the
    envelope (`answer_rows`) and how to turn one row into a quote (`row_quote`).
    """

    name = "exchange"

    def __init__(
        self,
        *,
        base_url: str,
        timeout: float,
        max_age_sec: float | None,
        mode: PriceMode = PriceMode.LAST,
        clock: Callable[[], datetime] = timezone.now,
        session: requests.Session | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.max_age_sec = max_age_sec
        self.mode = mode
        self.clock = clock
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = USER_AGENT

    # --- subclass hooks ---------------------------------------------------------------------------
    def single_request(self, symbol: str) -> tuple[str, dict[str, str]]:
        raise NotImplementedError

    def batch_request(self) -> tuple[str, dict[str, str]]:
        raise NotImplementedError

    def answer_rows(self, payload: dict[str, Any]) -> list[Any]:
        """The ticker rows of a decoded answer; AnswerError when the envelope reports a failure."""
        raise NotImplementedError

    def row_quote(self, symbol: str, row: dict[str, Any], payload: dict[str, Any]) -> PriceQuote:
        """One quote from one row; QuoteError (or AnswerError) when the row is unusable."""
        raise NotImplementedError

    def describe(self) -> str:
        return f"{self.name} {self.base_url}"

    # Funding (perpetuals only): the public history of settled funding, one request per symbol.
    has_funding = False

    def funding_request(self, symbol: str) -> tuple[str, dict[str, str]]:
        raise NotImplementedError

    def funding_row(self, row: dict[str, Any]) -> tuple[object, object]:
        """(settlement time in epoch ms, rate) of one funding history row, as the exchange wrote them."""
        raise NotImplementedError

    # --- the PriceSource protocol -----------------------------------------------------------------
    def get_quote(self, symbol: str) -> PriceQuote:
        result = self._fetch([symbol], self.single_request(symbol))[symbol]
        if isinstance(result, QuoteError):
            raise result
        return result

    def get_quotes(self, symbols: Iterable[str]) -> dict[str, PriceQuote | QuoteError]:
        """One request for all of `symbols` (the whole category), a per-symbol one for a single symbol."""
        wanted = list(dict.fromkeys(symbols))
        if not wanted:
            return {}
        request = self.single_request(wanted[0]) if len(wanted) == 1 else self.batch_request()
        return self._fetch(wanted, request)

    def funding_history(self, symbol: str) -> list[FundingEvent]:
        """The latest settled funding events of `symbol`, oldest first; FundingError when unusable."""
        path, params = self.funding_request(symbol)
        try:
            rows = self.answer_rows(self._get_json(path, params))
        except AnswerError as exc:
            raise FundingError(symbol, exc.reason) from None
        events = {}
        for row in rows:
            if not isinstance(row, dict) or str(row.get("symbol", "")).upper() != symbol.upper():
                raise FundingError(symbol, f"unexpected row in the {self.name} funding history: {str(row)[:80]}")
            raw_time, raw_rate = self.funding_row(row)
            try:
                time = ms_timestamp(raw_time, "funding time")
            except AnswerError as exc:
                raise FundingError(symbol, exc.reason) from None
            events[time] = FundingEvent(symbol=symbol, time=time, rate=parse_rate(symbol, raw_rate))
        return [events[time] for time in sorted(events)]

    # --- internals --------------------------------------------------------------------------------
    def _fetch(self, wanted: list[str], request: tuple[str, dict[str, str]]) -> dict[str, PriceQuote | QuoteError]:
        try:
            return self._fetch_checked(wanted, request)
        except Exception as exc:  # a parsing bug must not stop a sweep either; it is logged in full
            logger.exception("%s: unexpected error while fetching quotes", self.name)
            return {symbol: QuoteError(symbol, f"unexpected error ({type(exc).__name__})") for symbol in wanted}

    def _fetch_checked(
        self, wanted: list[str], request: tuple[str, dict[str, str]]
    ) -> dict[str, PriceQuote | QuoteError]:
        path, params = request
        try:
            payload = self._get_json(path, params)
            rows = self.answer_rows(payload)
        except AnswerError as exc:
            logger.debug("%s %s failed: %s", self.name, path, exc.reason)
            return {symbol: QuoteError(symbol, exc.reason) for symbol in wanted}
        by_symbol: dict[str, dict[str, Any]] = {}
        for row in rows:  # the batch answer holds every ticker of the category
            if isinstance(row, dict) and isinstance(row.get("symbol"), str):
                by_symbol.setdefault(row["symbol"].upper(), row)
        now = self.clock()
        results: dict[str, PriceQuote | QuoteError] = {}
        for symbol in wanted:
            row = by_symbol.get(symbol.upper())
            if row is None:
                results[symbol] = QuoteError(symbol, f"symbol missing from the {self.name} answer")
                continue
            try:
                quote = self.row_quote(symbol, row, payload)
                results[symbol] = check_fresh(quote, now=now, max_age_sec=self.max_age_sec)
            except QuoteError as exc:
                results[symbol] = exc
            except AnswerError as exc:
                results[symbol] = QuoteError(symbol, exc.reason)
        return results

    def _get_json(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        url = self.base_url + path
        try:
            response = self.session.get(url, params=params, timeout=self.timeout)
        except requests.Timeout:
            raise AnswerError(f"timeout after {self.timeout:g}s") from None
        except requests.RequestException as exc:
            raise AnswerError(f"connection error ({type(exc).__name__})") from None
        try:
            payload = response.json()
        except ValueError:
            payload = None
        if not 200 <= response.status_code < 300:
            code = self.error_code(payload) if isinstance(payload, dict) else None
            raise AnswerError(f"HTTP {response.status_code}" + (f", exchange code {code}" if code is not None else ""))
        if payload is None:
            content_type = response.headers.get("Content-Type", "?")
            raise AnswerError(f"answer is not JSON (HTTP {response.status_code}, {content_type})")
        if not isinstance(payload, dict):
            raise AnswerError(f"answer is JSON but not an object ({type(payload).__name__})")
        return payload

    def error_code(self, payload: dict[str, Any]) -> object:
        """The exchange's error code in an error answer, for the failure reason."""
        return None
