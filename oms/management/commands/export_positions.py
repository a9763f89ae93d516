import os
import sys
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from oms.management.commands._cli import WHEN_HELP, parse_when
from oms.models import PositionStatus
from oms.selectors import positions_filtered
from oms.services.exports import positions_export


class Command(BaseCommand):
    help = (
        "Export positions (oldest first) for a spreadsheet: CSV with a header row, times in UTC ISO 8601, "
        "amounts as plain decimals; or JSON lines. Filters: epoch, status, symbol, strategy, opening time. "
        "Writes to --out FILE or to the terminal."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--format", dest="fmt", choices=["csv", "jsonl"], default="csv", help="csv (default) or jsonl"
        )
        parser.add_argument("--out", help="file to write (default: standard output)")
        parser.add_argument("--epoch", help="only this paper epoch (account_label)")
        parser.add_argument("--status", choices=list(PositionStatus.values), help="only open, closed or cancelled")
        parser.add_argument("--symbol", help="only this symbol")
        parser.add_argument("--strategy", help="only this strategy")
        parser.add_argument("--since", help=f"opened at or after this {WHEN_HELP}")
        parser.add_argument("--until", help=f"opened before this {WHEN_HELP}")

    def handle(self, *args, fmt, out, epoch, status, symbol, strategy, since, until, **options):
        positions = positions_filtered(
            status=status,
            symbol=symbol,
            strategy=strategy,
            account_label=epoch,
            since=parse_when(since, "--since"),
            until=parse_when(until, "--until"),
        )
        if not out:
            try:
                positions_export(positions, self.stdout, fmt=fmt)
                self.stdout.flush()
            except BrokenPipeError:
                _quiet_closed_stdout()  # `export_positions | head`: the reader has all it wanted
            return
        path = Path(out)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path, "w", newline="", encoding="utf-8") as handle:
                count = positions_export(positions, handle, fmt=fmt)
        except OSError as exc:
            raise CommandError(f"cannot write {path}: {exc}") from None
        sys.stderr.write(f"{count} positions written to {path}\n")


def _quiet_closed_stdout() -> None:
    """The reader closed the pipe: point stdout at /dev/null, so the interpreter's last flush at exit
    does not print a BrokenPipeError either."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (tests): nothing to silence
        pass
