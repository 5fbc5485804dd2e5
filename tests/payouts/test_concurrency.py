"""Two concurrent requests can never pay out more than is available.

Ten requests at once, each for 60% of the available balance (54.00 of 90.00 USD), through
the HTTP API with real commits: exactly one is paid out, the nine others are refused
(422 insufficient_funds), 36.00 stays payable, Stripe got one transfer, the ledger verifies.
"""

from __future__ import annotations

import threading
import uuid

from django.db import connections
from rest_framework.test import APIClient

from ledger.selectors import ledger_differences
from payouts.models import Payout
from tests.factories import HostFactory
from treasury.api import token_pair
from treasury.rls import system_context

from .conftest import earn, onboard, payable, transfers_to

REQUESTS = 10


def test_ten_concurrent_requests_for_60_percent_pay_out_exactly_once(
    committed_db, test_database_only, stripe_settings, stripe_api
):
    host = HostFactory()
    account = onboard(stripe_settings, host)
    earn(stripe_settings, host, 10000)
    assert payable(host) == 9000
    token = token_pair(host)["access"]
    start = threading.Barrier(REQUESTS)
    answers: list[tuple[int, dict]] = []

    def request() -> None:
        try:
            client = APIClient()
            client.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
            start.wait(timeout=30)
            response = client.post(
                "/api/payouts/initiate",
                {"amount_cents": 5400, "currency": "USD"},
                format="json",
                headers={"Idempotency-Key": f"concurrent-{uuid.uuid4()}"},
            )
            answers.append((response.status_code, response.json()))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=request) for _ in range(REQUESTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    statuses = sorted(status for status, _ in answers)
    assert statuses == [201] + [422] * (REQUESTS - 1), answers
    refused = [body for status, body in answers if status == 422]
    assert {body["error"]["code"] for body in refused} == {"insufficient_funds"}
    assert payable(host) == 3600
    with system_context():
        [payout] = Payout.objects.filter(user=host)
        assert (payout.status, payout.amount_cents) == ("paid", 5400)
        assert list(ledger_differences()) == []
    [transfer] = transfers_to(stripe_api, account.stripe_account_id)
    assert transfer["amount"] == 5400
