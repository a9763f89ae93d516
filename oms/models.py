"""LOMS domain: positions, their orders, the signals that opened them, the OMS switch."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from lomsite.rowsql import row_by

PRICE = {"max_digits": 28, "decimal_places": 10}


class Side(models.TextChoices):
    LONG = "long", "Long"
    SHORT = "short", "Short"


class BrokerMode(models.TextChoices):
    PAPER = "paper", "Paper"
    DEMO = "demo", "Exchange demo"
    LIVE = "live", "Live"


class MarketType(models.TextChoices):
    PAPER_SIM = "paper_sim", "Paper (simulated)"
    LINEAR_PERP = "linear_perp", "Linear perpetual"


class PositionStatus(models.TextChoices):
    OPEN = "open", "Open"
    CLOSED = "closed", "Closed"
    CANCELLED = "cancelled", "Cancelled"


class CloseReason(models.TextChoices):
    TP = "tp", "Take profit"
    SL = "sl", "Stop loss"
    TRAILING_SL = "trailing_sl", "Trailing stop"
    TIMEOUT = "timeout", "Timeout"
    MANUAL = "manual", "Manual"
    PANIC = "panic", "Panic (close all)"
    # Closed on the exchange, found by the reconciliation (demo/live, issue #11).
    EXCHANGE_TP = "exchange_tp", "Take profit on the exchange"
    EXCHANGE_SL = "exchange_sl", "Stop loss on the exchange"
    EXCHANGE_CLOSE = "exchange_close", "Closed on the exchange (liquidation, app)"
    FLATTEN = "flatten", "Flatten"
    # A stuck position (no usable price for its symbol: delisted, exchange gone), issue #12 §7: closed
    # by an operator at a price they enter (a trade, counted apart), or voided (status cancelled, no
    # PnL, no trade: counted as voided only).
    MANUAL_PRICE = "manual_price", "Closed at an operator's price"
    VOID = "void", "Voided"
    # Issue #12 §1-2: an exit signal from the bot (full or partial), and the first take profit of
    # the `tp_scale_out` policy (a partial exit: the reason of its exit order, not of the position).
    SIGNAL = "signal", "Exit signal"
    TP1 = "tp1", "Take profit 1 (partial)"
    BREAK_EVEN = "break_even", "Stop at break-even after TP1"


# A stop loss (or take profit) is one whether LOMS or the exchange executed it (issue #11): the
# trips, the SL cool-down and the figures count both.
STOP_LOSS_REASONS = (CloseReason.SL, CloseReason.EXCHANGE_SL)
TAKE_PROFIT_REASONS = (CloseReason.TP, CloseReason.EXCHANGE_TP)


class ExitStrategy(models.TextChoices):
    TP_SL_STATIC = "tp_sl_static", "Static TP/SL"
    TP_SL_TRAILING_V1 = "tp_sl_trailing_v1", "Trailing stop v1"
    TP_SCALE_OUT = "tp_scale_out", "Scale out at TP1, then trailing"


class SingleRow(models.Model):
    """A table of exactly one row (pk=1): a switch, a monitor."""

    class Meta:
        abstract = True

    @classmethod
    def load(cls):
        """The row, created with its defaults if it is missing. Read on every page and check: SQL
        built once (lomsite/rowsql.py)."""
        return row_by(cls, "id", 1) or cls.objects.get_or_create(pk=1)[0]


class PositionQuerySet(models.QuerySet):
    def open(self) -> PositionQuerySet:
        return self.filter(status=PositionStatus.OPEN)

    def closed(self) -> PositionQuerySet:
        return self.filter(status=PositionStatus.CLOSED)


class Position(models.Model):
    exchange = models.CharField(max_length=32)
    market_type = models.CharField(max_length=16, choices=MarketType.choices, default=MarketType.PAPER_SIM)
    symbol = models.CharField(max_length=30)
    side = models.CharField(max_length=5, choices=Side.choices)
    # The quantity still open. A partial exit lowers it and adds to `closed_qty`; `fee` holds every
    # fee paid (entry and each exit) and `realized_gross_pnl` the gross PnL of the partial exits, so
    # the final close books the whole trade's PnL once (issue #12 §2).
    qty = models.DecimalField(**PRICE)
    closed_qty = models.DecimalField(**PRICE, default=Decimal("0"))
    realized_gross_pnl = models.DecimalField(**PRICE, default=Decimal("0"))
    account_label = models.CharField(max_length=64, default="default")
    strategy = models.CharField(max_length=64, blank=True)
    timeframe_min = models.PositiveIntegerField(null=True, blank=True)
    external_order_id = models.CharField(max_length=64, blank=True, db_index=True)
    external_position_ref = models.CharField(max_length=64, blank=True)
    entry_price = models.DecimalField(**PRICE)
    tp_price = models.DecimalField(**PRICE, null=True, blank=True)
    sl_price = models.DecimalField(**PRICE, null=True, blank=True)
    status = models.CharField(max_length=10, choices=PositionStatus.choices, default=PositionStatus.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    closed_at = models.DateTimeField(null=True, blank=True)
    close_price = models.DecimalField(**PRICE, null=True, blank=True)
    pnl = models.DecimalField(**PRICE, null=True, blank=True)
    fee = models.DecimalField(**PRICE, default=Decimal("0"))
    # Paper funding paid (received if negative) so far, also counted in `fee` (oms/services/funding.py).
    funding = models.DecimalField(**PRICE, default=Decimal("0"))
    auto_close_reason = models.CharField(max_length=16, choices=CloseReason.choices, blank=True)
    exit_strategy = models.CharField(max_length=32, choices=ExitStrategy.choices, default=ExitStrategy.TP_SL_STATIC)
    dynamic_tp_price = models.DecimalField(**PRICE, null=True, blank=True)
    dynamic_sl_price = models.DecimalField(**PRICE, null=True, blank=True)
    max_favorable_move = models.DecimalField(**PRICE, null=True, blank=True)
    exit_meta = models.JSONField(default=dict, blank=True)
    # Where the position lives: paper (simulated) or on the exchange in demo/live (issue #11).
    broker_mode = models.CharField(max_length=5, choices=BrokerMode.choices, default=BrokerMode.PAPER)

    objects = PositionQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["status", "symbol"], name="position_status_symbol"),
            models.Index(fields=["-created_at", "-id"], name="position_newest"),
            models.Index(fields=["status", "closed_at"], name="position_status_closed"),
            models.Index(fields=["symbol", "-created_at"], name="position_symbol_newest"),
            models.Index(fields=["strategy", "-created_at"], name="position_strategy_newest"),
            # Covers the risk check's open count/notional (read on every signal) without table lookups.
            models.Index(fields=["status", "symbol", "entry_price", "qty"], name="position_exposure"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(qty__gt=0), name="position_qty_positive"),
            models.CheckConstraint(condition=Q(entry_price__gt=0), name="position_entry_positive"),
            models.CheckConstraint(
                condition=~Q(status=PositionStatus.CLOSED)
                | Q(closed_at__isnull=False, close_price__isnull=False, pnl__isnull=False),
                name="position_closed_has_result",
            ),
            models.CheckConstraint(
                condition=Q(closed_at__isnull=True) | Q(closed_at__gte=F("created_at")),
                name="position_closed_after_created",
            ),
        ]
        permissions = [
            ("close_position", "Can close positions (one, selected or all)"),
            ("trade", "Can send signals (the bot)"),
            ("create_order", "Can open positions by hand (POST /orders)"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.side} {self.qty} {self.symbol} @ {self.entry_price} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status == PositionStatus.OPEN

    @property
    def notional(self) -> Decimal:
        return self.entry_price * self.qty

    @property
    def opened_notional(self) -> Decimal:
        """The notional at open (the whole size, partial exits included)."""
        return self.entry_price * self.opened_qty

    @property
    def opened_qty(self) -> Decimal:
        """The size at open: what is still open plus what partial exits closed."""
        return self.qty + self.closed_qty

    @property
    def realized_pnl(self) -> Decimal:
        """What the exits so far have made after every fee paid so far; a closed position's `pnl`."""
        return self.pnl if self.pnl is not None else self.realized_gross_pnl - self.fee


