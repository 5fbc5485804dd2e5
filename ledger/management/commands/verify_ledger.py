from __future__ import annotations

import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from analytics.services import record_ledger_verification
from ledger.selectors import ledger_differences
from treasury.rls import system_context


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

        started_at = timezone.now()
        with system_context():
            differences = list(
                ledger_differences(chunk_size=options["chunk_size"], progress=progress)
            )
        # The admin dashboard shows the last run's outcome.
        record_ledger_verification(
            ok=not differences,
            differences=[str(d) for d in differences],
            started_at=started_at,
            finished_at=timezone.now(),
        )
        if differences:
            for difference in differences:
                self.stdout.write(str(difference))
            raise CommandError(f"ledger does not verify: {len(differences)} difference(s)")
        self.stdout.write(self.style.SUCCESS("ledger verified: no differences"))
