from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils.dateparse import parse_datetime

from events.services import replay_events
from treasury.errors import TreasuryError


class Command(BaseCommand):
    help = (
        "Call the event handlers again for every event recorded at or after --since (ISO"
        " 8601 with a time zone), optionally only --handler NAME. Handlers are idempotent."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--since", required=True, help="e.g. 2026-11-01T00:00:00Z")
        parser.add_argument("--handler", default=None, help="one handler's name")
        parser.add_argument("--chunk-size", type=int, default=500)

    def handle(self, *args: Any, **options: Any) -> None:
        since = parse_datetime(options["since"])
        if since is None:
            raise CommandError(f"--since {options['since']!r} is not an ISO 8601 date and time")

        def progress(done: int, total: int) -> None:
            percent = 100 * done // total if total else 100
            self.stderr.write(f"replayed {done}/{total} events ({percent}%)")

        try:
            summary = replay_events(
                since=since,
                handler=options["handler"],
                chunk_size=options["chunk_size"],
                progress=progress,
            )
        except TreasuryError as exc:
            raise CommandError(exc.message) from exc
        self.stdout.write(
            f"replayed {summary.events} event(s): {summary.succeeded} handler call(s)"
            f" succeeded, {summary.failed} failed"
        )
        if summary.failed:
            raise CommandError(f"{summary.failed} handler call(s) failed: see event deliveries")