class OrderStatus(models.TextChoices):
    CREATED = "created", "Created"
    SUBMITTED = "submitted", "Submitted"  # sent to the exchange, answer not yet known
    PARTIALLY_FILLED = "partial", "Partially filled"
    FILLED = "filled", "Filled"
    CANCELLED = "cancelled", "Cancelled"
    REJECTED = "rejected", "Rejected"


class TradeSide(models.TextChoices):
    BUY = "buy", "Buy"
    SELL = "sell", "Sell"


class OrderPurpose(models.TextChoices):
    ENTRY = "entry", "Entry"
    EXIT = "exit", "Exit"


class Order(models.Model):
    position = models.ForeignKey(Position, on_delete=models.PROTECT, related_name="orders", null=True, blank=True)
    exchange = models.CharField(max_length=32)
    symbol = models.CharField(max_length=30)
    side = models.CharField(max_length=5, choices=Side.choices)
    qty = models.DecimalField(**PRICE)
    order_type = models.CharField(max_length=10, default="market")
    price = models.DecimalField(**PRICE, null=True, blank=True, help_text="Fill price")
    tp_price = models.DecimalField(**PRICE, null=True, blank=True)
    sl_price = models.DecimalField(**PRICE, null=True, blank=True)
    status = models.CharField(max_length=10, choices=OrderStatus.choices, default=OrderStatus.CREATED)
    purpose = models.CharField(max_length=5, choices=OrderPurpose.choices, default=OrderPurpose.ENTRY)
    created_at = models.DateTimeField(default=timezone.now)
    # Exchange orders (demo/live, issue #11); paper orders leave them empty.
    trade_side = models.CharField(max_length=4, choices=TradeSide.choices, blank=True)
    reduce_only = models.BooleanField(default=False)
    client_order_id = models.CharField(max_length=36, null=True, blank=True, unique=True)
    exchange_order_id = models.CharField(max_length=64, blank=True)
    filled_qty = models.DecimalField(**PRICE, null=True, blank=True)
    fee = models.DecimalField(**PRICE, null=True, blank=True)
    # A partial exit's net PnL (its gross PnL less its own fee), booked when it fills; counted by the
    # daily-loss and drawdown trips while the position stays open. Null otherwise: a close's PnL is the position's.
    partial_exit_pnl = models.DecimalField(**PRICE, null=True, blank=True)
    # An exit order's close reason (a partial exit's reason is recorded only here).
    close_reason = models.CharField(max_length=16, choices=CloseReason.choices, blank=True)
    error = models.TextField(blank=True)
    updated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["-created_at", "-id"], name="order_newest"),
            models.Index(fields=["status", "created_at"], name="order_status_created"),
            # The trips (oms.services.trips) read the partial exits filled since a time after every exit.
            models.Index(
                Coalesce("updated_at", "created_at"),
                condition=Q(partial_exit_pnl__isnull=False),
                name="order_partial_exit_filled",
            ),
        ]
        constraints = [models.CheckConstraint(condition=Q(qty__gt=0), name="order_qty_positive")]

    def __str__(self) -> str:
        return f"order #{self.pk} {self.purpose} {self.side} {self.qty} {self.symbol} ({self.status})"


