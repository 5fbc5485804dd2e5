from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand

from treasury.management.commands.seed_demo import ADMIN_EMAIL, DEMO_PASSWORD

WEB_ADDRESS = "127.0.0.1:8000"
STANDIN_PORT = 12111


class Command(BaseCommand):
    help = "Run the demo: Stripe stand-in, django-q2 cluster and web server. Ctrl-C stops all."

    def handle(self, *args: Any, **options: Any) -> None:
        manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
        commands = {
            "stripe stand-in": [
                *manage,
                "stripe_standin",
                "--port",
                str(STANDIN_PORT),
                "--webhook-url",
                f"http://{WEB_ADDRESS}/api/stripe/webhook",
                "--webhook-secret",
                settings.STRIPE_WEBHOOK_SECRET,
                # Stripe keeps its objects while the demo is stopped; so does the stand-in.
                "--state-file",
                str(settings.DATA_DIR / "stripe-standin.json"),
                "--instant-payouts-paid-after",
                "5",
            ],
            "job cluster": [*manage, "qcluster"],
            # --insecure serves the admin's static files with DEBUG off; a real deployment
            # puts the app behind gunicorn and a static file server instead.
            "web server": [*manage, "runserver", WEB_ADDRESS, "--noreload", "--insecure"],
        }
        processes = {
            name: subprocess.Popen(command, cwd=settings.BASE_DIR)  # noqa: S603
            for name, command in commands.items()
        }
        time.sleep(3)
        self.stdout.write(self._banner())
        try:
            self._seed_stripe_demo()
            while all(p.poll() is None for p in processes.values()):
                time.sleep(1)
            stopped = [name for name, p in processes.items() if p.poll() is not None]
            self.stderr.write(f"stopped: {', '.join(stopped)}; shutting the demo down")
        except KeyboardInterrupt:
            self.stdout.write("\nstopping the demo...")
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes.values():
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()
            if settings.EMBEDDED_POSTGRES:
                from treasury.embedded_postgres import stop_embedded_postgres

                stop_embedded_postgres(settings.DATA_DIR)
                self.stdout.write("embedded PostgreSQL stopped")

    def _seed_stripe_demo(self) -> None:
        """Onboarding and ticket sales go through Stripe, so they are seeded only now. Each
        step stands alone: the demo still runs without one that failed."""
        from anomalies.demo import seed_demo_anomalies
        from disputes.demo import seed_demo_refund_and_dispute
        from treasury.stripe.demo import seed_demo_payments

        steps = {
            "payments": lambda: seed_demo_payments(
                web_url=f"http://{WEB_ADDRESS}", write=self.stdout.write
            ),
            "refund and dispute": lambda: seed_demo_refund_and_dispute(write=self.stdout.write),
            "anomalies": lambda: seed_demo_anomalies(write=self.stdout.write),
            "ledger verification": self._verify_ledger,
        }
        for name, step in steps.items():
            try:
                step()
            except Exception as exc:
                self.stderr.write(f"Demo {name} failed: {type(exc).__name__}: {exc}")

    def _verify_ledger(self) -> None:
        """Once the demo's money moved: the dashboard shows the last verification."""
        from monitoring.services import verify_ledger

        run, differences = verify_ledger(trigger="demo")
        outcome = f"{len(differences)} difference(s)" if differences else "no differences"
        self.stdout.write(f"Ledger verified after the demo's payments: {outcome} (run {run.pk}).")

    def _banner(self) -> str:
        base = f"http://{WEB_ADDRESS}"
        lines = [
            "",
            "Treasury demo is running.",
            f"  Admin:      {base}/admin/   login {ADMIN_EMAIL} / {DEMO_PASSWORD}",
            f"  Hosts' and artists' pages: {base}/me/   e.g. host.aurora@treasury.local",
            f"  API docs:   {base}/api/docs/",
            f"  Health:     {base}/api/admin/health",
            f"  Stripe stand-in: http://127.0.0.1:{STANDIN_PORT}/v1/",
            "  Hosts, artists and buyers: *@treasury.local with the same password"
            " (see manage.py seed_demo).",
            "Press Ctrl-C to stop everything.",
            "",
        ]
        return "\n".join(lines)
