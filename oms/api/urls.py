"""API routes. Every path answers with and without a trailing slash (the bot calls both)."""

from django.urls import re_path

from oms.api import strategies, views

app_name = "api"


def route(path: str, view, name: str):
    return re_path(rf"^{path}/?$", view.as_view(), name=name)


urlpatterns = [
    route("signals/bounce", views.SignalBounceApi, "signal-bounce"),
    route("signals/exit", views.SignalExitApi, "signal-exit"),
    route("signals/stop", views.SignalStopApi, "signal-stop"),
    route("signals", views.SignalListApi, "signal-list"),
    route("health", views.HealthApi, "health"),
    route("stats", views.StatsApi, "stats"),
    route("positions", views.PositionListApi, "position-list"),
    route("positions/close-all", views.PositionCloseAllApi, "position-close-all"),
    # Any id segment reaches the view, so a bad id is a JSON 404 like an unknown one (not an HTML page).
    route(r"positions/(?P<position_id>[^/]+)/close", views.PositionCloseApi, "position-close"),
    route(r"positions/(?P<position_id>[^/]+)/settle", views.PositionSettleApi, "position-settle"),
    route("orders", views.OrderListCreateApi, "order-list"),
    route("market", views.MarketApi, "market"),
    route("oms/switch", views.SwitchApi, "switch"),
    # Per-strategy control (issue #12 §5); a name may hold any character, URL-encoded.
    route("oms/strategies", strategies.StrategyListApi, "strategy-list"),
    route(r"oms/strategies/(?P<strategy>.+?)", strategies.StrategyControlApi, "strategy-control"),
]