class SignalOutcome(models.TextChoices):
    OPENED = "opened", "Opened"
    RISK_BLOCKED = "risk_blocked", "Blocked by risk"
    OMS_DISABLED = "oms_disabled", "OMS disabled"
    DUPLICATE = "duplicate", "Duplicate"
    BROKER_REJECTED = "broker_rejected", "Refused by the exchange"
    REJECTED = "rejected", "Rejected (invalid)"
    # Exit and stop signals (`/signals/exit`, `/signals/stop`, issue #12 §1).
    RECEIVED = "received", "Received (being carried out)"
    CLOSED = "closed", "Closed"
    PARTIALLY_CLOSED = "partially_closed", "Partially closed"
    STOP_MOVED = "stop_moved", "Stop moved"
    NOT_MOVED = "not_moved", "Stop not moved"
    NO_MATCH = "no_match", "No matching position"
    AMBIGUOUS = "ambiguous", "Several positions match"
    ALREADY_CLOSED = "already_closed", "Already closed"
    FAILED = "failed", "Not carried out (retry)"


class SignalKind(models.TextChoices):
    ENTRY = "entry", "Entry (/signals/bounce)"
    EXIT = "exit", "Exit (/signals/exit)"
    STOP = "stop", "Stop move (/signals/stop)"


