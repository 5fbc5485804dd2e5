"""The daily aggregates match the ledger, follow new postings incrementally, and never
count a posting twice (redelivered or replayed events, recomputed days)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db.models import Sum

from analytics.models import DailyAggregate, PendingDay
from analytics.services import recompute_day, refresh_analytics
from events.services import deliver_events, replay_events
from ledger.chart import platform_code, user_code
from ledger.models import LedgerAccount, LedgerEntry
from ledger.services import credit, debit, post_transaction, reverse_transaction
from tests.disputes.conftest import sell
from tests.factories import HostFactory
from treasury.rls import system_context

from .conftest import CURRENCY, refresh

pytestmark = pytest.mark.django_db

FIGURES = [
    "gross_volume_cents",
    "platform_fee_cents",
    "refunds_cents",
    "disputes_cents",
    "payouts_cents",
    "charge_count",
]


def figures(*, currency: str = CURRENCY, user=None) -> dict[str, int]:
    """The figures summed over every day (the test's postings may straddle midnight)."""
    with system_context():
        rows = DailyAggregate.objects.filter(currency=currency, user=user)
        totals = rows.aggregate(**{f: Sum(f) for f in FIGURES})
    return {f: totals[f] or 0 for f in FIGURES}


def test_the_days_figures_match_the_worked_example(market):
    refresh()

    assert figures() == {
        "gross_volume_cents": 15000,
        "platform_fee_cents": 1167,
        "refunds_cents": 3333,
        "disputes_cents": 0,
        "payouts_cents": 2000,
        "charge_count": 2,
    }
    assert figures(user=market.host) == {**figures(), "payouts_cents": 0}
    assert figures(user=market.artist) == {
        **dict.fromkeys(FIGURES, 0),
        "payouts_cents": 2000,
    }
    with system_context():
        assert not PendingDay.objects.filter(currency=CURRENCY).exists()


def test_the_figures_match_the_ledger_itself(market):
    refresh()

    with system_context():
        fee_revenue = LedgerAccount.objects.filter(
            code=platform_code("fee_revenue", CURRENCY)
        ).aggregate(total=Sum("balance_cents"))["total"]
        artist_payable = LedgerEntry.objects.filter(
            account__code=user_code(market.artist.pk, "payable", CURRENCY),
            event_source="payout",
        ).aggregate(total=Sum("amount_cents"))["total"]
        charge_debits = LedgerEntry.objects.filter(
            account__code=platform_code("stripe_balance", CURRENCY),
            event_source="stripe_charge",
            type="debit",
        ).aggregate(total=Sum("amount_cents"))["total"]
    assert figures()["platform_fee_cents"] == fee_revenue
    assert figures()["payouts_cents"] == artist_payable
    assert figures()["gross_volume_cents"] == charge_debits


def test_new_postings_update_only_the_day_they_changed(market):
    refresh()
    with system_context():
        computed_before = {
            row.pk: row.computed_at for row in DailyAggregate.objects.exclude(currency=CURRENCY)
        }

    sell(market.standin, amount_cents=2000, split_rule=market.split, currency="sek")
    deliver_events()
    with system_context():
        assert PendingDay.objects.filter(currency=CURRENCY, day=market.day).exists()
    assert refresh_analytics() >= 1

    after = figures()
    assert (after["gross_volume_cents"], after["platform_fee_cents"], after["charge_count"]) == (
        17000,
        1367,
        3,
    )
    assert figures(user=market.host)["gross_volume_cents"] == 17000
    with system_context():
        unchanged = {
            row.pk: row.computed_at
            for row in DailyAggregate.objects.filter(pk__in=list(computed_before))
        }
    assert unchanged == computed_before  # other currencies' rows were not touched


def test_redelivered_and_replayed_events_do_not_count_twice(market):
    refresh()
    expected = figures()

    since = datetime(2000, 1, 1, tzinfo=UTC)
    summary = replay_events(since=since, handler="analytics.mark_changed_days")
    assert summary.failed == 0 and summary.succeeded >= 5
    refresh_analytics()
    assert figures() == expected

    call_command("recompute_analytics", "--from", str(market.day), "--to", str(market.day))
    assert figures() == expected
    recompute_day(day=market.day, currency=CURRENCY)
    recompute_day(day=market.day, currency=CURRENCY)
    assert figures() == expected


def test_a_day_can_be_recomputed_whatever_the_outbox_did(market):
    # No delivery at all (say the outbox was down): recomputing the day gives the figures.
    call_command("recompute_analytics", "--from", str(market.day), "--to", str(market.day))
    assert figures()["gross_volume_cents"] == 15000
    assert figures(user=market.artist)["payouts_cents"] == 2000


def test_disputes_and_reversed_charges_are_netted(host):
    currency = "NOK"
    lines = [
        debit(platform_code("stripe_balance", currency), 10000, currency),
        credit(user_code(host.pk, "payable", currency), 9000, currency),
        credit(platform_code("fee_revenue", currency), 1000, currency),
    ]
    charge = post_transaction(
        idempotency_key="charge:ch_nok_1",
        entries=lines,
        event_source="stripe_charge",
        metadata={"host_id": str(host.pk)},
    )
    # A dispute takes 100.00 and a 15.00 fee out of the Stripe balance; it is won back.
    post_transaction(
        idempotency_key="dispute:dp_nok:opened",
        entries=[
            credit(platform_code("stripe_balance", currency), 11500, currency),
            debit(platform_code("dispute_losses", currency), 11500, currency),
        ],
        event_source="dispute",
        metadata={"host_id": str(host.pk)},
    )
    post_transaction(
        idempotency_key="dispute:dp_nok:won",
        entries=[
            debit(platform_code("stripe_balance", currency), 10000, currency),
            credit(platform_code("dispute_losses", currency), 10000, currency),
        ],
        event_source="dispute",
        metadata={"host_id": str(host.pk)},
    )
    reverse_transaction(transaction=charge, idempotency_key="charge:ch_nok_1:reversal")
    refresh()

    assert figures(currency=currency) == {
        "gross_volume_cents": 0,
        "platform_fee_cents": 0,
        "refunds_cents": 0,
        "disputes_cents": 1500,
        "payouts_cents": 0,
        "charge_count": 1,
    }
    assert figures(currency=currency, user=host)["disputes_cents"] == 1500


def test_a_stranger_has_no_rows(market):
    refresh()
    stranger = HostFactory()
    with system_context():
        assert not DailyAggregate.objects.filter(user=stranger).exists()
