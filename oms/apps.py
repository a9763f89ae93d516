from django.apps import AppConfig


class OmsConfig(AppConfig):
    name = "oms"
    verbose_name = "Order and position manager"

    def ready(self) -> None:
        from django_q.signals import post_spawn

        from oms import checks  # noqa: F401  (registers the system checks)
        from oms.tasks import on_worker_spawn

        # Each django-q worker start (also the replacement of a killed one) checks the sweep loop.
        post_spawn.connect(on_worker_spawn, dispatch_uid="oms.auto_close_kick")

        from oms.services.simulator_bases import first_entry_prices
        from pricing.sources.simulator import install_base_price_provider

        # The simulator quotes each symbol around its own first entry price, not around 100.
        install_base_price_provider(first_entry_prices)