class Signal(models.Model):
    received_at = models.DateTimeField(default=timezone.now)
    kind = models.CharField(max_length=5, choices=SignalKind.choices, default=SignalKind.ENTRY)
    payload = models.JSONField(default=dict)
    symbol = models.CharField(max_length=30, blank=True)
    side = models.CharField(max_length=5, blank=True)
    strategy = models.CharField(max_length=64, blank=True)
    exchange = models.CharField(max_length=32, blank=True)
    outcome = models.CharField(max_length=16, choices=SignalOutcome.choices)
    reason = models.TextField(blank=True)
    dedupe_key = models.CharField(max_length=128, null=True, blank=True, unique=True)
    duplicate_of = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="duplicates"
    )
    position = models.ForeignKey(Position, on_delete=models.SET_NULL, null=True, blank=True, related_name="signals")
    response = models.JSONField(default=dict, help_text="The body answered to the bot")

    class Meta:
        ordering = ["-received_at", "-id"]
        indexes = [
            models.Index(fields=["-received_at", "-id"], name="signal_newest"),
            models.Index(fields=["symbol", "received_at"], name="signal_symbol_received"),
            models.Index(fields=["outcome", "-received_at"], name="signal_outcome_newest"),
        ]

    def __str__(self) -> str:
        return f"signal #{self.pk} {self.symbol} {self.side} → {self.outcome}"


class OmsControl(SingleRow):
    """The runtime OMS switch: a single row (pk=1), also the lock that serialises position opens."""

    enabled = models.BooleanField(default=True)
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True)
    # The paper book new positions are booked in (their account_label); `manage.py new_epoch`.
    epoch = models.CharField(max_length=64, default="default")
    epoch_started_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "OMS switch"
        verbose_name_plural = "OMS switch"
        permissions = [("change_switch", "Can turn the OMS switch on or off")]

    def __str__(self) -> str:
        return f"OMS {'ON' if self.enabled else 'OFF'}"


class Epoch(models.Model):
    """The starting capital of a paper epoch (issue #12 §4), recorded by `new_epoch`. An epoch
    without a row (one started before capitals existed, or the first, `default`) starts with
    STARTING_CAPITAL_USDT. Its equity is this capital plus the net PnL of its closed positions."""

    name = models.CharField(max_length=64, unique=True)
    starting_capital = models.DecimalField(**PRICE)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(starting_capital__gt=0), name="epoch_capital_positive")]

    def __str__(self) -> str:
        return f"epoch {self.name} ({self.starting_capital} USDT)"


class SwitchSource(models.TextChoices):
    DASHBOARD = "dashboard", "Dashboard"
    ADMIN = "admin", "Admin"
    API = "api", "API"
    COMMAND = "command", "Command"
    AUTO = "auto", "Automatic trip"


class OmsSwitchChange(models.Model):
    enabled = models.BooleanField()
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.CharField(max_length=150)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True)
    reason = models.TextField()
    source = models.CharField(max_length=10, choices=SwitchSource.choices)

    class Meta:
        ordering = ["-changed_at", "-id"]

    def __str__(self) -> str:
        return f"{'ON' if self.enabled else 'OFF'} by {self.changed_by} at {self.changed_at:%Y-%m-%d %H:%M:%S}"

    @property
    def changed_by_names_source(self) -> bool:
        """True when `changed_by` already ends with its source (`root (command)`, as `manage.py
        oms_switch` records it), so a page must not add `(command)` a second time."""
        return self.changed_by.strip().lower().endswith(f"({self.get_source_display().lower()})")


