"""The ledger's Stripe balance against Stripe's balance transactions, item by item.

Worked example (the stand-in charges 2.9% + 30): a host sells for 100.00 (Stripe keeps
3.20: net 96.80) and is paid out 90.00 (a transfer, -90.00); the buyer is refunded 50.00
(-50.00) and 45.00 of the host's share is pulled back from the transfer (+45.00). Another
sale of 40.00 (net 38.54) is disputed (-40.00 and the 15.00 fee) and won (+40.00). Seven
balance transactions, seven postings on stripe_balance, each with the same net: clean.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from disputes.services import request_refund
from ledger.chart import platform_code
from ledger.services import credit, debit, post_adjustment, post_transaction
from monitoring.models import (
    Alert,
    AlertSeverity,
    DifferenceKind,
    ReconciliationDifference,
    RunStatus,
)
from monitoring.services import reconcile_stripe
from payouts.services import initiate_payout
from tests.disputes.conftest import control, deliver, events_about, onboard, sell
from tests.factories import DEFAULT_PASSWORD, AdminFactory, HostFactory, UserFactory
from treasury.rls import system_context
from treasury.stripe_standin import stripe_fee_cents

pytestmark = pytest.mark.django_db


def reconcile(since):
    return reconcile_stripe(since=since, until=timezone.now() + timedelta(minutes=1))


def test_charges_payouts_refunds_and_disputes_reconcile_clean(
    stripe_settings, stripe_api, period_start, django_capture_on_commit_callbacks
):
    host, buyer = HostFactory(), UserFactory()
    onboard(stripe_settings, host)
    charge_id = sell(stripe_settings, amount_cents=10000, host=host, buyer=buyer)
    with django_capture_on_commit_callbacks(execute=True):
        initiate_payout(
            user=host, amount_cents=9000, currency="USD", method="standard", idempotency_key="p1"
        )
    with django_capture_on_commit_callbacks(execute=True):
        request_refund(actor=buyer, charge_id=charge_id, amount_cents=5000, idempotency_key="r1")
    disputed = sell(stripe_settings, amount_cents=4000, host=host, buyer=UserFactory())
    dispute = control(stripe_settings, f"/_standin/charges/{disputed}/dispute")
    control(stripe_settings, f"/_standin/disputes/{dispute['id']}/close", {"status": "won"})
    for event in events_about(stripe_api, disputed):
        if event["type"].startswith("charge.dispute"):
            assert deliver(event).status == "processed"

    result = reconcile(period_start)

    assert [str(d) for d in result.differences] == []
    run = result.run
    assert (run.status, run.difference_count) == (RunStatus.CLEAN, 0)
    assert (run.stripe_count, run.ledger_count, run.matched_count) == (7, 7, 7)
    stripe_types = sorted(
        t.type
        for t in stripe_api.v1.balance_transactions.list(params={"limit": 100}).auto_paging_iter()
    )
    assert stripe_types == [
        "adjustment",
        "adjustment",
        "charge",
        "charge",
        "refund",
        "transfer",
        "transfer_refund",
    ]
    with system_context():
        assert not Alert.objects.filter(key=f"reconciliation:{run.period_label}").exists()


def test_planted_differences_are_each_found_once(stripe_settings, period_start):
    """A balance transaction the ledger never booked, a posting of the wrong amount, one in
    the wrong currency, and a manual adjustment of Stripe's balance Stripe never saw."""
    host = HostFactory()
    sell(stripe_settings, amount_cents=2500, host=host)  # booked as its event would: clean
    missing = sell(stripe_settings, amount_cents=1000, host=host, book=False)
    wrong = sell(stripe_settings, amount_cents=3000, host=host, book=False)
    in_euros = sell(stripe_settings, amount_cents=2000, host=host, currency="eur", book=False)
    with system_context():
        # The charge booked at 31.00 gross with no fee instead of 30.00 less Stripe's 1.17.
        post_transaction(
            idempotency_key=f"charge:{wrong}",
            entries=[
                debit(platform_code("stripe_balance", "USD"), 3100, "USD"),
                credit(platform_code("fee_revenue", "USD"), 3100, "USD"),
            ],
            event_source="stripe_charge",
            reference_id=wrong,
        )
        post_transaction(
            idempotency_key=f"charge:{in_euros}",
            entries=[
                debit(platform_code("stripe_balance", "USD"), 2000, "USD"),
                credit(platform_code("fee_revenue", "USD"), 2000, "USD"),
            ],
            event_source="stripe_charge",
            reference_id=in_euros,
        )
    adjustment = post_adjustment(
        actor=AdminFactory(),
        idempotency_key=f"adjust-{missing}",
        reason="found cash",
        entries=[
            debit(platform_code("stripe_balance", "USD"), 700, "USD"),
            credit(platform_code("adjustments", "USD"), 700, "USD"),
        ],
    )

    result = reconcile(period_start)

    found = {
        (d.kind, d.match_key): (
            d.stripe.net_cents if d.stripe else None,
            d.stripe.currency if d.stripe else None,
            d.ledger.net_cents if d.ledger else None,
            d.ledger.currency if d.ledger else None,
        )
        for d in result.differences
    }
    assert found == {
        (DifferenceKind.MISSING_IN_LEDGER, f"charge:{missing}"): (
            1000 - stripe_fee_cents(1000, "usd"),
            "USD",
            None,
            None,
        ),
        (DifferenceKind.AMOUNT_MISMATCH, f"charge:{wrong}"): (
            3000 - stripe_fee_cents(3000, "usd"),
            "USD",
            3100,
            "USD",
        ),
        (DifferenceKind.CURRENCY_MISMATCH, f"charge:{in_euros}"): (
            2000 - stripe_fee_cents(2000, "eur"),
            "EUR",
            2000,
            "USD",
        ),
        (DifferenceKind.EXTRA_IN_LEDGER, f"ledger:{adjustment.idempotency_key}"): (
            None,
            None,
            700,
            "USD",
        ),
    }
    run = result.run
    assert (run.status, run.difference_count, run.matched_count) == (RunStatus.DIFFERENCES, 4, 1)
    with system_context():
        rows = list(ReconciliationDifference.objects.filter(run=run).order_by("kind"))
        alert = Alert.objects.get(key=f"reconciliation:{run.period_label}", resolved_at=None)
    assert sorted(r.kind for r in rows) == sorted(k for k, _ in found)
    mismatch = next(r for r in rows if r.kind == DifferenceKind.AMOUNT_MISMATCH)
    assert (mismatch.stripe_net_cents, mismatch.ledger_net_cents) == (2883, 3100)
    assert mismatch.details["stripe"]["fee_cents"] == 117
    assert alert.severity == AlertSeverity.CRITICAL and "4 difference(s)" in alert.title


