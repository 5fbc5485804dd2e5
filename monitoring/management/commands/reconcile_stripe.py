from __future__ import annotations

import sys
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from monitoring.models import RunStatus
from monitoring.services import day_bounds, previous_day, reconcile_stripe
from treasury.errors import TreasuryError

# Exit codes: 0 clean, 1 differences (like verify_ledger), 2 the run could not finish.
EXIT_DIFFERENCES = 1
EXIT_ERROR = 2


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(f"not a date (YYYY-MM-DD): {value!r}", returncode=EXIT_ERROR) from exc


class Command(BaseCommand):
    help = (
        "Compare the ledger's Stripe balance with Stripe's balance transactions over a period"
        " (UTC dates, both inclusive; default: yesterday); list every difference (missing in"
        " the ledger, extra in the ledger, amount or currency mismatch), keep the run, exit 1"
        " on differences and 2 when Stripe cannot be read."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="period_start", type=str, default=None)
        parser.add_argument("--to", dest="period_end", type=str, default=None)

    def handle(self, *args: Any, **options: Any) -> None:
        yesterday = previous_day()
        start = _date(options["period_start"]) if options["period_start"] else yesterday
        end = _date(options["period_end"]) if options["period_end"] else start
        show_progress = sys.stderr.isatty() or options["verbosity"] > 1

        def progress(stage: str, done: int, total: int) -> None:
            if not show_progress:
                return
            filled = int(30 * done / max(total, 1))
            bar = "#" * filled + "." * (30 - filled)
            self.stderr.write(f"\r{stage:<12} [{bar}] {100 * done // max(total, 1):3d}%", ending="")
            if done >= total:
                self.stderr.write("")

        try:
            since, until = day_bounds(start, end)
            result = reconcile_stripe(since=since, until=until, progress=progress)
        except TreasuryError as exc:  # a period that ends before it starts
            raise CommandError(exc.message, returncode=EXIT_ERROR) from exc
        run = result.run
        if run.status == RunStatus.ERROR:
            raise CommandError(
                f"reconciliation run {run.pk} failed: {run.error}", returncode=EXIT_ERROR
            )
        for difference in result.differences:
            self.stdout.write(str(difference))
        summary = (
            f"run {run.pk}, {start}..{end}: {run.stripe_count} Stripe balance transaction(s),"
            f" {run.ledger_count} ledger posting(s), {run.matched_count} matched,"
            f" {run.skipped_count} skipped"
        )
        if result.differences:
            self.stdout.write(summary)
            raise CommandError(
                f"the ledger does not reconcile with Stripe: {len(result.differences)}"
                " difference(s)",
                returncode=EXIT_DIFFERENCES,
            )
        self.stdout.write(self.style.SUCCESS(f"reconciled: no differences ({summary})"))
