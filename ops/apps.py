from django.apps import AppConfig


class OpsConfig(AppConfig):
    """Operations: backups and restore, remote checks, serving, users and tokens. No models."""

    name = "ops"
    verbose_name = "Operations"

    def ready(self) -> None:
        from django.apps import apps
        from django.db.models.signals import post_migrate

        from oms.services.health import HEALTH_CHECKS
        from ops.backups import backup_schedule_ensure
        from ops.health import check_backup_age

        # Every `migrate` (install, upgrade) creates or updates the daily backup schedule, once
        # django-q's tables exist (this app has no models, so it gets no post_migrate of its own).
        post_migrate.connect(
            backup_schedule_ensure, sender=apps.get_app_config("django_q"), dispatch_uid="ops.backup_schedule"
        )
        if check_backup_age not in HEALTH_CHECKS:
            HEALTH_CHECKS.append(check_backup_age)
