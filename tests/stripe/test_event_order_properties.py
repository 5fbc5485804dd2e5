"""Stripe's events are notifications, not facts: for each kind of Stripe object, delivering
its event history in any order, with any duplicates, gives the same books.

For each kind (a charge and its refunds, a transfer and its reversals, an instant payout paid
then failed, a dispute won), the history happens at the Stripe stand-in first; its events
are then built from Stripe's documented shapes (`stripe_shapes.json`: the event, charge,
payment intent, refund, transfer, transfer reversal, payout and dispute examples of Stripe's
OpenAPI fixtures, `fixtures3.json`, unmodified) carrying each object as it was at that moment,
signed as Stripe signs them, and POSTed to the real webhook endpoint in a random order with
random duplicates. The workers then run (the intake's retries, the outbox's jobs). The books
(every ledger account's balance, and the set of idempotency keys, with the example's own ids
named by their role) must be the same for every order, and what the kind's worked example
says they are.

Each example runs in a savepoint rolled back at its end, so the examples start from the
same books; the stand-in keeps their Stripe objects apart by id.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.db.models import Max, Sum
from django.test import Client
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from events.models import Event
from events.services import deliver_event
from ledger.models import LedgerAccount, LedgerTransaction
from ledger.selectors import ledger_differences
from payouts.services import execute_payout, initiate_payout
from tests.factories import ArtistFactory, HostFactory, UserFactory
from treasury.rls import system_context
from treasury.stripe.models import EventStatus, StripeEventProcessing
from treasury.stripe.services import ensure_charge_posted, retry_event
from treasury.stripe_standin import RunningStandin
from treasury.stripe_standin.webhooks import signature_header

from .conftest import WEBHOOK_PATH, WEBHOOK_SECRET, control, split_rule

SHAPES: dict[str, dict[str, Any]] = json.loads(
    Path(__file__).with_name("stripe_shapes.json").read_text()
)
EXAMPLES = settings(
    max_examples=12,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

pytestmark = pytest.mark.django_db


class _RollBack(Exception):
    pass


@dataclass
class History:
    """A kind's events, as Stripe sent them, and the ids to name in the books."""

    events: list[dict[str, Any]] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)

    def add(
        self,
        event_type: str,
        kind: str,
        current: dict[str, Any],
        *,
        account: str | None = None,
    ) -> None:
        """`event_type` about `current` (the object as the stand-in has it now), built from
        Stripe's example event and example object of `kind`."""
        obj = copy.deepcopy(SHAPES[kind])
        obj.update({key: copy.deepcopy(value) for key, value in current.items() if key in obj})
        event = copy.deepcopy(SHAPES["event"])
        event.update(
            id=f"evt_{secrets.token_hex(12)}",
            type=event_type,
            created=int(time.time()),
            data={"object": obj},
        )
        if account:
            event["account"] = account
        self.events.append(event)


@dataclass(frozen=True)
class Books:
    balances: tuple[tuple[str, int], ...]
    keys: frozenset[str]


def post_signed(event: dict[str, Any]) -> Any:
    payload = json.dumps(event)
    signature = signature_header(payload, WEBHOOK_SECRET, int(time.time()))
    return Client(raise_request_exception=False).post(
        WEBHOOK_PATH,
        data=payload,
        content_type="application/json",
        headers={"Stripe-Signature": signature},
    )


def books_since(last_transaction_id: int, names: dict[str, str]) -> Books:
    """Every account's balance and the keys posted since `last_transaction_id`, with the
    example's own ids (users, charges, refunds, ...) replaced by their names."""

    def named(text: str) -> str:
        for raw, name in names.items():
            text = text.replace(raw, name)
        return text

    with system_context():
        # Summed over each account's shards (hot platform accounts have several, and which
        # one a posting lands on is not part of the books).
        per_code = LedgerAccount.objects.values("code").annotate(total=Sum("balance_cents"))
        balances = tuple(
            sorted((named(row["code"]), row["total"]) for row in per_code if row["total"])
        )
        keys = frozenset(
            named(key)
            for key in LedgerTransaction.objects.filter(pk__gt=last_transaction_id).values_list(
                "idempotency_key", flat=True
            )
        )
        assert list(ledger_differences()) == []
    return Books(balances=balances, keys=keys)


def deliveries(draw: st.DrawFn, count: int) -> list[int]:
    """Each of `count` events at least once, some several times, in a random order."""
    extra = draw(st.lists(st.integers(min_value=0, max_value=count - 1), max_size=count))
    return draw(st.permutations([*range(count), *extra]))


