"""Measure the detectors: a seeded synthetic marketplace with planted anomalies of each kind,
every detector run over its last day, precision and recall per detector and overall.

Nothing stays behind: the history is built and judged in a transaction that is rolled back.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from anomalies.evaluation import build_history, ledger_drills, overall, run_evaluation


class ProgressBar:
    """A one-line text bar on stderr (redrawn in place on a terminal)."""

    def __init__(self, stream: Any, width: int = 30) -> None:
        self.stream = stream
        self.width = width
        self.last = ""
        self.interactive = getattr(stream, "isatty", lambda: False)()

    def __call__(self, phase: str, done: int, total: int) -> None:
        filled = self.width * done // max(total, 1)
        line = f"{phase:<10} [{'#' * filled}{'.' * (self.width - filled)}] {done}/{total}"
        if line == self.last:
            return
        self.last = line
        end = "" if self.interactive and done < total else "\n"
        if self.interactive or done == total:
            self.stream.write(("\r" if self.interactive else "") + line + end)
            self.stream.flush()


class Command(BaseCommand):
    help = "Build a seeded synthetic history with planted anomalies; print precision/recall."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--seed", type=int, default=7)
        parser.add_argument("--hosts", type=int, default=12)
        parser.add_argument("--buyers", type=int, default=40)
        parser.add_argument("--days", type=int, default=30)

    def handle(self, *args: Any, **options: Any) -> None:
        if options["hosts"] < 7:
            options["hosts"] = 7  # one host per planted case, and one that stays ordinary
        started = time.monotonic()
        progress = ProgressBar(sys.stderr if options["verbosity"] < 2 else self.stdout)
        with ledger_drills(), transaction.atomic():
            history = build_history(
                seed=options["seed"],
                hosts=options["hosts"],
                buyers=options["buyers"],
                days=options["days"],
                progress=progress,
            )
            scores = run_evaluation(history=history, seed=options["seed"], progress=progress)
            transaction.set_rollback(True)  # the synthetic history leaves no trace
        self.stdout.write(f"{'detector':<28} {'planted':>7} {'flagged':>7} {'hits':>5}")
        for score in [*scores, overall(scores)]:
            self.stdout.write(
                f"{score.detector:<28} {score.planted:>7} {score.flagged:>7} {score.hits:>5}"
                f" precision={score.precision:.2f} recall={score.recall:.2f}"
            )
        self.stdout.write(f"seed {options['seed']}, {time.monotonic() - started:.1f}s")
