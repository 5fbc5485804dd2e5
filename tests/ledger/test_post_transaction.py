from __future__ import annotations

from collections.abc import Callable
from fractions import Fraction

import pytest

from ledger.chart import platform_code, user_code
from ledger.models import LedgerEntry, LedgerTransaction
from ledger.selectors import account_balance, balances
from ledger.services import credit, debit, post_transaction, reverse_transaction
from tests.ledger.conftest import book_counts
from treasury.errors import Conflict, IdempotencyConflict, InsufficientFunds, InvalidInput
from treasury.rls import system_context

pytestmark = pytest.mark.django_db


def post_charge(usd_accounts, key="charge:ch_1", gross=10_000, stripe_fee=320):
    """A worked example: a 100.00 USD ticket, 10% platform fee, 70/30 host/artist, Stripe's
    fee borne by the platform."""
    a = usd_accounts
    return post_transaction(
        idempotency_key=key,
        event_source="stripe_charge",
        reference_id=key.split(":")[1],
        entries=[
            debit(a["stripe"], gross, "USD"),
            credit(a["host"], 6300, "USD"),
            credit(a["artist"], 2700, "USD"),
            credit(a["fees"], gross - 9000, "USD"),
            debit(a["processing"], stripe_fee, "USD"),
            credit(a["stripe"], stripe_fee, "USD"),
        ],
    )


PLATFORM_ACCOUNTS = ("stripe_balance", "fee_revenue", "processing_fees", "payout_clearing")


@pytest.fixture
def balance(db: None) -> Callable[[str], int]:
    """A balance as this test moved it: tests that commit (the live and fault tests) may
    have left USD postings on the platform's accounts in this database before it ran."""
    with system_context():
        start = {
            platform_code(kind, currency): account_balance(code=platform_code(kind, currency))
            for kind in PLATFORM_ACCOUNTS
            for currency in ("USD", "JPY", "KWD")
        }

    def moved(code: str) -> int:
        with system_context():
            return account_balance(code=code) - start.get(code, 0)

    return moved


@pytest.fixture
def books_added() -> Callable[[], tuple[int, int]]:
    """Transactions and entries this test added to the books."""
    start = book_counts()
    return lambda: tuple(now - then for now, then in zip(book_counts(), start, strict=True))


def test_a_charge_credits_each_recipient_and_keeps_the_books_balanced(usd_accounts, balance):
    txn = post_charge(usd_accounts)
    assert balance(usd_accounts["stripe"]) == 9680
    assert balance(usd_accounts["host"]) == 6300
    assert balance(usd_accounts["artist"]) == 2700
    assert balance(usd_accounts["fees"]) == 1000
    assert balance(usd_accounts["processing"]) == 320
    with system_context():
        assert txn.entries.count() == 6
        assert {e.user_id for e in txn.entries.all()} >= {None}


def test_same_key_and_body_returns_the_first_transaction(usd_accounts, balance, books_added):
    first = post_charge(usd_accounts)
    again = post_charge(usd_accounts)
    assert again.pk == first.pk
    assert again.was_replayed is True
    assert balance(usd_accounts["host"]) == 6300
    assert books_added() == (1, 6)


def test_same_key_with_another_body_is_a_conflict(usd_accounts, books_added):
    post_charge(usd_accounts)
    with pytest.raises(IdempotencyConflict):
        post_charge(usd_accounts, gross=10_001, stripe_fee=321)
    assert books_added() == (1, 6)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        ([debit("platform:stripe_balance:usd", 100, "USD")], "at least two"),
        (
            [
                debit("platform:stripe_balance:usd", 100, "USD"),
                credit("platform:fee_revenue:usd", 99, "USD"),
            ],
            "unbalanced in USD",
        ),
        (
            [
                debit("platform:stripe_balance:usd", 0, "USD"),
                credit("platform:fee_revenue:usd", 0, "USD"),
            ],
            "positive integer",
        ),
        (
            [
                debit("platform:stripe_balance:usd", -5, "USD"),
                credit("platform:fee_revenue:usd", -5, "USD"),
            ],
            "positive integer",
        ),
        (
            [
                debit("platform:stripe_balance:usd", 1.5, "USD"),
                credit("platform:fee_revenue:usd", 1.5, "USD"),
            ],
            "positive integer",
        ),
        (
            [
                debit("platform:stripe_balance:abc", 1, "ABC"),
                credit("platform:fee_revenue:abc", 1, "ABC"),
            ],
            "unknown currency",
        ),
        (
            [
                debit("platform:stripe_balance:usd", 1, "EUR"),
                credit("platform:fee_revenue:eur", 1, "EUR"),
            ],
            "holds USD, not EUR",
        ),
        (
            [debit("platform:nowhere:usd", 1, "USD"), credit("platform:fee_revenue:usd", 1, "USD")],
            "unknown account",
        ),
        (
            [
                debit("user:00000000-0000-0000-0000-000000000000:payable:usd", 1, "USD"),
                credit("platform:fee_revenue:usd", 1, "USD"),
            ],
            "unknown account owner",
        ),
    ],
)
def test_bad_postings_are_refused_and_write_nothing(lines, message):
    before = book_counts()
    with pytest.raises(InvalidInput, match=message):
        post_transaction(idempotency_key="bad:1", event_source="test", entries=lines)
    assert book_counts() == before


