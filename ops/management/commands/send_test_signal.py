import json
import os
from decimal import Decimal, InvalidOperation

from django.core.management.base import BaseCommand, CommandError

from ops.remote import signal_send_test


class Command(BaseCommand):
    help = (
        "Send one test bounce signal through the real HTTP API, exactly as the bot does (POST "
        "URL/signals/bounce with an API token), and print LOMS's answer. The signal has strategy "
        "loms_test_signal and a unique signal_id. Without --price the server's current price is used "
        "(GET URL/market). The token comes from --token or the LOMS_API_TOKEN environment variable "
        "(create one with `manage.py create_api_token NAME`). "
        "Exit code 0 position opened, 1 received but not opened (switch off, risk limit), 2 error."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--url",
            default=os.environ.get("LOMS_URL", "http://127.0.0.1:8000"),
            help="base URL of the running LOMS (default $LOMS_URL or http://127.0.0.1:8000)",
        )
        parser.add_argument("--token", default=None, help="API token (default $LOMS_API_TOKEN)")
        parser.add_argument("--symbol", default="BTCUSDT", help="symbol (default BTCUSDT)")
        parser.add_argument(
            "--side",
            default="BUY",
            type=str.upper,
            choices=["BUY", "SELL", "LONG", "SHORT"],
            help="BUY/LONG or SELL/SHORT (default BUY)",
        )
        parser.add_argument("--price", default=None, help="entry price (default: the server's current price)")
        parser.add_argument("--exchange", default="", help="exchange name (default: the server's DEFAULT_EXCHANGE)")
        parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait (default 10)")

    def handle(self, *args, url, token, symbol, side, price, exchange, timeout, **options):
        token = token if token is not None else os.environ.get("LOMS_API_TOKEN", "")
        if price is not None:
            try:
                price = Decimal(price)
            except InvalidOperation:
                raise CommandError(f"--price: {price!r} is not a number") from None
            if not price.is_finite() or price <= 0:
                raise CommandError("--price must be a positive number")
        if not token:
            self.stderr.write(
                "No token (--token or LOMS_API_TOKEN): sending without one, which only a dev "
                "server with API_ALLOW_ANONYMOUS accepts."
            )
        result = signal_send_test(
            url, token=token, symbol=symbol.upper(), side=side, price=price, exchange=exchange, timeout=timeout
        )
        if result.body is not None:
            self.stdout.write(json.dumps(result.body, indent=2))
        if result.error:
            self.stdout.write(self.style.ERROR(f"Test signal failed: {result.error}"))
            raise SystemExit(2)
        if result.opened:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Opened position #{result.body['position_id']} ({side} {symbol.upper()} @ {result.price}); "
                    "it is closed by TP/SL like any other, or close it from the console."
                )
            )
            return
        body = result.body or {}
        reason = body.get("reason") or body.get("risk_reason") or "see the answer above"
        self.stdout.write(self.style.WARNING(f"Received but NOT opened: {reason}"))
        raise SystemExit(1)
