"""A refund and a dispute for `make demo`, once the demo's ticket sales are booked.

Meant to run right after `treasury.stripe.demo.seed_demo_payments`, with the web server and
the Stripe stand-in up: the refund goes through the service (and Stripe), the dispute is
opened on the stand-in's control API; both come back as webhooks. Idempotent: nothing is
added once any refund or dispute exists.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction

from disputes.models import Dispute, Refund
from disputes.services import request_refund
from ledger.money import format_minor
from treasury.models import Role, User
from treasury.rls import system_context
from treasury.stripe.models import StripeCharge

Write = Callable[[str], Any]
DEMO_DOMAIN = "@treasury.local"  # the demo's buyers (manage.py seed_demo)


def seed_demo_refund_and_dispute(*, write: Write, timeout_seconds: int = 30) -> None:
    """Refund 40% of the first demo sale (as the admin) and have the buyer of the second
    dispute it (lost: the split rule's loss bearer carries it)."""
    with system_context():
        demo_sales = StripeCharge.objects.filter(buyer__email__endswith=DEMO_DOMAIN)
        if (
            Refund.objects.filter(charge__in=demo_sales).exists()
            or Dispute.objects.filter(charge__in=demo_sales).exists()
        ):
            write("Refunds demo: the demo sales have a refund or dispute already.")
            return
        charges = list(demo_sales.order_by("id")[:2])
        admin = User.objects.filter(role=Role.ADMIN, is_active=True).order_by("created_at").first()
    if len(charges) < 2 or admin is None:
        write("Refunds demo skipped: no booked sales (or no admin) yet.")
        return
    refunded, disputed = charges
    with transaction.atomic():  # the refund is sent to Stripe when this commits
        refund = request_refund(
            actor=admin,
            charge_id=refunded.stripe_charge_id,
            amount_cents=refunded.amount_cents * 2 // 5,
            note="demo: partial refund",
            idempotency_key=f"demo:refund:{refunded.stripe_charge_id}",
        )
    dispute = _control(f"/_standin/charges/{disputed.stripe_charge_id}/dispute", {})
    _control(f"/_standin/disputes/{dispute['id']}/close", {"status": "lost"})
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline and not _arrived(dispute["id"]):
        time.sleep(0.2)
    amount = format_minor(refund.amount_cents, refund.currency)
    write(
        f"Refunds demo: {amount} of {refunded.stripe_charge_id} refunded;"
        f" {disputed.stripe_charge_id} disputed and lost ({dispute['id']})."
    )


def _arrived(stripe_dispute_id: str) -> bool:
    with system_context():
        return Dispute.objects.filter(stripe_dispute_id=stripe_dispute_id).exists()


def _control(path: str, body: dict[str, Any]) -> Any:
    """The stand-in's control API (the demo runs against the stand-in only)."""
    request = urllib.request.Request(  # noqa: S310 - the local stand-in
        settings.STRIPE_API_BASE + path,
        json.dumps(body).encode(),
        {"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
        return json.loads(response.read())
