from django.apps import AppConfig


class OmsConfig(AppConfig):
    name = "oms"
    verbose_name = "Order and position manager"

    def ready(self) -> None:
        from oms import checks  # noqa: F401  (registers the system checks)
