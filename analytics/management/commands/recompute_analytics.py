from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.services import recompute_range, refresh_analytics
from treasury.errors import TreasuryError


class Command(BaseCommand):
    help = (
        "Recompute the daily aggregates from the ledger for --from..--to (inclusive, UTC"
        " days; all currencies or --currency), or with neither, the days marked changed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--from", dest="day_from", type=date.fromisoformat)
        parser.add_argument("--to", dest="day_to", type=date.fromisoformat)
        parser.add_argument("--currency")

    def handle(self, *args: Any, **options: Any) -> None:
        day_from, day_to = options["day_from"], options["day_to"]
        try:
            if day_from is None and day_to is None:
                count = refresh_analytics()
            else:
                count = recompute_range(
                    start=day_from or day_to, end=day_to or day_from, currency=options["currency"]
                )
        except TreasuryError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(f"recomputed {count} day(s) x currency")
