"""Console pages. Thin: they read through selectors and act through services."""

from django.contrib.auth.decorators import login_required
from django.shortcuts import render

from oms.models import Position, PositionStatus, Signal
from oms.selectors import position_stats
from oms.services.health import health_report


@login_required
def overview(request):
    return render(request, "oms/overview.html", {
        "health": health_report(),
        "stats": position_stats(Position.objects.all()),
        "open_positions": Position.objects.filter(status=PositionStatus.OPEN)[:20],
        "latest_signals": Signal.objects.all()[:10],
    })
