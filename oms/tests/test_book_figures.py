"""One source of truth for every figure, and the figures maintained as trades happen.

- the same book gives the same figures through /stats (maintained figures and SQL), the overview,
  shadow_report, print_stats and the trips;
- a property test (hypothesis) builds random books through the record_open / record_closes hooks —
  closes in random order, batches, backdated and future-dated positions — and compares every
  /stats filter combination and group_by with a from-scratch computation (and with the SQL path);
- the real open and close paths (signal intake, manual close, auto-close sweep) keep them exact.
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import combinations

import pytest
from django.core.management import call_command
from django.db import transaction
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oms.metrics import Drawdown, Sums, drawdown_summaries, stats_figures
from oms.models import BookFigure, CloseReason, Position, PositionStatus
from oms.selectors import book_stats, position_stats, position_stats_grouped, positions_filtered
from oms.services.figures import (
    DIMS,
    book_figures_rebuild,
    book_figures_record_closes,
    book_figures_record_open,
    figures_can_serve,
    figures_stats,
)
from oms.services.shadow import shadow_report
from oms.services.trips import TripLimits, current_drawdown
from oms.tests.factories import closed_position, open_position

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 6, 1, 22, 0, tzinfo=UTC)
REASONS = [
    CloseReason.TP,
    CloseReason.SL,
    CloseReason.TRAILING_SL,
    CloseReason.TIMEOUT,
    CloseReason.MANUAL,
    CloseReason.PANIC,
    CloseReason.EXCHANGE_TP,
    CloseReason.EXCHANGE_SL,
    CloseReason.EXCHANGE_CLOSE,
    CloseReason.MANUAL_PRICE,
    CloseReason.VOID,
]  # void: cancelled, no PnL, counted as voided (issue #12 §7)
GROUPS = [None, "symbol", "strategy", "exchange", "day"]


# --- the reference: from scratch, in Python, with oms.metrics ---------------------------------------


def reference(filters: dict, group_by: str | None):
    positions = list(positions_filtered(**filters))

    def figures(items: list[Position], *, day: bool = False) -> dict:
        closed = sorted((p for p in items if p.status == PositionStatus.CLOSED), key=lambda p: (p.closed_at, p.pk))
        pnls = [p.pnl for p in closed]
        sums = Sums(
            total_positions=len(closed) if day else len(items),
            open_positions=0 if day else sum(p.status == PositionStatus.OPEN for p in items),
            closed_positions=len(closed),
            winning_trades=sum(x > 0 for x in pnls),
            losing_trades=sum(x < 0 for x in pnls),
            tp_count=sum(p.auto_close_reason in ("tp", "exchange_tp") for p in closed),
            sl_count=sum(p.auto_close_reason in ("sl", "exchange_sl") for p in closed),
            trailing_sl_count=sum(p.auto_close_reason == "trailing_sl" for p in closed),
            manual_count=sum(p.auto_close_reason == "manual" for p in closed),
            timeout_count=sum(p.auto_close_reason == "timeout" for p in closed),
            panic_count=sum(p.auto_close_reason == "panic" for p in closed),
            manual_price_count=sum(p.auto_close_reason == "manual_price" for p in closed),
            voided_count=0
            if day
            else sum(p.status == PositionStatus.CANCELLED and p.auto_close_reason == "void" for p in items),
            total_pnl=sum(pnls, Decimal(0)),
            total_fees=sum((p.fee for p in closed), Decimal(0)),
            gross_win=sum((x for x in pnls if x > 0), Decimal(0)),
            gross_loss=sum((x for x in pnls if x < 0), Decimal(0)),
            first_trade_at=min((p.created_at for p in (closed if day else items)), default=None),
            last_trade_at=max((p.created_at for p in (closed if day else items)), default=None),
            last_close_at=max((p.closed_at for p in closed), default=None),
        )
        return stats_figures(sums, Drawdown.of(pnls).drawdown)

    if group_by is None:
        return figures(positions)
    groups = defaultdict(list)
    for position in positions:
        if group_by == "day":
            if position.status == PositionStatus.CLOSED:
                groups[position.closed_at.astimezone(UTC).date().isoformat()].append(position)
        else:
            groups[getattr(position, group_by)].append(position)
    return [{group_by: key, **figures(groups[key], day=group_by == "day")} for key in sorted(groups)]


def assert_same(served, expected, *, approx: bool = False):
    if isinstance(expected, list):
        assert len(served) == len(expected)
        for a, b in zip(served, expected, strict=True):
            assert_same(a, b, approx=approx)
        return
    assert set(served) == set(expected)
    for key, value in expected.items():
        got = served[key]
        if approx and isinstance(value, Decimal) and got is not None:
            assert abs(Decimal(str(got)) - value) <= Decimal("1e-8"), (key, got, value)
        elif approx and isinstance(value, float):
            assert got == pytest.approx(value, abs=1e-6), (key, got, value)
        else:
            assert got == value, (key, got, value)


def all_filters(book: list[Position]):
    values = {name: sorted({getattr(p, name) for p in book}) or ["x"] for name in DIMS}
    for n in range(len(DIMS) + 1):
        for names in combinations(DIMS, n):
            yield {name: values[name][0] for name in names}
            yield {name: values[name][-1] for name in names}


def check_everything(extra_filters: list[dict] = ()):
    book = list(Position.objects.all())
    for filters in [*all_filters(book), *extra_filters]:
        for group_by in GROUPS:
            expected = reference(filters, group_by)
            assert_same(book_stats(filters, group_by), expected)
            if figures_can_serve(filters, group_by):
                assert_same(figures_stats(filters, group_by), expected)
            queryset = positions_filtered(**filters)
            sql = position_stats_grouped(queryset, group_by) if group_by else position_stats(queryset)
            assert_same(sql, expected, approx=True)


# --- 1. one source of truth -------------------------------------------------------------------------


def test_the_same_book_gives_the_same_figures_everywhere(anon_client):
    pnls = ["12.5", "-4.25", "30", "-18.125", "-7", "0", "9.0000000001", "-2.5"]
    for i, pnl in enumerate(pnls):
        closed_position(
            pnl=pnl,
            closed_at=T0 + timedelta(hours=5 * i),
            reason=REASONS[i % 6],
            symbol="BTCUSDT" if i % 3 else "ETHUSDT",
            strategy=f"s{i % 2}",
            fee="0.1",
        )
    open_position(created_at=T0)
    expected = reference({}, None)
    assert expected["max_drawdown"] == Decimal("25.125") and expected["closed_positions"] == 8

    api = anon_client.get("/stats").json()
    stats = book_stats({})
    sql = position_stats(positions_filtered())
    out = io.StringIO()
    call_command("print_stats", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    from oms.console.views import _overview_figures

    overview = _overview_figures(TripLimits(None, Decimal("1000"), None), None)
    shadow = shadow_report(now=T0 + timedelta(days=10))["metrics"]

    assert_same(stats, expected)
    assert_same(sql, expected)
    assert_same(overview["stats"], expected)
    for key in ("total_pnl", "max_drawdown", "profit_factor", "expectancy", "avg_pnl_win", "avg_pnl_loss"):
        assert api[key] == printed[key] == pytest.approx(float(expected[key]))  # JSON numbers, as the API
    assert api["winrate"] == printed["winrate"] == expected["winrate"]
    assert shadow["closed_trades"] == expected["closed_positions"]
    assert (shadow["wins"], shadow["losses"]) == (expected["winning_trades"], expected["losing_trades"])
    assert shadow["winrate_pct"] == expected["winrate"]
    assert shadow["total_pnl"] == expected["total_pnl"] and shadow["max_drawdown"] == expected["max_drawdown"]
    assert shadow["profit_factor"] == expected["profit_factor"] and shadow["expectancy"] == expected["expectancy"]
    assert (shadow["avg_win"], shadow["avg_loss"]) == (expected["avg_pnl_win"], expected["avg_pnl_loss"])
    assert shadow_report(now=T0 + timedelta(days=10))["equity_curve"][-1][1] == expected["total_pnl"]
    assert overview["chart"].last_value == expected["total_pnl"]
    # the trips' current drawdown: the same Drawdown summary, in SQL
    summary = Drawdown.of(Decimal(p) for p in pnls)
    assert current_drawdown(since=None) == summary.current == overview["trip_figures"].drawdown
    for hours in (-1, 0, 7, 12, 30, 200):  # armed at any time: the same as the SQL window from scratch
        since = T0 + timedelta(hours=hours)
        from_scratch = drawdown_summaries(Position.objects.filter(closed_at__gt=since)).get("0", Drawdown())
        assert current_drawdown(since=since) == from_scratch.current


def test_the_equity_and_return_are_the_same_everywhere(anon_client, operator, tmp_path):
    from django.test import Client

    from oms.metrics import equity, return_pct
    from oms.services.epochs import epoch_start

    closed_position(pnl="40", account_label="default")  # another epoch's trade: not in this equity
    epoch_start(name="e1", capital=Decimal("1250"), actor="test")
    for i, pnl in enumerate(["12.5", "-30.25", "7.0000000001"]):
        closed_position(pnl=pnl, closed_at=T0 + timedelta(hours=i), account_label="e1")
    open_position(account_label="e1")
    capital, total = Decimal("1250"), Decimal("12.5") - Decimal("30.25") + Decimal("7.0000000001")
    expected = {
        "epoch": "e1",
        "starting_capital": capital,
        "equity": equity(capital, total),
        "return_pct": return_pct(capital, equity(capital, total)),
    }
    assert expected["equity"] == Decimal("1239.2500000001") and expected["return_pct"] == Decimal("-0.8600")

    api = anon_client.get("/stats").json()  # the current epoch, e1
    assert anon_client.get("/stats", {"account_label": "e1"}).json()["equity"] == api["equity"]
    out = io.StringIO()
    call_command("print_stats", "--json", stdout=out)
    printed = json.loads(out.getvalue())
    from oms.console.views import _overview_figures

    overview = _overview_figures(TripLimits(None, None, None), None)["equity"]
    web = Client()
    web.force_login(operator)
    page = web.get("/console/stats").context["equity"]
    shadow = shadow_report(epoch="e1", now=T0 + timedelta(days=10))
    html = tmp_path / "shadow.html"
    out = io.StringIO()
    with pytest.raises(SystemExit):  # NO-GO: too few trades
        call_command("shadow_report", "--json", "--html", str(html), stdout=out)
    shadow_json = json.loads(out.getvalue())["equity"]

    assert overview == page == shadow["equity"] == expected
    for served in (api, printed, shadow_json):
        assert served["epoch"] == "e1"
        for key in ("starting_capital", "equity", "return_pct"):
            assert served[key] == pytest.approx(float(expected[key])), key  # JSON numbers
    assert ">1239.25" in html.read_text()
    # the equity is the capital plus the epoch's net PnL as /stats counts it
    assert expected["equity"] == capital + book_stats({"account_label": "e1"})["total_pnl"]


def test_drawdown_summaries_compose_like_the_whole_sequence():
    pnls = [Decimal(x) for x in ["3", "-5", "2", "7", "-11", "4", "-1", "6", "-2"]]
    whole = Drawdown.of(pnls)
    for cut in range(len(pnls) + 1):
        assert Drawdown.of(pnls[:cut]).then(Drawdown.of(pnls[cut:])) == whole
    assert whole.drawdown == Decimal("11") and whole.current == Decimal("4")  # equity 3 -2 0 7 -4 0 -1 5 3


# --- 2. maintained exactly --------------------------------------------------------------------------

POSITION = st.tuples(
    st.integers(0, 1),  # epoch
    st.integers(0, 2),  # symbol
    st.integers(0, 1),  # strategy
    st.integers(0, 1),  # exchange
    st.integers(-3 * 1440, 3 * 1440),  # created, minutes from T0
    st.one_of(st.none(), st.integers(0, 2 * 1440)),  # closed after created (minutes); None: stays open
    st.integers(-(10**6), 10**6).map(lambda cents: Decimal(cents) / 10**4),  # pnl
    st.sampled_from(REASONS),
    st.booleans(),  # inserted already closed (as a restore or a factory does) instead of closed later
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    book=st.lists(POSITION, max_size=14),
    close_order=st.randoms(use_true_random=False),
    batch=st.integers(1, 4),
    since=st.integers(-3 * 1440, 3 * 1440),
    span=st.integers(1, 4 * 1440),
)
def test_maintained_figures_equal_a_from_scratch_computation(book, close_order, batch, since, span):
    with transaction.atomic():
        to_close = []
        for epoch, symbol, strategy, exchange, created, closed, pnl, reason, inserted_closed in book:
            created_at = T0 + timedelta(minutes=created)
            position = Position.objects.create(
                exchange=f"ex{exchange}",
                symbol=f"S{symbol}USDT",
                side="long",
                qty=Decimal("1"),
                entry_price=Decimal("100"),
                account_label=f"e{epoch}",
                strategy=f"st{strategy}",
                created_at=created_at,
                fee=Decimal("0.0125"),
            )
            values = {
                "status": PositionStatus.CLOSED,
                "close_price": Decimal("100") + pnl,
                "pnl": pnl,
                "auto_close_reason": reason,
                "closed_at": created_at + timedelta(minutes=closed) if closed is not None else None,
            }
            if reason == CloseReason.VOID:  # voided: cancelled, no close price, no PnL, not a trade
                values.update(status=PositionStatus.CANCELLED, close_price=None, pnl=None)
            if closed is not None and inserted_closed:
                Position.objects.filter(pk=position.pk).update(**values)
                book_figures_record_open(position)
                continue
            book_figures_record_open(position)
            if closed is not None:
                to_close.append((position, values))
        close_order.shuffle(to_close)  # closes arrive in any order: some sort before earlier ones
        for start in range(0, len(to_close), batch):
            chunk = to_close[start : start + batch]
            for position, values in chunk:
                Position.objects.filter(pk=position.pk).update(**values)
            book_figures_record_closes([position for position, _ in chunk])
        since_at = T0 + timedelta(minutes=since)
        check_everything(
            [
                {"since": since_at},
                {"until": since_at + timedelta(minutes=span)},
                {"since": since_at, "until": since_at + timedelta(minutes=span), "account_label": "e0"},
            ]
        )
        maintained = {row.rid: row for row in BookFigure.objects.all()}
        book_figures_rebuild()
        rebuilt = {row.rid: row for row in BookFigure.objects.all()}
        assert set(maintained) == set(rebuilt)
        fields = [f.name for f in BookFigure._meta.fields if f.name != "id"]
        for rid, row in rebuilt.items():
            old = maintained[rid]
            assert [getattr(old, f) for f in fields] == [getattr(row, f) for f in fields], rid
        transaction.set_rollback(True)


EXIT = st.tuples(
    st.integers(0, 5),  # which position (modulo the book)
    st.sampled_from([None, Decimal("0.25"), Decimal("0.5"), Decimal("0.9")]),  # None: the whole rest
    st.integers(90, 110),  # price
    st.sampled_from([CloseReason.TP, CloseReason.SL, CloseReason.SIGNAL, CloseReason.MANUAL]),
)


@settings(
    max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(
    opens=st.lists(st.tuples(st.integers(0, 2), st.integers(0, 1), st.booleans()), min_size=1, max_size=6),
    exits=st.lists(EXIT, max_size=12),
)
def test_partial_exits_through_the_close_path_keep_the_figures_exact(opens, exits):
    """Issue #12 §2: books with partial exits (real close path, paper fees) give the same figures
    maintained, from SQL and from scratch; each trade counts once, its exits adding up to its size."""
    from django.test import override_settings

    from oms.services.closing import CloseInstruction, close_positions

    with override_settings(PAPER_FEE_RATE=Decimal("0.001")), transaction.atomic():
        positions = [
            open_position(symbol=f"S{symbol}USDT", strategy=f"st{strategy}", side="long" if long else "short", qty="2")
            for symbol, strategy, long in opens
        ]
        for index, fraction, price, reason in exits:
            position = positions[index % len(positions)]
            close_positions([CloseInstruction(position.pk, Decimal(price), reason, fraction=fraction)])
        check_everything()
        for position in Position.objects.all():
            exits_qty = sum(o.qty for o in position.orders.filter(purpose="exit"))
            assert position.opened_qty == Decimal("2") and exits_qty == position.closed_qty + (
                position.qty if position.status == PositionStatus.CLOSED else 0
            )
        transaction.set_rollback(True)


def test_the_real_open_and_close_paths_keep_the_figures_exact(anon_client, settings, signal_body):
    from oms.services.closing import CloseInstruction, close_positions
    from oms.services.positions import position_close

    settings.MAX_OPEN_POSITIONS = settings.MAX_OPEN_POSITIONS_PER_SYMBOL = None
    for i in range(6):
        body = signal_body(symbol=["BTCUSDT", "ETHUSDT"][i % 2], signal_id=f"sig-{i}")
        assert anon_client.post("/signals/bounce", body, format="json").status_code in (200, 201)
    positions = list(Position.objects.order_by("id"))
    position_close(position=positions[0], price=Decimal("101.5"), reason=CloseReason.MANUAL)
    close_positions(
        [CloseInstruction(p.pk, Decimal("104.5"), CloseReason.TP) for p in positions[1:4]],
        now=positions[0].created_at + timedelta(minutes=1),
    )
    position_close(position=positions[4], price=Decimal("97"), reason=CloseReason.SL)
    assert Position.objects.filter(status=PositionStatus.CLOSED).count() == 5
    check_everything()


def test_a_rebuild_after_changes_outside_the_services_restores_exact_figures():
    closed_position(pnl="5", closed_at=T0)
    Position.objects.create(
        exchange="bitget",
        symbol="XUSDT",
        side="long",
        qty=Decimal("1"),
        entry_price=Decimal("1"),
        status=PositionStatus.CLOSED,
        created_at=T0,
        closed_at=T0,
        close_price=Decimal("1"),
        pnl=Decimal("-9"),
    )  # not through the services
    assert figures_stats({})["closed_positions"] == 1
    out = io.StringIO()
    call_command("rebuild_book_figures", stdout=out)
    assert "rebuilt" in out.getvalue()
    check_everything()
    assert figures_stats({})["max_drawdown"] == Decimal("9")  # equity 5, then -4


def test_queries_per_stats_request_do_not_grow_with_the_book(django_assert_max_num_queries):
    for i in range(30):
        closed_position(pnl=str(i - 15), closed_at=T0 + timedelta(minutes=i), symbol=f"S{i % 4}USDT")
    with django_assert_max_num_queries(1):
        figures_stats({})
    with django_assert_max_num_queries(1):
        figures_stats({"account_label": "default"}, "symbol")


def test_an_epochs_equity_is_two_reads_by_key_whatever_the_book(django_assert_num_queries):
    from oms.selectors import epoch_equity

    for i in range(30):
        closed_position(pnl=str(i - 10), closed_at=T0 + timedelta(minutes=i), symbol=f"S{i % 4}USDT")
    with django_assert_num_queries(2):  # the epoch's capital, its maintained PnL row
        figures = epoch_equity("default")
    assert figures["equity"] == figures["starting_capital"] + sum(Decimal(i - 10) for i in range(30))


@pytest.mark.django_db(transaction=True)
def test_concurrent_opens_and_closes_keep_the_figures_exact(settings, signal_body):
    """Real threads, each its own connection: signals opening, the sweep and manual closes racing;
    afterwards the maintained rows equal a rebuild and every figure a from-scratch computation."""
    from oms.services.positions import position_close_at_market
    from oms.services.signals import signal_ingest
    from oms.services.sweep import auto_close_sweep
    from tests.support import run_together

    settings.PRICE_SOURCE, settings.PRICE_EXCHANGE = "exchange", "dummy"  # a fixed 100.00
    settings.MAX_OPEN_POSITIONS = settings.MAX_OPEN_POSITIONS_PER_SYMBOL = settings.MAX_TOTAL_EXPOSURE_USDT = None
    created = T0.replace(year=2020)
    positions = [
        open_position(symbol=f"R{i % 3}USDT", tp="99.5", sl="50", created_at=created, strategy=f"s{i % 2}")
        for i in range(30)
    ]
    calls = [lambda: [auto_close_sweep() for _ in range(3)]]
    calls += [lambda pk=p.pk: position_close_at_market(position_id=pk) for p in positions[::3]]
    calls += [
        lambda i=i: signal_ingest(payload=signal_body(symbol=f"R{i % 3}USDT", signal_id=f"c-{i}")) for i in range(10)
    ]
    run_together(calls)
    assert Position.objects.filter(status=PositionStatus.CLOSED).count() == 30
    maintained = {row.rid: row for row in BookFigure.objects.all()}
    book_figures_rebuild()
    fields = [f.name for f in BookFigure._meta.fields if f.name != "id"]
    for row in BookFigure.objects.all():
        assert [getattr(maintained[row.rid], f) for f in fields] == [getattr(row, f) for f in fields], row.rid
    check_everything()


@pytest.mark.django_db(transaction=True)
def test_a_restore_rebuilds_the_figures_from_the_restored_positions(settings, tmp_path):
    from django.utils import timezone

    from ops.backups import backup_create

    settings.BACKUP_DIR = tmp_path / "backups"
    closed_position(pnl="7", closed_at=T0)
    Position.objects.create(
        exchange="bitget",
        symbol="XUSDT",
        side="long",
        qty=Decimal("1"),
        entry_price=Decimal("1"),
        status=PositionStatus.CLOSED,
        created_at=T0,
        closed_at=T0,
        close_price=Decimal("1"),
        pnl=Decimal("-3"),
    )  # not through the services
    backup = backup_create(now=timezone.now() - timedelta(seconds=5)).path
    closed_position(pnl="100", closed_at=T0 + timedelta(days=1))  # after the backup: gone after the restore
    assert figures_stats({})["closed_positions"] == 2
    call_command("restore", str(backup), "--yes", stdout=io.StringIO())
    stats = figures_stats({})
    assert (stats["closed_positions"], stats["total_pnl"], stats["max_drawdown"]) == (2, Decimal("4"), Decimal("3"))
    check_everything()


def test_a_large_book_draws_its_equity_curve_per_closing_day_from_the_figures():
    from oms.selectors import book_equity_curve

    for i in range(250):
        closed_position(pnl=str((i % 7) - 3), closed_at=T0 + timedelta(hours=i // 5), symbol=f"S{i % 3}USDT")
    expected = reference({}, "day")
    curve = book_equity_curve(250)
    assert len(curve) == len(expected) == 3  # 50 hours from 22:00 UTC: three closing days
    running = Decimal(0)
    for (_at, equity), day in zip(curve, expected, strict=True):
        running += day["total_pnl"]
        assert equity == running
    assert curve[-1] == (Position.objects.latest("closed_at", "id").closed_at, reference({}, None)["total_pnl"])


def test_an_intake_open_whose_rows_exist_is_one_update_of_them_and_stays_exact(anon_client, settings, signal_body):
    """The intake's usual open (its symbol seen before) costs one UPDATE of its figure rows, not a
    read-back of the position and a rewrite of every column of every row; the figures stay exact."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    settings.MAX_OPEN_POSITIONS = settings.MAX_OPEN_POSITIONS_PER_SYMBOL = None
    assert anon_client.post("/signals/bounce", signal_body(signal_id="first"), format="json").status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert anon_client.post("/signals/bounce", signal_body(signal_id="second"), format="json").status_code == 200
    figure_writes = [q["sql"] for q in queries if q["sql"].startswith("UPDATE") and "bookfigure" in q["sql"]]
    assert len(figure_writes) == 1
    maintained = {row.rid: row for row in BookFigure.objects.all()}
    book_figures_rebuild()
    fields = [f.name for f in BookFigure._meta.fields if f.name != "id"]
    for row in BookFigure.objects.all():
        assert [getattr(maintained[row.rid], f) for f in fields] == [getattr(row, f) for f in fields], row.rid
    check_everything()