def test_zero_decimal_and_three_decimal_currencies(host, balance):
    jpy = user_code(host.pk, "payable", "JPY")
    kwd = user_code(host.pk, "payable", "KWD")
    post_transaction(
        idempotency_key="multi:1",
        event_source="test",
        entries=[
            debit(platform_code("stripe_balance", "JPY"), 999, "JPY"),
            credit(jpy, 999, "JPY"),
            debit(platform_code("stripe_balance", "KWD"), 1_234_567, "KWD"),
            credit(kwd, 1_234_567, "KWD"),
        ],
    )
    assert balance(jpy) == 999
    assert balance(kwd) == 1_234_567
    with system_context():
        assert {b.currency for b in balances(owner_id=host.pk)} == {"JPY", "KWD"}


def test_balance_guard_refuses_to_go_below_the_floor(usd_accounts, balance):
    post_charge(usd_accounts)
    clearing = platform_code("payout_clearing", "USD")
    with pytest.raises(InsufficientFunds):
        post_transaction(
            idempotency_key="payout:too-much",
            event_source="payout",
            entries=[
                debit(usd_accounts["host"], 6301, "USD", must_not_go_below=0),
                credit(clearing, 6301, "USD"),
            ],
        )
    post_transaction(
        idempotency_key="payout:exact",
        event_source="payout",
        entries=[
            debit(usd_accounts["host"], 6300, "USD", must_not_go_below=0),
            credit(clearing, 6300, "USD"),
        ],
    )
    assert balance(usd_accounts["host"]) == 0
    assert balance(clearing) == 6300


def test_hot_accounts_spread_over_shards_and_sum_on_read(usd_accounts, settings, balance):
    for n in range(40):
        post_charge(usd_accounts, key=f"charge:ch_hot{n}")
    with system_context():
        from ledger.models import LedgerAccount

        shards = LedgerAccount.objects.filter(code=usd_accounts["stripe"]).count()
    assert 1 < shards <= settings.LEDGER_HOT_ACCOUNT_SHARDS
    assert balance(usd_accounts["stripe"]) == 40 * 9680
    assert balance(usd_accounts["host"]) == 40 * 6300


def test_partial_reversals_add_up_to_the_exact_original(usd_accounts, balance):
    charge = post_charge(usd_accounts, gross=10_001, stripe_fee=320)
    codes = [usd_accounts[k] for k in ("stripe", "host", "artist", "fees", "processing")]
    # host 6300 + artist 2700 + fees 1001 = 10001
    before = {code: 0 for code in codes}
    for n, part in enumerate([Fraction(1, 3), Fraction(1, 3), Fraction(1, 7)]):
        reverse_transaction(transaction=charge, ratio=part, idempotency_key=f"refund:{n}")
    reverse_transaction(transaction=charge, idempotency_key="refund:rest")
    assert {code: balance(code) for code in codes} == before
    with pytest.raises(Conflict):
        reverse_transaction(transaction=charge, ratio=Fraction(1, 100), idempotency_key="refund:x")


def test_reversal_is_idempotent_and_linked(usd_accounts, balance):
    charge = post_charge(usd_accounts)
    first = reverse_transaction(
        transaction=charge, ratio=Fraction(1, 2), idempotency_key="refund:a"
    )
    again = reverse_transaction(
        transaction=charge, ratio=Fraction(1, 2), idempotency_key="refund:a"
    )
    assert again.pk == first.pk
    assert first.reverses_id == charge.pk
    assert balance(usd_accounts["host"]) == 3150


def test_reversal_of_a_reversal_restores_the_balances(usd_accounts, balance):
    charge = post_charge(usd_accounts)
    reversal = reverse_transaction(transaction=charge, idempotency_key="refund:full")
    assert balance(usd_accounts["host"]) == 0
    reverse_transaction(transaction=reversal, idempotency_key="refund:full:undo")
    assert balance(usd_accounts["host"]) == 6300
    assert balance(usd_accounts["stripe"]) == 9680


def test_entries_carry_the_owner_for_row_level_security(usd_accounts, host):
    txn = post_charge(usd_accounts)
    with system_context():
        host_entry = LedgerEntry.objects.get(transaction=txn, account__code=usd_accounts["host"])
        assert host_entry.user_id == host.pk
        assert LedgerTransaction.objects.get(pk=txn.pk).request_hash