def run_workers(history: History, *, since_event_id: int) -> set[str]:
    """What the workers would do with this example's work (and only this example's: the
    database may hold other tests' committed events): the intake's retries of its failed
    Stripe events, the outbox's jobs of the events it wrote. Returns the Stripe events'
    statuses."""
    stripe_ids = [event["id"] for event in history.events]
    for _ in range(3):
        with system_context():
            failed = list(
                StripeEventProcessing.objects.filter(
                    stripe_event_id__in=stripe_ids, status=EventStatus.FAILED
                )
            )
            outbox = list(
                Event.objects.filter(pk__gt=since_event_id)
                .order_by("pk")
                .values_list("pk", flat=True)
            )
        for processing in failed:
            retry_event(processing=processing, actor=None)
        for event_id in outbox:
            deliver_event(event_id=event_id)
    with system_context():
        return set(
            StripeEventProcessing.objects.filter(stripe_event_id__in=stripe_ids).values_list(
                "status", flat=True
            )
        )


def deliver_in_order(build: Callable[[], History], draw: st.DrawFn) -> tuple[Books, History]:
    """Build the history, deliver it in a drawn order, run the workers, read the books;
    then roll everything back (the stand-in keeps its objects)."""
    outcome: dict[str, Any] = {}
    try:
        with transaction.atomic():
            with system_context():
                last_id = LedgerTransaction.objects.aggregate(last=Max("pk"))["last"] or 0
                last_event_id = Event.objects.aggregate(last=Max("pk"))["last"] or 0
            history = build()
            order = deliveries(draw, len(history.events))
            for index in order:
                response = post_signed(history.events[index])
                assert response.status_code == 200, response.content
            statuses = run_workers(history, since_event_id=last_event_id)
            assert statuses <= {EventStatus.PROCESSED, EventStatus.IGNORED}, statuses
            outcome["books"] = books_since(last_id, history.names)
            outcome["history"] = history
            raise _RollBack
    except _RollBack:
        pass
    return outcome["books"], outcome["history"]


def check_same_books(seen: list[Books], books: Books, expected_keys: set[str]) -> None:
    assert books.keys == expected_keys
    if seen:
        assert books == seen[0], "another delivery order gave other books"
    seen.append(books)


@pytest.fixture
def seen() -> list[Books]:
    """The books of each example of one test (a fixture lives as long as the test, across
    its examples): the first is what every other order must give."""
    return []


@pytest.fixture
def standin(stripe_settings: RunningStandin, stripe_api: Any, settings: Any) -> RunningStandin:
    settings.PAYOUTS_AVAILABILITY_DELAY = timedelta(0)
    settings.PAYOUTS_RISK_HOLD_THRESHOLD_BPS = 10_000
    settings.PAYOUTS_INSTANT_FEE_BPS = 150
    settings.PAYOUTS_INSTANT_FEE_MINIMUM_CENTS = {"USD": 50}
    settings.PAYOUTS_INSTANT_FEE_BEARER = "recipient"
    settings.REFUNDS_REVERSE_TRANSFERS = True
    return stripe_settings


def onboarded_host(standin: RunningStandin, names: dict[str, str]) -> Any:
    from tests.payouts.conftest import onboard

    host = HostFactory()
    host.account = onboard(standin, host)
    names[str(host.pk)] = "HOST"
    return host


def sale(standin: RunningStandin, host: Any, amount_cents: int, names: dict[str, str]) -> str:
    body = {"amount": amount_cents, "currency": "usd", "metadata": {"host_id": str(host.pk)}}
    charge_id = control(standin, "/_standin/charges", body)["latest_charge"]["id"]
    names[charge_id] = "CH"
    return charge_id


# --- a charge and its refunds ---


@EXAMPLES
@given(data=st.data())
def test_a_charge_and_its_refunds_in_any_order(standin, stripe_api, seen, data):
    def build() -> History:
        history = History()
        host, artist, buyer = HostFactory(), ArtistFactory(), UserFactory()
        history.names.update({str(host.pk): "HOST", str(artist.pk): "ARTIST"})
        rule = split_rule(owner=host, recipients=[(host, 7000), (artist, 3000)])
        body = {
            "amount": 10000,
            "currency": "usd",
            "metadata": {"split_rule_id": str(rule.pk), "buyer_id": str(buyer.pk)},
        }
        intent = control(standin, "/_standin/charges", body)
        charge_id = intent["latest_charge"]["id"]
        history.names[charge_id] = "CH"
        charge = stripe_api.v1.charges.retrieve(charge_id).to_dict()
        history.add("charge.succeeded", "charge", charge)
        intent = stripe_api.v1.payment_intents.retrieve(intent["id"]).to_dict()
        history.add("payment_intent.succeeded", "payment_intent", intent)
        for n, cents in enumerate((3000, 2500), start=1):
            refund = stripe_api.v1.refunds.create(params={"charge": charge_id, "amount": cents})
            history.names[refund.id] = f"RE{n}"
            history.add("refund.created", "refund", refund.to_dict())
            charge = stripe_api.v1.charges.retrieve(charge_id).to_dict()
            history.add("charge.refunded", "charge", charge)
            history.add("refund.updated", "refund", refund.to_dict())
        return history

    books, _ = deliver_in_order(build, data.draw)
    check_same_books(seen, books, {"charge:CH", "refund:RE1", "refund:RE2"})


