"""`make demo`'s refund and dispute: one partial refund, one lost dispute, once."""

from __future__ import annotations

import uuid

from disputes.demo import seed_demo_refund_and_dispute
from disputes.models import RefundStatus
from tests.factories import AdminFactory, HostFactory, UserFactory

from .conftest import DB, deliver, dispute_of, events_about, refunds_of, sell

pytestmark = DB


def test_the_demo_refunds_one_sale_and_disputes_another_once(
    stripe_settings, stripe_api, django_capture_on_commit_callbacks
):
    AdminFactory()
    host = HostFactory()
    buyer = UserFactory(email=f"buyer.{uuid.uuid4().hex[:8]}@treasury.local")
    first = sell(stripe_settings, amount_cents=2500, host=host, buyer=buyer)
    second = sell(stripe_settings, amount_cents=4000, host=host, buyer=buyer)
    said: list[str] = []

    with django_capture_on_commit_callbacks(execute=True):
        seed_demo_refund_and_dispute(write=said.append, timeout_seconds=0)
    for event in events_about(stripe_api, second):  # the web server would get these
        deliver(event)

    [refund] = refunds_of(first)
    assert (refund.amount_cents, refund.status) == (1000, RefundStatus.SUCCEEDED)
    assert dispute_of(second).status == "lost"
    assert "10.00 USD" in said[0]
    seed_demo_refund_and_dispute(write=said.append, timeout_seconds=0)
    assert "already" in said[1] and len(refunds_of(first)) == 1
