"""``manage.py stripe_standin``: run the local Stripe stand-in until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from treasury.stripe_standin import start_standin


class Command(BaseCommand):
    help = "Serve the local Stripe (Connect subset) stand-in on 127.0.0.1 until interrupted."
    # The stand-in needs neither the database nor the project's settings to be sound.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--port", type=int, default=12111)
        parser.add_argument("--webhook-url", default=None, help="where signed events are POSTed")
        parser.add_argument("--webhook-secret", default=None, help="whsec_... used to sign them")
        parser.add_argument(
            "--state-file",
            type=Path,
            default=None,
            help="start from the state saved in this JSON file, and save it there on exit",
        )
        parser.add_argument(
            "--instant-payouts-paid-after",
            type=float,
            default=None,
            metavar="SECONDS",
            help="pay instant payouts by themselves this long after they are created",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        running = start_standin(
            port=options["port"],
            webhook_url=options["webhook_url"],
            webhook_secret=options["webhook_secret"],
            state_file=options["state_file"],
            instant_payouts_paid_after=options["instant_payouts_paid_after"],
        )
        signal.signal(signal.SIGTERM, _interrupt)  # stopped by run_demo: save the state too
        self.stdout.write(f"Stripe stand-in on {running.base_url} (api_base); Ctrl-C stops it.")
        try:
            threading.Event().wait()  # the server runs in its own thread; wait for Ctrl-C
        except KeyboardInterrupt:
            self.stdout.write("Stopping the Stripe stand-in.")
        finally:
            running.stop()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
