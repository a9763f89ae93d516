import time

from django.core.management.base import BaseCommand

from oms.services.figures import book_figures_rebuild


class Command(BaseCommand):
    help = (
        "Recompute the book figures (what /stats and the overview read) from the positions, from scratch. "
        "Opens and closes keep them up to date; run this after changing positions outside the services "
        "(a restore does it by itself). Safe to run at any time: opens and closes wait for it."
    )

    def handle(self, *args, **options):
        started = time.monotonic()
        rows = book_figures_rebuild()
        self.stdout.write(f"book figures rebuilt: {rows} rows in {time.monotonic() - started:.1f} s")
