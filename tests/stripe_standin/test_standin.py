"""The Stripe stand-in, driven through the real ``stripe`` library as the treasury drives it.

Worked examples in minor units: a 100.00 USD charge costs 2.9% + 0.30 = 3.20 in fees and
nets 96.80; a 1,000 JPY charge costs 3.6% = 36 yen.
"""

from __future__ import annotations

import socket
import time
import urllib.error
import urllib.request
from typing import Any

import pytest
import stripe

from treasury.stripe_standin import RunningStandin, start_standin, stripe_fee_cents
from treasury.stripe_standin.state import SHAPES

from .conftest import WEBHOOK_SECRET, Control, WebhookReceiver, http_json

Client = stripe.StripeClient


def pay(client: Client, amount_cents: int, currency: str = "usd", **extra: Any) -> Any:
    params = {"amount": amount_cents, "currency": currency, "confirm": True, **extra}
    params.setdefault("payment_method", "pm_card_visa")
    return client.v1.payment_intents.create(params=params)


def onboarded_account(client: Client, control: Control) -> str:
    account = client.v1.accounts.create(params={"type": "express", "country": "US"})
    assert control("POST", f"/_standin/accounts/{account.id}/complete_onboarding")[0] == 200
    return account.id


def available(client: Client, currency: str = "usd", account: str | None = None) -> int:
    options: Any = {"stripe_account": account} if account else {}
    balance = client.v1.balance.retrieve(options=options)
    return sum(entry.amount for entry in balance.available if entry.currency == currency)