# --- a transfer and its reversals ---


@EXAMPLES
@given(data=st.data())
def test_a_transfer_and_its_reversals_in_any_order(standin, stripe_api, seen, data):
    def build() -> History:
        history = History()
        host = onboarded_host(standin, history.names)
        ensure_charge_posted(charge_id=sale(standin, host, 10000, history.names))
        payout = initiate_payout(
            user=host, amount_cents=6000, currency="USD", method="standard", idempotency_key="t"
        )
        payout = execute_payout(payout_id=payout.pk)
        assert payout.status == "paid"
        history.names[f"payout:{payout.pk}:"] = "payout:P:"
        transfer_id = payout.stripe_transfer_id
        transfer = stripe_api.v1.transfers.retrieve(transfer_id).to_dict()
        history.add("transfer.created", "transfer", transfer)
        for n, cents in enumerate((300, 200), start=1):
            reversal = stripe_api.v1.transfers.reversals.create(
                transfer_id, params={"amount": cents}
            )
            history.names[reversal.id] = f"TRR{n}"
            transfer = stripe_api.v1.transfers.retrieve(transfer_id).to_dict()
            history.add("transfer.reversed", "transfer", transfer)
        return history

    books, _ = deliver_in_order(build, data.draw)
    check_same_books(
        seen,
        books,
        {
            "charge:CH",
            "payout:P:reserve",
            "payout:P:settle",
            "payout:P:reversal:TRR1",
            "payout:P:reversal:TRR2",
        },
    )


# --- an instant payout, paid then failed ---


@EXAMPLES
@given(data=st.data())
def test_a_payout_paid_then_failed_in_any_order(standin, stripe_api, seen, data):
    def build() -> History:
        history = History()
        host = onboarded_host(standin, history.names)
        account_id = host.account.stripe_account_id
        ensure_charge_posted(charge_id=sale(standin, host, 10000, history.names))
        payout = initiate_payout(
            user=host, amount_cents=6000, currency="USD", method="instant", idempotency_key="i"
        )
        payout = execute_payout(payout_id=payout.pk)
        assert payout.status == "in_flight" and payout.stripe_payout_id
        history.names[f"payout:{payout.pk}:"] = "payout:P:"
        on_account: Any = {"stripe_account": account_id}

        def now() -> dict[str, Any]:
            remote = stripe_api.v1.payouts.retrieve(payout.stripe_payout_id, options=on_account)
            return remote.to_dict()

        in_transit = now()
        pending = {**in_transit, "status": "pending"}
        history.add("payout.created", "payout", pending, account=account_id)
        history.add("payout.updated", "payout", in_transit, account=account_id)
        control(standin, f"/_standin/payouts/{payout.stripe_payout_id}/paid", {})
        history.add("payout.paid", "payout", now(), account=account_id)
        control(standin, f"/_standin/payouts/{payout.stripe_payout_id}/fail", {})
        history.add("payout.failed", "payout", now(), account=account_id)
        return history

    books, _ = deliver_in_order(build, data.draw)
    check_same_books(seen, books, {"charge:CH", "payout:P:reserve", "payout:P:release"})


# --- a dispute, won ---


@EXAMPLES
@given(data=st.data())
def test_a_dispute_in_any_order(standin, stripe_api, seen, data):
    def build() -> History:
        history = History()
        host = HostFactory()
        history.names[str(host.pk)] = "HOST"
        ensure_charge_posted(charge_id=sale(standin, host, 4000, history.names))
        charge_id = next(raw for raw, name in history.names.items() if name == "CH")
        dispute = control(standin, f"/_standin/charges/{charge_id}/dispute", {})
        history.names[dispute["id"]] = "DP"

        def now() -> dict[str, Any]:
            return stripe_api.v1.disputes.retrieve(dispute["id"]).to_dict()

        opened = now()
        history.add("charge.dispute.created", "dispute", opened)
        history.add("charge.dispute.funds_withdrawn", "dispute", opened)
        control(standin, f"/_standin/disputes/{dispute['id']}/update", {})
        history.add("charge.dispute.updated", "dispute", now())
        control(standin, f"/_standin/disputes/{dispute['id']}/close", {"status": "won"})
        won = now()
        history.add("charge.dispute.funds_reinstated", "dispute", {**won, "status": "under_review"})
        history.add("charge.dispute.closed", "dispute", won)
        return history

    books, _ = deliver_in_order(build, data.draw)
    check_same_books(seen, books, {"charge:CH", "dispute:DP:opened", "dispute:DP:won"})
