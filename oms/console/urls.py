"""Console pages (login required). Under /console/ so they never shadow the bot's API paths."""

from django.urls import path

from oms.console import strategies, views

app_name = "oms"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("console/positions", views.positions, name="positions"),
    path("console/positions/close-all", views.positions_close_all_view, name="position-close-all"),
    path("console/positions/<int:position_id>", views.position_detail, name="position-detail"),
    path("console/positions/<int:position_id>/close", views.position_close, name="position-close"),
    path("console/positions/<int:position_id>/settle", views.position_settle_view, name="position-settle"),
    path("console/positions/<int:position_id>/stop", views.position_stop_view, name="position-stop"),
    path("console/orders", views.orders, name="orders"),
    path("console/signals", views.signals, name="signals"),
    path("console/stats", views.statistics, name="stats"),
    path("console/switch", views.switch, name="switch"),
    path("console/strategies", strategies.strategies, name="strategies"),
    path("console/notifications", views.notifications, name="notifications"),
    path("console/audit", views.audit, name="audit"),
]
