"""The overview's reads: a fixed handful of queries whatever the size of the book, giving the same
figures and the same health as the reads they replace."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from oms.models import AuditSpool, AutoCloseMonitor, SweepRun
from oms.services.health import health_context, health_report
from oms.services.switch import switch_state

pytestmark = pytest.mark.django_db


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
