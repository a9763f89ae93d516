from __future__ import annotations

from datetime import datetime

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from pricing.quotes import PriceMode, PriceQuote, QuoteError, select_price
from pricing.sources import get_price_source

DEFAULT_SYMBOLS = ("BTCUSDT",)


class Command(BaseCommand):
    help = (
        "Show the configured price source, its client and base URL, the price mode, and the current quote "
        "(bid/ask/last/mark and the selected price) for each symbol; exits non-zero when any quote fails."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("symbols", nargs="*", help=f"Symbols to quote (default {' '.join(DEFAULT_SYMBOLS)}).")
        parser.add_argument(
            "--mode", choices=[mode.value for mode in PriceMode], help="Price mode to select (default PRICE_MODE)."
        )

    def handle(self, *args, **options) -> None:
        symbols = list(dict.fromkeys(s.strip().upper() for s in options["symbols"] if s.strip())) or list(
            DEFAULT_SYMBOLS
        )
        mode = PriceMode(options["mode"] or settings.PRICE_MODE)
        source = get_price_source()
        describe = getattr(source, "describe", None)
        self.stdout.write(f"source:  {settings.PRICE_SOURCE} / {getattr(source, 'name', type(source).__name__)}")
        self.stdout.write(f"client:  {describe() if callable(describe) else type(source).__name__}")
        if hasattr(source, "timeout"):
            self.stdout.write(f"timeout: {source.timeout:g}s, max quote age {source.max_age_sec:g}s")
        self.stdout.write(f"mode:    {mode}")
        failed = 0
        for symbol, answer in source.get_quotes(symbols).items():
            try:
                if isinstance(answer, QuoteError):
                    raise answer
                now = getattr(source, "now", None) or timezone.now()  # a replay source has its own clock
                self.stdout.write(f"{symbol}: {self._quote_line(answer, mode, now)}")
            except QuoteError as exc:
                failed += 1
                self.stdout.write(self.style.ERROR(f"{symbol}: ERROR {exc.reason}"))
        if failed:
            raise CommandError(f"{failed} of {len(symbols)} quotes failed")

    def _quote_line(self, quote: PriceQuote, mode: PriceMode, now: datetime) -> str:
        price = select_price(quote, mode)  # raises QuoteError for a mode the quote lacks
        age = (now - quote.ts).total_seconds()
        prices = "  ".join(f"{name} {getattr(quote, name) or '-'}" for name in ("bid", "ask", "last", "mark"))
        return f"{prices}  → {mode} {price}  (ts {quote.ts.isoformat()}, age {age:.1f}s)"