class StrategyControl(models.Model):
    """One strategy's own switch and limits, beside the global switch (issue #12 §5).

    A strategy without a row is on, with no limits of its own. Changed only through
    `oms.services.strategies.strategy_control_set`, which records each change in the operator audit.
    """

    strategy = models.CharField(max_length=64, unique=True)  # as Position.strategy, exactly
    enabled = models.BooleanField(default=True)
    max_open_positions = models.PositiveIntegerField(null=True, blank=True)
    max_positions_per_day = models.PositiveIntegerField(null=True, blank=True)  # opened since 00:00 UTC
    max_exposure_usdt = models.DecimalField(**PRICE, null=True, blank=True)  # open notional, entry × qty
    changed_at = models.DateTimeField(default=timezone.now)
    changed_by = models.CharField(max_length=150, blank=True)
    reason = models.TextField(blank=True)

    class Meta:
        ordering = ["strategy"]
        constraints = [
            models.CheckConstraint(condition=~Q(strategy=""), name="strategycontrol_named"),
            models.CheckConstraint(
                condition=Q(max_exposure_usdt__isnull=True) | Q(max_exposure_usdt__gt=0),
                name="strategycontrol_exposure_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"strategy {self.strategy} {'ON' if self.enabled else 'OFF'}"


class BookVersion(models.Model):
    """A token that changes with every open and close (single row, pk=1).

    Figures computed over the whole book (stats, equity curve) are cached under it: reading it is
    one primary-key lookup, where fingerprinting the positions table grows with the table.
    """

    token = models.CharField(max_length=32, default="initial")

    def __str__(self) -> str:
        return f"book version {self.token}"


class AutoCloseMonitor(SingleRow):
    """Running figures of the auto-close sweeps (single row, pk=1), shown on /health."""

    last_sweep_at = models.DateTimeField(null=True, blank=True)
    last_sweep_duration_ms = models.FloatField(null=True, blank=True)
    sweeps = models.BigIntegerField(default=0)
    positions_checked = models.BigIntegerField(default=0)
    positions_closed = models.BigIntegerField(default=0)
    errors = models.BigIntegerField(default=0)
    last_error = models.TextField(blank=True)
    last_error_at = models.DateTimeField(null=True, blank=True)
    quote_failures = models.JSONField(
        default=dict, blank=True, help_text="Failed quotes per symbol: {symbol: {count, last_error, last_at}}"
    )
    last_sweep_checked = models.IntegerField(default=0)
    last_sweep_closed = models.IntegerField(default=0)
    last_sweep_failed_symbols = models.JSONField(default=list, blank=True)
    close_failures = models.JSONField(
        default=dict,
        blank=True,
        help_text="Positions whose exit failed in the last sweep: {id: {count, last_error, since, last_at}}",
    )
    # The sweep lease: whoever holds an unexpired lease is the only one allowed to sweep.
    lease_owner = models.CharField(max_length=64, blank=True)
    lease_pid = models.IntegerField(null=True, blank=True)
    lease_host = models.CharField(max_length=255, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    lease_acquired_at = models.DateTimeField(null=True, blank=True)
    loops_started = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "auto-close monitor"

    def __str__(self) -> str:
        return f"auto-close: {self.sweeps} sweeps, {self.positions_closed} closed"


class SweepRun(models.Model):
    """One auto-close sweep (recent history, pruned): proves sweeps never overlap and never pause."""

    started_at = models.DateTimeField()
    finished_at = models.DateTimeField()
    duration_ms = models.FloatField()
    owner = models.CharField(max_length=64, blank=True, help_text="Lease owner (loop) that ran it")
    checked = models.IntegerField(default=0)
    closed = models.IntegerField(default=0)
    failed_symbols = models.IntegerField(default=0)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]
        indexes = [models.Index(fields=["started_at"], name="sweeprun_started")]

    def __str__(self) -> str:
        return f"sweep {self.started_at:%H:%M:%S.%f} {self.duration_ms:.1f} ms, {self.closed} closed"


class NotificationStatus(models.TextChoices):
    PENDING = "pending", "Pending"  # waiting to be sent (first time or for a retry at next_attempt_at)
    SENDING = "sending", "Sending"  # claimed by one sender
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"  # gave up after NOTIFY_MAX_ATTEMPTS
    SUPPRESSED = "suppressed", "Suppressed"  # the same alert was sent less than NOTIFY_REPEAT_MIN ago
    UNCONFIGURED = "unconfigured", "Not sent (no NOTIFY_URLS)"


class Notification(models.Model):
    """One alert to the operators (oms/services/notify.py): recorded first, sent by a django-q task."""

    kind = models.CharField(max_length=32)
    dedupe_key = models.CharField(max_length=200)
    level = models.CharField(max_length=16, default="warning")
    title = models.CharField(max_length=250)
    body = models.TextField(blank=True)
    status = models.CharField(max_length=16, choices=NotificationStatus.choices, default=NotificationStatus.PENDING)
    attempts = models.IntegerField(default=0)
    suppressed_count = models.IntegerField(default=0, help_text="Repeats folded into this suppressed row")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["dedupe_key", "created_at"], name="notification_dedupe"),
            models.Index(fields=["status", "next_attempt_at"], name="notification_due"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.status}: {self.title}"


class HealthReasonSeen(models.Model):
    """A degraded-health reason and since when it holds, so an alert fires only when it lasts."""

    code = models.CharField(max_length=64, unique=True)
    message = models.CharField(max_length=500, blank=True)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    notified_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.code} since {self.first_seen_at:%Y-%m-%d %H:%M:%S}"


