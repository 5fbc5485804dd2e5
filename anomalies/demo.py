"""A few suspicious patterns for `make demo`, so the admin's review queue is not empty.

Runs after the demo's sales, refund and dispute are booked (the web server, the worker and
the Stripe stand-in up): everything goes through Stripe and comes back by webhook, as in
production, and then the rule detectors run once rather than waiting for their schedule.

- a buyer charged twice the same amount by the same host two minutes apart
  (`duplicate_charge`);
- a host refunding three of their sales in a day (`refund_ratio_spike`).

Idempotent: the patterns are planted once (marked by their idempotency keys); the
detectors' findings are recorded once however often they run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from django.db import transaction

from anomalies.models import Anomaly
from anomalies.services import run_detectors
from disputes.models import Refund, RefundStatus
from disputes.services import request_refund
from treasury.models import Role, User
from treasury.rls import system_context
from treasury.stripe.models import StripeCharge
from treasury.stripe.services import create_demo_charge

Write = Callable[[str], Any]
# Both patterns are the same host's, so that the other demo host's payouts are not held for
# them (open anomalies weigh on a recipient's payout risk).
DUPLICATE_BUYER = "buyer.lee@treasury.local"
DUPLICATE_HOST = "host.basement@treasury.local"
DUPLICATE_CENTS = 4200
REFUNDING_HOST = DUPLICATE_HOST
SPIKE_KEY_PREFIX = "demo:refund-spike:"


def seed_demo_anomalies(*, write: Write, timeout_seconds: int = 30) -> None:
    with system_context():
        users = {u.email: u for u in User.objects.filter(email__endswith="@treasury.local")}
        admin = User.objects.filter(role=Role.ADMIN, is_active=True).order_by("created_at").first()
        planted = Refund.objects.filter(idempotency_key__startswith=SPIKE_KEY_PREFIX).exists()
    needed = (DUPLICATE_BUYER, DUPLICATE_HOST, REFUNDING_HOST)
    if admin is None or not all(email in users for email in needed):
        write("Anomalies demo skipped: run `manage.py seed_demo` first.")
        return
    if not planted:
        _plant_refund_spike(
            admin=admin, host=users[REFUNDING_HOST], timeout_seconds=timeout_seconds
        )
        _plant_duplicate_charge(buyer=users[DUPLICATE_BUYER], host=users[DUPLICATE_HOST])
        _wait_until_booked(timeout_seconds)
    summary = run_detectors()
    with system_context():
        open_anomalies = Anomaly.objects.filter(resolved_at__isnull=True).count()
    found = ", ".join(f"{name} {count}" for name, count in summary.found.items() if count)
    write(f"Anomalies demo: {open_anomalies} open in the review queue ({found or 'none new'}).")


def _plant_duplicate_charge(*, buyer: User, host: User) -> None:
    for _ in range(2):
        create_demo_charge(buyer=buyer, host=host, amount_cents=DUPLICATE_CENTS, currency="USD")


def _plant_refund_spike(*, admin: User, host: User, timeout_seconds: int) -> None:
    """Refund in full three of the host's sales that have no refund or dispute yet."""
    deadline = time.monotonic() + timeout_seconds
    while True:
        with system_context():
            sales = list(
                StripeCharge.objects.filter(
                    host=host, refunds__isnull=True, disputes__isnull=True
                ).order_by("id")[:3]
            )
        if len(sales) == 3 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    with transaction.atomic():  # each refund is sent to Stripe when this commits
        for sale in sales:
            request_refund(
                actor=admin,
                charge_id=sale.stripe_charge_id,
                amount_cents=None,
                note="demo: one of several refunds by this host today",
                idempotency_key=f"{SPIKE_KEY_PREFIX}{sale.stripe_charge_id}",
            )


def _wait_until_booked(timeout_seconds: int) -> None:
    """Until the duplicate's second charge and the refunds are in the ledger."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        with system_context():
            duplicates = StripeCharge.objects.filter(
                buyer__email=DUPLICATE_BUYER,
                host__email=DUPLICATE_HOST,
                amount_cents=DUPLICATE_CENTS,
                ledger_transaction__isnull=False,
            ).count()
            pending = Refund.objects.filter(
                idempotency_key__startswith=SPIKE_KEY_PREFIX, ledger_transaction__isnull=True
            ).exclude(status=RefundStatus.FAILED)
            if duplicates >= 2 and not pending.exists():
                return
        time.sleep(0.2)