def test_a_charge_booked_later_in_the_margin_still_matches(stripe_settings, period_start):
    """The posting's time is Stripe's `created`; the other side is read with a margin."""
    charge_id = sell(stripe_settings, amount_cents=1500, host=HostFactory())

    # A window that starts just after the charge: the charge is out of it on both sides.
    later = timezone.now() + timedelta(seconds=2)
    result = reconcile_stripe(since=later, until=later + timedelta(minutes=1))
    assert result.differences == [] and result.run.matched_count == 0

    result = reconcile(period_start)
    assert result.differences == [] and result.run.matched_count == 1
    assert charge_id


def test_a_clean_rerun_of_the_period_resolves_its_alert(stripe_settings, period_start):
    host = HostFactory()
    missing = sell(stripe_settings, amount_cents=1000, host=host, book=False)
    until = timezone.now() + timedelta(minutes=1)
    first = reconcile_stripe(since=period_start, until=until)
    assert [d.kind for d in first.differences] == [DifferenceKind.MISSING_IN_LEDGER]

    from treasury.stripe.services import ensure_charge_posted

    ensure_charge_posted(charge_id=missing)  # the late webhook books it
    second = reconcile_stripe(since=period_start, until=until)

    assert second.run.status == RunStatus.CLEAN
    with system_context():
        alert = Alert.objects.get(key=f"reconciliation:{first.run.period_label}")
    assert alert.resolved_at is not None
    assert alert.resolution_note == f"reconciliation run {second.run.pk} found no differences"


def test_every_page_of_stripes_list_is_read(stripe_settings, period_start, monkeypatch):
    monkeypatch.setattr("monitoring.services.STRIPE_PAGE_SIZE", 2)
    host = HostFactory()
    for amount_cents in (1000, 2000, 3000, 4000, 5000):
        sell(stripe_settings, amount_cents=amount_cents, host=host)
    missing = sell(stripe_settings, amount_cents=6000, host=host, book=False)

    result = reconcile(period_start)

    assert [d.match_key for d in result.differences] == [f"charge:{missing}"]
    assert (result.run.stripe_count, result.run.matched_count) == (6, 5)


def test_the_admin_shows_a_run_with_its_differences(stripe_settings, period_start, client):
    missing = sell(stripe_settings, amount_cents=1000, host=HostFactory(), book=False)
    run = reconcile(period_start).run
    admin = AdminFactory()
    assert client.login(email=admin.email, password=DEFAULT_PASSWORD)

    page = client.get(f"/admin/monitoring/reconciliationrun/{run.pk}/change/")
    listing = client.get("/admin/monitoring/reconciliationdifference/?kind=missing_in_ledger")

    assert page.status_code == 200 and f"charge:{missing}" in page.content.decode()
    assert listing.status_code == 200 and f"charge:{missing}" in listing.content.decode()