class AuditSpool(models.Model):
    """An audit line that could not be appended to `AUDIT_LOG_PATH` (disk full, permissions…).

    Kept here until `oms.services.audit.audit_spool_flush()` writes it; while any is pending,
    `/health` is degraded (`audit_spool_pending()`).
    """

    created_at = models.DateTimeField(default=timezone.now)
    signal_row_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    line = models.TextField(help_text="The JSON line, exactly as it is to be appended")
    error = models.CharField(max_length=300, blank=True)

    def __str__(self) -> str:
        return f"audit spool #{self.pk} (signal {self.signal_row_id})"


class BookFigure(models.Model):
    """Figures of the book maintained in the transaction of every open and close (oms.services.figures).

    One row per `kind` (the dimensions the row is keyed by, e.g. "account_label,symbol"; "" is the
    whole book), per value of those dimensions (the other dimension columns stay blank), and per
    `day`: ALL_TIME for the whole history, or a UTC closing day (kept for the kinds in
    oms.services.figures.DAY_KINDS). Money in integer units of 1e-10 USDT (exact on every database).
    """

    ALL_TIME = date(1, 1, 1)

    rid = models.CharField(max_length=300, unique=True, help_text="kind, dimension values and day, one string")
    kind = models.CharField(max_length=64, blank=True)
    account_label = models.CharField(max_length=64, blank=True)
    symbol = models.CharField(max_length=30, blank=True)
    strategy = models.CharField(max_length=64, blank=True)
    exchange = models.CharField(max_length=32, blank=True)
    day = models.DateField()
    positions = models.BigIntegerField(default=0)
    open_positions = models.BigIntegerField(default=0)
    trades = models.BigIntegerField(default=0)
    wins = models.BigIntegerField(default=0)
    losses = models.BigIntegerField(default=0)
    tp_count = models.BigIntegerField(default=0)
    sl_count = models.BigIntegerField(default=0)
    trailing_sl_count = models.BigIntegerField(default=0)
    manual_count = models.BigIntegerField(default=0)
    timeout_count = models.BigIntegerField(default=0)
    panic_count = models.BigIntegerField(default=0)
    manual_price_count = models.BigIntegerField(default=0)
    voided_count = models.BigIntegerField(default=0)  # voided positions (no trade): ALL_TIME rows only
    pnl = models.BigIntegerField(default=0)
    fees = models.BigIntegerField(default=0)
    gross_win = models.BigIntegerField(default=0)
    gross_loss = models.BigIntegerField(default=0)
    peak = models.BigIntegerField(default=0)
    trough = models.BigIntegerField(default=0)
    drawdown = models.BigIntegerField(default=0)
    first_created_at = models.DateTimeField(null=True, blank=True)
    last_created_at = models.DateTimeField(null=True, blank=True)
    last_closed_at = models.DateTimeField(null=True, blank=True)
    last_id = models.BigIntegerField(null=True, blank=True)

    class Meta:
        indexes = [models.Index(fields=["kind", "day"], name="bookfigure_kind_day")]

    def __str__(self) -> str:
        return f"book figure {self.rid!r}: {self.positions} positions, {self.trades} trades"


