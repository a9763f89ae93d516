from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from pricing.recording import QuoteFileWriter, Sample, open_output, record_quotes, sample_count
from pricing.sources import get_price_source


class Command(BaseCommand):
    help = (
        "Record quotes from the configured price source (PRICE_SOURCE/PRICE_EXCHANGE) into a .csv or .jsonl "
        "file with columns ts,symbol,bid,ask,last,mark, replayable with PRICE_SOURCE=replay."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--symbols", required=True, help="Comma-separated symbols, e.g. BTCUSDT,ETHUSDT.")
        parser.add_argument("--duration", type=float, default=60.0, help="Seconds to record (default 60).")
        parser.add_argument("--interval", type=float, default=1.0, help="Seconds between samples (default 1).")
        parser.add_argument("--out", required=True, help="Output file; .csv or .jsonl.")
        parser.add_argument("--overwrite", action="store_true", help="Replace the output file if it exists.")

    def handle(self, *args, **options) -> None:
        symbols = list(dict.fromkeys(s.strip().upper() for s in options["symbols"].split(",") if s.strip()))
        if not symbols:
            raise CommandError("--symbols: give at least one symbol")
        if options["duration"] <= 0 or options["interval"] <= 0:
            raise CommandError("--duration and --interval must be greater than 0")
        samples = sample_count(options["duration"], options["interval"])
        try:
            handle, fmt = open_output(Path(options["out"]), overwrite=options["overwrite"])
        except (ValueError, FileExistsError) as exc:
            raise CommandError(str(exc)) from None
        source = get_price_source()
        self.stdout.write(
            f"Recording {', '.join(symbols)} from {_describe(source)} ({settings.PRICE_SOURCE}): "
            f"{samples} samples every {options['interval']:g}s into {options['out']}"
        )
        with handle:
            writer = QuoteFileWriter(handle, fmt)
            result = record_quotes(
                source=source,
                symbols=symbols,
                samples=samples,
                interval=options["interval"],
                writer=writer,
                on_sample=self._progress,
            )
        self.stdout.write(f"Wrote {result.rows} rows ({result.samples} samples) to {options['out']}")
        if result.failures:
            failed = ", ".join(f"{symbol} ×{count}" for symbol, count in sorted(result.failures.items()))
            self.stdout.write(self.style.WARNING(f"Failed quotes: {failed}"))

    def _progress(self, sample: Sample) -> None:
        line = f"[{sample.number}/{sample.total}] {len(sample.quotes)} quotes"
        if sample.errors:
            line += ", failed: " + "; ".join(f"{error.symbol}: {error.reason}" for error in sample.errors)
        self.stdout.write(line)


def _describe(source) -> str:
    describe = getattr(source, "describe", None)
    return describe() if callable(describe) else getattr(source, "name", type(source).__name__)
