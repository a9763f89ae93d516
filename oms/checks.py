"""System checks: configuration that works but deserves a warning at start."""

from django.conf import settings
from django.core.checks import Warning, register


@register()
def auto_close_interval_check(app_configs, **kwargs):
    if getattr(settings, "AUTO_CLOSE_INTERVAL_CLAMPED", False):
        return [Warning("AUTO_CLOSE_INTERVAL_SEC must be > 0; using 1 second.", id="oms.W001")]
    return []