def assert_stripe_shape(obj: Any) -> None:
    """Same keys as Stripe's example of that object, and the same types where both are set."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    example = SHAPES[data["object"]]
    assert set(data) - {"account"} == set(example), data["object"]
    for key, value in data.items():
        if value is not None and example.get(key) is not None and key != "balance_transaction":
            assert isinstance(value, type(example[key])), (data["object"], key)


def test_confirmed_payment_intent_books_a_charge_with_stripes_fee(stripe_client: Client) -> None:
    customer = stripe_client.v1.customers.create(params={"email": "buyer@example.com"})
    intent = pay(stripe_client, 10000, customer=customer.id, metadata={"order": "A-1"})
    assert intent.status == "succeeded" and intent.latest_charge.startswith("ch_")

    expanded = stripe_client.v1.payment_intents.retrieve(
        intent.id, params={"expand": ["latest_charge.balance_transaction"]}
    )
    charge = expanded.latest_charge
    txn = charge.balance_transaction
    assert (charge.paid, charge.captured, charge.status) == (True, True, "succeeded")
    assert charge.metadata.to_dict() == {"order": "A-1"} and charge.customer == customer.id
    assert (txn.type, txn.amount, txn.fee, txn.net) == ("charge", 10000, 320, 9680)
    assert txn.fee_details[0].amount == 320
    assert available(stripe_client) == 9680
    customer = stripe_client.v1.customers.retrieve(customer.id)
    for obj in (customer, intent, charge, txn, stripe_client.v1.balance.retrieve()):
        assert_stripe_shape(obj)


def test_zero_decimal_currencies_pay_a_percentage_only(stripe_client: Client) -> None:
    intent = pay(stripe_client, 1000, "jpy")
    charge = stripe_client.v1.charges.retrieve(
        intent.latest_charge, params={"expand": ["balance_transaction"]}
    )
    assert (charge.balance_transaction.fee, charge.balance_transaction.net) == (36, 964)
    assert stripe_fee_cents(500, "usd") == 45  # 14.5 rounds half up to 15, plus 30
    assert stripe_fee_cents(125, "jpy") == 5  # 4.5 rounds half up


def test_declined_card_is_a_card_error_and_the_intent_can_be_retried(
    stripe_client: Client,
) -> None:
    intent = stripe_client.v1.payment_intents.create(params={"amount": 5000, "currency": "usd"})
    assert intent.status == "requires_payment_method"
    with pytest.raises(stripe.CardError) as declined:
        stripe_client.v1.payment_intents.confirm(
            intent.id, params={"payment_method": "pm_card_chargeDeclined"}
        )
    assert (declined.value.http_status, declined.value.code) == (402, "card_declined")
    assert available(stripe_client) == 0

    retried = stripe_client.v1.payment_intents.confirm(
        intent.id, params={"payment_method": "pm_card_visa"}
    )
    assert retried.status == "succeeded" and available(stripe_client) == 5000 - 175


def test_webhooks_are_signed_with_the_endpoint_secret(
    stripe_client: Client,
    stripe_standin: RunningStandin,
    webhook_receiver: WebhookReceiver,
    standin_control: Control,
) -> None:
    intent = pay(stripe_client, 2500)
    assert stripe_standin.wait_for_webhooks()
    body, signature = webhook_receiver.deliveries[-1]

    event = stripe.Webhook.construct_event(body, signature, WEBHOOK_SECRET)
    assert (event.type, event.data.object.id) == ("payment_intent.succeeded", intent.id)
    assert_stripe_shape(event)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(body, signature, "whsec_someone_else")

    types = [e["type"] for e in webhook_receiver.events()]
    assert types == ["charge.succeeded", "payment_intent.succeeded"]
    assert stripe_client.v1.events.retrieve(event.id).type == "payment_intent.succeeded"
    _, log = standin_control("GET", "/_standin/events")
    assert [a["status"] for e in log["events"] for a in e["attempts"]] == [200, 200]


def test_failed_deliveries_are_recorded_and_retried(
    stripe_client: Client, stripe_standin: RunningStandin, standin_control: Control
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago refuses connections
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    target = {"url": f"http://127.0.0.1:{closed_port}/hook", "secret": WEBHOOK_SECRET}
    assert standin_control("POST", "/_standin/webhook", target)[0] == 200
    pay(stripe_client, 1000)
    assert stripe_standin.wait_for_webhooks()
    _, log = standin_control("GET", "/_standin/events")
    attempts = [a for e in log["events"] for a in e["attempts"]]
    assert len(attempts) == 2 * 3 and all(a["status"] is None and a["error"] for a in attempts)
    assert pay(stripe_client, 1000).status == "succeeded"  # the stand-in is still serving


def test_onboarding_through_the_account_link_enables_the_account(
    stripe_client: Client, stripe_standin: RunningStandin, webhook_receiver: WebhookReceiver
) -> None:
    account = stripe_client.v1.accounts.create(
        params={"type": "express", "country": "US", "email": "host@example.com"}
    )
    assert not (account.charges_enabled or account.payouts_enabled or account.details_submitted)
    link = stripe_client.v1.account_links.create(
        params={
            "account": account.id,
            "refresh_url": "https://treasury.test/refresh",
            "return_url": "https://treasury.test/done",
            "type": "account_onboarding",
        }
    )
    assert link.url.startswith(stripe_standin.base_url + f"/_standin/onboard/{account.id}")

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    with pytest.raises(urllib.error.HTTPError) as redirect:
        urllib.request.build_opener(NoRedirect).open(link.url)
    assert redirect.value.code == 302
    assert redirect.value.headers["Location"] == "https://treasury.test/done"

    onboarded = stripe_client.v1.accounts.retrieve(account.id)
    assert (onboarded.charges_enabled, onboarded.payouts_enabled) == (True, True)
    assert onboarded.requirements.disabled_reason is None
    assert_stripe_shape(onboarded)
    (event,) = webhook_receiver.wait_for(1)
    assert (event["type"], event["account"]) == ("account.updated", account.id)


def test_rejected_account_is_disabled(stripe_client: Client, standin_control: Control) -> None:
    account_id = onboarded_account(stripe_client, standin_control)
    status, rejected = standin_control(
        "POST", f"/_standin/accounts/{account_id}/reject", {"reason": "rejected.fraud"}
    )
    assert status == 200 and rejected["requirements"]["disabled_reason"] == "rejected.fraud"
    assert stripe_client.v1.accounts.retrieve(account_id).payouts_enabled is False


def test_transfers_move_money_between_balances(
    stripe_client: Client, standin_control: Control
) -> None:
    account_id = onboarded_account(stripe_client, standin_control)
    pay(stripe_client, 10000, transfer_group="order-1")
    transfer = stripe_client.v1.transfers.create(
        params={"amount": 6000, "currency": "usd", "destination": account_id}
    )
    assert_stripe_shape(transfer)
    assert available(stripe_client) == 10000 - 320 - 6000
    assert available(stripe_client, account=account_id) == 6000

    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.transfers.create(
            params={"amount": 3681, "currency": "usd", "destination": account_id}
        )
    assert (refused.value.http_status, refused.value.code) == (400, "balance_insufficient")

    reversal = stripe_client.v1.transfers.reversals.create(transfer.id, params={"amount": 1000})
    assert_stripe_shape(reversal)
    assert available(stripe_client) == 3680 + 1000
    assert available(stripe_client, account=account_id) == 5000
    assert stripe_client.v1.transfers.retrieve(transfer.id).amount_reversed == 1000


def test_reversal_needs_the_money_still_on_the_connected_account(
    stripe_client: Client, standin_control: Control
) -> None:
    account_id = onboarded_account(stripe_client, standin_control)
    pay(stripe_client, 10000)
    transfer = stripe_client.v1.transfers.create(
        params={"amount": 5000, "currency": "usd", "destination": account_id}
    )
    stripe_client.v1.payouts.create(
        params={"amount": 4500, "currency": "usd"}, options={"stripe_account": account_id}
    )
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.transfers.reversals.create(transfer.id)
    assert refused.value.code == "balance_insufficient"


def test_payouts_spend_the_connected_balance_and_failures_return_it(
    stripe_client: Client,
    stripe_standin: RunningStandin,
    standin_control: Control,
    webhook_receiver: WebhookReceiver,
) -> None:
    account_id = onboarded_account(stripe_client, standin_control)
    pay(stripe_client, 10000)
    stripe_client.v1.transfers.create(
        params={"amount": 5000, "currency": "usd", "destination": account_id}
    )
    on_account: Any = {"stripe_account": account_id}
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.payouts.create(
            params={"amount": 5001, "currency": "usd"}, options=on_account
        )
    assert refused.value.code == "balance_insufficient"

    payout = stripe_client.v1.payouts.create(
        params={"amount": 4000, "currency": "usd", "method": "standard"}, options=on_account
    )
    assert payout.status == "pending" and available(stripe_client, account=account_id) == 1000
    assert_stripe_shape(payout)
    assert stripe_client.v1.payouts.retrieve(payout.id, options=on_account).status == "in_transit"

    status, failed = standin_control(
        "POST", f"/_standin/payouts/{payout.id}/fail", {"failure_code": "account_closed"}
    )
    assert (status, failed["status"], failed["failure_code"]) == (200, "failed", "account_closed")
    assert available(stripe_client, account=account_id) == 5000
    assert stripe_standin.wait_for_webhooks()
    last = webhook_receiver.events()[-1]
    assert (last["type"], last["account"]) == ("payout.failed", account_id)
    assert last["data"]["object"]["id"] == payout.id
    assert standin_control("POST", f"/_standin/payouts/{payout.id}/paid")[0] == 400


def test_a_paid_payout_can_still_fail_and_its_money_comes_back(
    stripe_client: Client, standin_control: Control, webhook_receiver: WebhookReceiver
) -> None:
    """Stripe can fail a payout days after `payout.paid` (the bank returns it)."""
    account_id = onboarded_account(stripe_client, standin_control)
    pay(stripe_client, 10000)
    stripe_client.v1.transfers.create(
        params={"amount": 5000, "currency": "usd", "destination": account_id}
    )
    on_account: Any = {"stripe_account": account_id}
    payout = stripe_client.v1.payouts.create(
        params={"amount": 4000, "currency": "usd", "method": "instant"}, options=on_account
    )
    assert standin_control("POST", f"/_standin/payouts/{payout.id}/paid")[1]["status"] == "paid"
    assert available(stripe_client, account=account_id) == 1000

    status, failed = standin_control("POST", f"/_standin/payouts/{payout.id}/fail")
    assert (status, failed["status"], failed["failure_code"]) == (200, "failed", "account_closed")
    assert available(stripe_client, account=account_id) == 5000
    assert stripe_client.v1.payouts.retrieve(payout.id, options=on_account).status == "failed"
    assert standin_control("POST", f"/_standin/payouts/{payout.id}/fail")[0] == 400


def test_partial_refunds_up_to_the_charge_and_no_further(
    stripe_client: Client, webhook_receiver: WebhookReceiver
) -> None:
    intent = pay(stripe_client, 10000)
    first = stripe_client.v1.refunds.create(
        params={"payment_intent": intent.id, "amount": 4000, "reason": "requested_by_customer"}
    )
    stripe_client.v1.refunds.create(params={"charge": intent.latest_charge, "amount": 6000})
    assert_stripe_shape(first)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.refunds.create(params={"charge": intent.latest_charge, "amount": 1})
    assert refused.value.http_status == 400

    charge = stripe_client.v1.charges.retrieve(intent.latest_charge)
    assert (charge.amount_refunded, charge.refunded) == (10000, True)
    assert available(stripe_client) == 9680 - 10000  # Stripe keeps its fee on refunds
    listed = stripe_client.v1.refunds.list(params={"charge": charge.id})
    assert [r.amount for r in listed.data] == [6000, 4000]
    types = [e["type"] for e in webhook_receiver.wait_for(8)]
    assert len(types) == 8
    assert types[2:5] == ["refund.created", "charge.refunded", "refund.updated"]


def test_over_refund_in_one_go_is_refused(stripe_client: Client) -> None:
    intent = pay(stripe_client, 3000)
    with pytest.raises(stripe.InvalidRequestError) as refused:
        stripe_client.v1.refunds.create(params={"payment_intent": intent.id, "amount": 3001})
    assert (refused.value.code, refused.value.param) == ("amount_too_large", "amount")


def test_idempotency_key_replays_and_refuses_a_different_body(stripe_client: Client) -> None:
    params = {"amount": 1500, "currency": "usd", "confirm": True, "payment_method": "pm_card_visa"}
    once = stripe_client.v1.payment_intents.create(params=params, options={"idempotency_key": "k1"})
    again = stripe_client.v1.payment_intents.create(
        params=params, options={"idempotency_key": "k1"}
    )
    assert once.id == again.id and available(stripe_client) == 1500 - 74

    with pytest.raises(stripe.IdempotencyError):
        stripe_client.v1.payment_intents.create(
            params={**params, "amount": 1600}, options={"idempotency_key": "k1"}
        )


def test_held_events_are_released_in_reverse_with_duplicates(
    stripe_client: Client,
    stripe_standin: RunningStandin,
    webhook_receiver: WebhookReceiver,
    standin_control: Control,
) -> None:
    standin_control("POST", "/_standin/hold", {"hold": True})
    intent = pay(stripe_client, 2000)
    stripe_client.v1.refunds.create(params={"payment_intent": intent.id})
    assert stripe_standin.wait_for_webhooks() and webhook_receiver.deliveries == []

    created = [e.id for e in reversed(stripe_client.v1.events.list().data)]
    status, released = standin_control(
        "POST", "/_standin/release", {"order": "reverse", "duplicates": 2}
    )
    assert (status, released) == (200, {"released": 2 * len(created)})
    delivered = [e["id"] for e in webhook_receiver.wait_for(2 * len(created))]
    assert delivered == [event_id for event_id in reversed(created) for _ in range(2)]

    standin_control("POST", f"/_standin/events/{created[0]}/deliver")
    assert webhook_receiver.wait_for(2 * len(created) + 1)[-1]["id"] == created[0]


def test_won_and_lost_disputes(
    stripe_client: Client,
    stripe_standin: RunningStandin,
    standin_control: Control,
    webhook_receiver: WebhookReceiver,
) -> None:
    won_charge = pay(stripe_client, 10000).latest_charge
    lost_charge = pay(stripe_client, 10000).latest_charge
    _, won = standin_control("POST", f"/_standin/charges/{won_charge}/dispute", {})
    _, lost = standin_control("POST", f"/_standin/charges/{lost_charge}/dispute", {})
    assert won["status"] == "needs_response" and won["balance_transactions"][0]["net"] == -11500
    assert stripe_client.v1.charges.retrieve(won_charge).disputed is True
    assert_stripe_shape(stripe_client.v1.disputes.retrieve(won["id"]))
    assert available(stripe_client) == 2 * 9680 - 2 * 11500

    standin_control("POST", f"/_standin/disputes/{won['id']}/update", {"status": "under_review"})
    standin_control("POST", f"/_standin/disputes/{won['id']}/close", {"status": "won"})
    standin_control("POST", f"/_standin/disputes/{lost['id']}/close", {"status": "lost"})
    assert available(stripe_client) == 2 * 9680 - 2 * 11500 + 10000
    assert stripe_client.v1.disputes.retrieve(lost["id"]).status == "lost"

    assert stripe_standin.wait_for_webhooks()
    dispute_events = [
        (e["type"], e["data"]["object"]["id"])
        for e in webhook_receiver.events()
        if e["type"].startswith("charge.dispute.")
    ]
    assert dispute_events == [
        ("charge.dispute.created", won["id"]),
        ("charge.dispute.funds_withdrawn", won["id"]),
        ("charge.dispute.created", lost["id"]),
        ("charge.dispute.funds_withdrawn", lost["id"]),
        ("charge.dispute.updated", won["id"]),
        ("charge.dispute.funds_reinstated", won["id"]),
        ("charge.dispute.closed", won["id"]),
        ("charge.dispute.closed", lost["id"]),
    ]


def test_lists_page_and_filter_by_creation_time(
    stripe_client: Client, standin_control: Control
) -> None:
    status, paid = standin_control("POST", "/_standin/charges", {"amount": 1000, "currency": "usd"})
    assert status == 200 and paid["latest_charge"]["balance_transaction"]["net"] == 941
    pay(stripe_client, 1000)
    pay(stripe_client, 1000)
    first = stripe_client.v1.charges.list(params={"limit": 2})
    assert len(first.data) == 2 and first.has_more is True
    rest = stripe_client.v1.charges.list(params={"limit": 2, "starting_after": first.data[-1].id})
    assert len(rest.data) == 1 and rest.has_more is False
    txns = stripe_client.v1.balance_transactions.list(params={"created": {"gte": 2**31}})
    assert txns.data == []
    txns = stripe_client.v1.balance_transactions.list(params={"created": {"lte": 2**31}})
    assert len(txns.data) == 3


def test_unknown_objects_and_routes_are_404_in_stripes_shape(
    stripe_client: Client, stripe_standin: RunningStandin
) -> None:
    with pytest.raises(stripe.InvalidRequestError) as missing:
        stripe_client.v1.charges.retrieve("ch_doesnotexist")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")

    auth = {"Authorization": "Bearer sk_test_standin"}
    status, body = http_json("GET", stripe_standin.base_url + "/v1/widgets", headers=auth)
    assert status == 404 and set(body["error"]) == {"type", "code", "message", "param"}


def test_requests_without_a_secret_key_are_401(stripe_standin: RunningStandin) -> None:
    status, body = http_json("GET", stripe_standin.base_url + "/v1/balance")
    assert status == 401 and body["error"]["type"] == "invalid_request_error"
    public = Client("pk_test_nope", base_addresses={"api": stripe_standin.base_url})
    with pytest.raises(stripe.AuthenticationError):
        public.v1.balance.retrieve()


def test_a_restarted_standin_with_a_state_file_answers_as_before(tmp_path) -> None:
    """`make demo` stops and starts the stand-in; Stripe's objects, balances and idempotent
    replays must outlive it, as they outlive the books' server."""
    state_file = tmp_path / "standin.json"
    first = start_standin(port=0, state_file=state_file)
    client = stripe.StripeClient(
        "sk_test_standin",
        base_addresses={"api": first.base_url, "connect": first.base_url},
        max_network_retries=0,
    )
    intent = pay(client, 5000)
    refund = client.v1.refunds.create(
        params={"charge": intent.latest_charge, "amount": 1200},
        options={"idempotency_key": "refund-once"},
    )
    before = available(client)
    first.stop()

    second = start_standin(port=0, state_file=state_file)
    try:
        client = stripe.StripeClient(
            "sk_test_standin",
            base_addresses={"api": second.base_url, "connect": second.base_url},
            max_network_retries=0,
        )
        assert client.v1.charges.retrieve(intent.latest_charge).amount_refunded == 1200
        assert available(client) == before == 5000 - stripe_fee_cents(5000, "usd") - 1200
        replayed = client.v1.refunds.create(
            params={"charge": intent.latest_charge, "amount": 1200},
            options={"idempotency_key": "refund-once"},
        )
        assert replayed.id == refund.id
        assert len(client.v1.refunds.list(params={"charge": intent.latest_charge}).data) == 1
    finally:
        second.stop()