class BrokerMonitor(SingleRow):
    """The last reconciliation with the exchange (single row, pk=1), shown on /health (issue #11)."""

    last_run_at = models.DateTimeField(null=True, blank=True)
    last_state = models.CharField(max_length=16, blank=True, help_text="ok, mismatch or error")
    last_detail = models.TextField(blank=True)
    runs = models.BigIntegerField(default=0)
    closed_by_exchange = models.BigIntegerField(default=0)

    class Meta:
        verbose_name = "broker monitor"

    def __str__(self) -> str:
        return f"reconciliation: {self.last_state or 'never'}"


class OperatorSource(models.TextChoices):
    CONSOLE = "console", "Console"
    API = "api", "API"
    ADMIN = "admin", "Admin"
    COMMAND = "command", "Command"


class OperatorActionKind(models.TextChoices):
    CLOSE = "close", "Close"
    CLOSE_ALL = "close_all", "Close all"
    FLATTEN = "flatten", "Flatten"
    SWITCH = "switch", "Switch"
    STOP_MOVE = "stop_move", "Stop move"
    ROLE_CHANGE = "role_change", "Role change"
    TOKEN_CREATED = "token_created", "API token created"
    TOKEN_ROTATED = "token_rotated", "API token rotated"
    RESTORE = "restore", "Restore"
    EPOCH = "epoch", "New epoch"
    SETTLE_PRICE = "settle_price", "Closed at a given price"
    VOID = "void", "Voided"
    STRATEGY = "strategy", "Strategy control"  # a strategy's switch or limits (issue #12 §5)


class OperatorAction(models.Model):
    """One manual action by an operator: who, when, from where, what, on which position and why (issue #12 §6)."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    actor = models.CharField(max_length=150)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=10, choices=OperatorSource.choices)
    action = models.CharField(max_length=16, choices=OperatorActionKind.choices)
    position = models.ForeignKey(
        Position, on_delete=models.SET_NULL, null=True, blank=True, related_name="operator_actions"
    )
    reason = models.TextField(blank=True)
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        indexes = [
            models.Index(fields=["action", "at"], name="operatoraction_action_at"),
            models.Index(fields=["actor", "at"], name="operatoraction_actor_at"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.get_action_display()} by {self.actor} ({self.get_source_display()}) at {self.at:%Y-%m-%d %H:%M:%S}"
        )


class PositionFunding(models.Model):
    """One funding payment of an open paper position at one funding time (oms/services/funding.py).

    `amount` = qty × price × rate, positive when the position paid (a long at a positive rate),
    negative when it received; it is added to the position's `fee` and `funding` in the same
    transaction. Unique per (position, funding time): a funding time is booked at most once.
    """

    position = models.ForeignKey(Position, on_delete=models.PROTECT, related_name="fundings")
    funding_time = models.DateTimeField()
    rate = models.DecimalField(**PRICE)
    price = models.DecimalField(**PRICE, help_text="Mark price when booked")
    qty = models.DecimalField(**PRICE)
    amount = models.DecimalField(**PRICE, help_text="Paid (positive) or received (negative), in USDT")
    booked_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["funding_time", "id"]
        constraints = [
            models.UniqueConstraint(fields=["position", "funding_time"], name="position_funding_once"),
        ]

    def __str__(self) -> str:
        return f"#{self.position_id} funding {self.funding_time:%Y-%m-%d %H:%M} {self.amount}"
