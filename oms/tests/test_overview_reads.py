"""The overview's reads: a fixed handful of queries whatever the size of the book, giving the same
figures and the same health as the reads they replace."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.backends import ModelBackend as DjangoModelBackend
from django.contrib.auth.models import Permission, User
from django.core.cache import cache
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from conftest import make_user
from lomsite.permissions import ModelBackend as OneQueryModelBackend
from oms.metrics import downsample
from oms.models import AuditSpool, AutoCloseMonitor, BookFigure, Epoch, Position, SweepRun
from oms.selectors import book_equity_curve, book_overview, book_stats, epoch_equity, signal_list, signals_latest
from oms.services.figures import figures_equity_days, figures_stats
from oms.services.health import health_context, health_report
from oms.services.switch import switch_state
from oms.tests.factories import closed_position, open_position

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 6, 1, 22, 0, tzinfo=UTC)


def closes(count: int, *, start: int = 0, account_label: str = "default") -> None:
    for i in range(start, start + count):
        closed_position(
            pnl=str((i % 7) - 3),
            closed_at=T0 + timedelta(hours=i // 5),
            symbol=f"S{i % 3}USDT",
            account_label=account_label,
        )


def expected_overview(epoch: str) -> dict:
    stats = book_stats({})
    return {"stats": stats, "equity": epoch_equity(epoch), "curve": book_equity_curve(stats["closed_positions"])}


@pytest.mark.parametrize("trades", [3, 250])  # the curve from the trades, then from the day rows
def test_the_overview_figures_are_those_of_the_selectors_they_replace(trades):
    closes(trades)
    closes(4, start=trades, account_label="e2")
    open_position(account_label="e2")
    Epoch.objects.create(name="e2", starting_capital=Decimal("2500.5"))
    for epoch in ("default", "e2", "never-traded"):  # no capital recorded, one recorded, no trade at all
        assert book_overview(epoch) == expected_overview(epoch)


def test_the_overview_figures_of_an_empty_book_are_those_of_the_selectors():
    assert book_overview("default") == expected_overview("default")
    assert book_overview()["equity"]["epoch"] == "default"  # the current epoch by default


def test_the_overview_figures_are_two_queries_whatever_the_book(django_assert_num_queries):
    closes(250)
    with django_assert_num_queries(2):  # the book's and the epoch's rows with the capital; the curve's days
        book_overview("default")


def test_the_figures_times_are_the_positions_own_to_the_microsecond():
    position = closed_position(pnl="2", closed_at=T0 + timedelta(microseconds=123457), symbol="XUSDT")
    for figures in (figures_stats({}), figures_stats({}, "symbol")[0], figures_stats({}, "day")[0]):
        assert (figures["first_trade_at"], figures["last_trade_at"]) == (position.created_at, position.created_at)
        assert figures["first_trade_at"].utcoffset() == timedelta(0)
    assert book_overview("default")["stats"] == figures_stats({})


@pytest.mark.parametrize("max_points", [240, 4, 2])
def test_the_equity_days_are_the_running_sums_of_the_day_rows_to_the_exponent(max_points):
    for i, pnl in enumerate(["0", "0", "1.5", "-1.5", "2", "-0.0000000001", "0"]):
        closed_position(pnl=pnl, closed_at=T0 + timedelta(days=i))
    equity, expected = Decimal(0), []
    for day, pnl in (
        BookFigure.objects.filter(kind="", trades__gt=0)
        .exclude(day=BookFigure.ALL_TIME)
        .order_by("day")
        .values_list("day", "pnl")
    ):
        equity += Decimal(pnl).scaleb(-10) if pnl else Decimal(0)
        expected.append((datetime.combine(day, datetime.min.time(), tzinfo=UTC), equity))
    expected = downsample(expected, max_points)
    expected[-1] = (Position.objects.latest("closed_at", "id").closed_at, expected[-1][1])
    curve = figures_equity_days(max_points=max_points)
    assert [(at, value, value.as_tuple()) for at, value in curve] == [(at, v, v.as_tuple()) for at, v in expected]


def _page_queries(client: Client) -> int:
    cache.clear()  # the figures recomputed, as right after a close
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/").status_code == 200
    return len(queries)


def test_the_overview_page_queries_do_not_grow_with_the_book():
    client = Client()
    client.force_login(make_user("victor", "viewer"))
    closes(3)
    small = _page_queries(client)
    closes(300, start=3)
    large = _page_queries(client)
    # session, user, permissions, switch change, switch, health, book version, figures (2), signals
    assert large <= small and large <= 10


def test_the_latest_signals_are_those_of_the_signal_list(anon_client, settings, signal_body):
    settings.MAX_OPEN_POSITIONS = settings.MAX_OPEN_POSITIONS_PER_SYMBOL = None
    for i in range(12):
        body = signal_body(signal_id=f"s{i}", symbol=f"S{i % 3}USDT")
        assert anon_client.post("/signals/bounce", body, format="json").status_code == 200
    latest = signals_latest()
    assert [s.pk for s in latest] == [s.pk for s in signal_list()[:10]] and all(s.position_id for s in latest)
    client = Client()
    client.force_login(make_user("victor", "viewer"))
    page = client.get("/").content.decode()
    assert all(f'href="/console/positions/{s.position_id}">#{s.position_id}</a>' in page for s in latest)


def test_the_health_checks_read_the_monitor_sweeps_and_spool_in_one_query(django_assert_num_queries, settings):
    switch, now = switch_state(), timezone.now()
    AutoCloseMonitor.objects.all().delete()
    ctx = health_context(now, switch)  # the missing row is created
    assert (ctx.monitor.pk, ctx.recent_sweep_errors, ctx.audit_spooled) == (1, [], 0)
    for i, error in enumerate(["", "timeout", "boom", "", "quote"]):
        started = now - timedelta(seconds=10 - i)
        SweepRun.objects.create(started_at=started, finished_at=started, duration_ms=1.0, error=error)
    AuditSpool.objects.create(line="{}")
    AuditSpool.objects.create(line="{}")
    with django_assert_num_queries(1):
        ctx = health_context(now, switch)
    assert ctx.recent_sweep_errors == ["quote", "", "boom"] and ctx.audit_spooled == 2
    settings.HEALTH_FAILED_SWEEPS = 1
    assert health_context(now, switch).recent_sweep_errors == ["quote"]
    codes = [reason["code"] for reason in health_report()["reasons"]]
    assert "sweeps_failing" in codes and "audit_spooled" in codes


def test_a_console_request_reads_the_same_permissions_in_one_query():
    operator = make_user("olga", "operator")
    operator.user_permissions.add(Permission.objects.get(codename="delete_epoch"))  # its own, and its group's
    expected = DjangoModelBackend().get_all_permissions(User.objects.get(pk=operator.pk))
    assert OneQueryModelBackend().get_all_permissions(User.objects.get(pk=operator.pk)) == expected
    assert {"oms.delete_epoch", "oms.change_switch"} <= expected
    for other in (make_user("root", is_superuser=True), make_user("gone", "operator", is_active=False)):
        assert OneQueryModelBackend().get_all_permissions(other) == DjangoModelBackend().get_all_permissions(other)
    client = Client()
    client.force_login(operator)
    with CaptureQueriesContext(connection) as queries:
        page = client.get("/").content.decode()
    assert sum('"auth_permission"' in query["sql"] for query in queries) == 1
    assert "Turn OFF" in page and "· operator" in page  # the template's `perms`
    client.force_login(make_user("victor", "viewer"))
    assert "Turn OFF" not in client.get("/").content.decode()
    assert client.post("/console/switch", {"enabled": "off", "reason": "x"}).status_code == 403
