from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from monitoring.services import verify_ledger


class Command(BaseCommand):
    help = (
        "Recompute every balance from the entries, check every transaction balances per"
        " currency and the accounting equation; exit 1 and list each difference if any."
    )

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--chunk-size", type=int, default=5000)

    def handle(self, *args: Any, **options: Any) -> None:
        show_progress = sys.stderr.isatty() or options["verbosity"] > 1

        def progress(stage: str, done: int, total: int) -> None:
            if not show_progress:
                return
            filled = int(30 * done / total)
            bar = "#" * filled + "." * (30 - filled)
            self.stderr.write(f"\r{stage:<12} [{bar}] {100 * done // total:3d}%", ending="")
            if done >= total:
                self.stderr.write("")

        # Every run is kept (monitoring's verification runs: the dashboard and the admin show
        # the last; differences raise the critical alert, a clean run clears it).
        _, differences = verify_ledger(
            trigger="command", chunk_size=options["chunk_size"], progress=progress
        )
        if differences:
            for difference in differences:
                self.stdout.write(str(difference))
            raise CommandError(f"ledger does not verify: {len(differences)} difference(s)")
        self.stdout.write(self.style.SUCCESS("ledger verified: no differences"))