def test_instant_payouts_are_paid_by_themselves_when_asked(
    stripe_client: Client,
    stripe_standin: RunningStandin,
    standin_control: Control,
    webhook_receiver: WebhookReceiver,
) -> None:
    """The demo's stand-in pays instant payouts out shortly after, as Stripe does; standard
    payouts stay in transit until the control API settles them."""
    stripe_standin.state.instant_payouts_paid_after = 0.05
    account = onboarded_account(stripe_client, standin_control)
    pay(stripe_client, 10000)
    stripe_client.v1.transfers.create(
        params={"amount": 5000, "currency": "usd", "destination": account}
    )
    options: Any = {"stripe_account": account}
    instant = stripe_client.v1.payouts.create(
        params={"amount": 1000, "currency": "usd", "method": "instant"}, options=options
    )
    standard = stripe_client.v1.payouts.create(
        params={"amount": 1000, "currency": "usd"}, options=options
    )

    deadline = time.monotonic() + 5
    while stripe_client.v1.payouts.retrieve(instant.id, options=options).status != "paid":
        assert time.monotonic() < deadline, "the instant payout was never paid"
        time.sleep(0.05)
    assert stripe_client.v1.payouts.retrieve(standard.id, options=options).status == "in_transit"
    paid = stripe_client.v1.events.list(params={"type": "payout.paid"}, options=options).data
    assert [event.data.object.id for event in paid] == [instant.id]
