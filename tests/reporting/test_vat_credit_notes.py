"""Credit notes from real refunds and disputes (the disputes app's services against the
Stripe stand-in): the refund records and lost disputes say what was taken back of a fee
already invoiced, and the credit notes give exactly that back.

Worked example: a 25.00 USD sale, 10% to the platform (a 2.50 fee), 90% to the host; VAT
19% included (DE). Invoiced: net 2.10, VAT 0.40. A refund of 10.00 takes back 1.00 of the
fee (the refund is split like the charge): credit note net 0.84, VAT 0.16. The other 15.00
disputed and lost takes the platform's part of it, 1.50: credit note net 1.26, VAT 0.24.
"""

from __future__ import annotations

import json

import pytest
from django.utils import timezone

from disputes.services import request_refund
from ledger.chart import platform_code
from ledger.selectors import account_balance
from reporting import services
from tests.disputes import conftest as disputes_fixtures
from tests.disputes.conftest import control, deliver, dispute_of, events_about, rule, sell
from tests.factories import HostFactory, UserFactory
from treasury.rls import system_context

from .conftest import stored_text, tag

pytestmark = pytest.mark.django_db

# The disputes tests' Stripe stand-in, with the app pointed at it.
stripe_standin = disputes_fixtures.stripe_standin
stripe_settings = disputes_fixtures.stripe_settings
stripe_api = disputes_fixtures.stripe_api


def fee_revenue() -> int:
    with system_context():
        return account_balance(code=platform_code("fee_revenue", "USD"))


def vat_documents(host, run_job) -> tuple[list[dict], list[dict]]:
    today = timezone.now().date()
    report = run_job(
        services.request_report(
            requester=host,
            report_type="vat_invoice",
            report_format="json",
            period_start=today,
            period_end=today,
            country="DE",
        )
    )
    assert report.error == ""
    document = json.loads(stored_text(report))
    return document["invoices"], document["credit_notes"]


def test_a_refund_and_a_lost_dispute_are_credited_as_the_fee_was_taken_back(
    stripe_settings, stripe_api, run_job, settings, django_capture_on_commit_callbacks
):
    settings.REPORTING_INVOICE_SERIES = f"CN{tag()}-{{year}}"
    settings.REPORTING_DEDUPE_SECONDS = 0
    host, buyer = HostFactory(), UserFactory()
    split = rule(owner=host, recipients=[(host, 10000)], dispute_loss_bearer="recipients")
    charge_id = sell(stripe_settings, amount_cents=2500, split_rule=split, buyer=buyer)

    [invoice], notes = vat_documents(host, run_job)
    assert (invoice["net_cents"], invoice["vat_cents"], invoice["gross_cents"]) == (210, 40, 250)
    assert invoice["lines"][0]["reference_id"] == charge_id and notes == []

    before = fee_revenue()
    with django_capture_on_commit_callbacks(execute=True):
        request_refund(actor=buyer, charge_id=charge_id, amount_cents=1000, idempotency_key="r")
    assert fee_revenue() - before == -100
    _, [refunded] = vat_documents(host, run_job)
    assert (refunded["net_cents"], refunded["vat_cents"], refunded["gross_cents"]) == (84, 16, 100)
    assert refunded["invoice_number"] == invoice["invoice_number"]
    assert "refunded" in refunded["lines"][0]["description"]

    dispute = control(stripe_settings, f"/_standin/charges/{charge_id}/dispute", {"amount": 1500})
    control(stripe_settings, f"/_standin/disputes/{dispute['id']}/close", {"status": "lost"})
    for event in events_about(stripe_api, charge_id):
        if event["type"].startswith("charge.dispute"):
            assert deliver(event).status == "processed"
    assert dispute_of(charge_id).holds["platform_cents"] == 150

    _, notes = vat_documents(host, run_job)
    assert [(n["net_cents"], n["vat_cents"], n["gross_cents"]) for n in notes] == [
        (84, 16, 100),
        (126, 24, 150),
    ]
    assert [n["number"] for n in notes] == [1, 2]
    assert notes[1]["lines"][0]["reductions"]["disputes"] == [dispute["id"]]
    assert "dispute lost" in notes[1]["lines"][0]["description"]
    # The invoice less its credit notes: nothing of the fee is left billed.
    assert invoice["gross_cents"] - sum(n["gross_cents"] for n in notes) == 0
