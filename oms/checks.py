"""System checks: configuration that works but deserves a warning at start."""

from django.conf import settings
from django.core.checks import Warning, register


@register()
def auto_close_interval_check(app_configs, **kwargs):
    if getattr(settings, "AUTO_CLOSE_INTERVAL_CLAMPED", False):
        return [Warning("AUTO_CLOSE_INTERVAL_SEC must be > 0; using 1 second.", id="oms.W001")]
    return []


@register()
def notify_urls_check(app_configs, **kwargs):
    """Every NOTIFY_URLS entry must be an apprise URL (the entries hold secrets: named by position)."""
    if not settings.NOTIFY_URLS:
        return []
    from oms.services.notify import notify_url_problems

    return [
        Warning(
            f"NOTIFY_URLS entry #{number} is not a valid apprise URL: alerts never reach it.",
            hint="See https://github.com/caronc/apprise/wiki for the URL of each service.",
            id="oms.W002",
        )
        for number in notify_url_problems()
    ]


@register()
def deprecated_setting_names_check(app_configs, **kwargs):
    """A renamed setting still set under its old name (lomsite/config.py `EnvConfig.rename`)."""
    import importlib
    import os

    settings_module = importlib.import_module(os.environ.get("DJANGO_SETTINGS_MODULE", "lomsite.settings"))
    config = getattr(settings_module, "env", None)
    return [
        Warning(message, hint="Rename the key in the environment or .env (see .env.sample).", id="lomsite.W001")
        for message in getattr(config, "deprecations", [])
    ]
