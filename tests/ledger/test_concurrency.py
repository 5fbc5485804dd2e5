"""Real commits from real threads: each thread has its own PostgreSQL connection."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable

import pytest
from django.db import connection

from ledger.chart import platform_code, user_code
from ledger.models import LedgerTransaction
from ledger.selectors import account_balance, ledger_differences
from ledger.services import (
    Posting,
    PostingStatus,
    credit,
    debit,
    post_transaction,
    post_transactions,
)
from tests.factories import ArtistFactory, HostFactory
from treasury.rls import system_context

THREADS = 8


def run_in_threads(work: Callable[[int], None], threads: int = THREADS) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(threads)

    def runner(n: int) -> None:
        try:
            start.wait()
            work(n)
        except BaseException as exc:  # collected and asserted on by the test
            errors.append(exc)
        finally:
            connection.close()

    pool = [threading.Thread(target=runner, args=(n,)) for n in range(threads)]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join(timeout=300)
    return errors


@pytest.mark.usefixtures("committed_db")
def test_eight_threads_posting_to_shared_accounts_end_exact_and_deadlock_free():
    hosts = [HostFactory() for _ in range(3)]
    artist = ArtistFactory()
    tag = uuid.uuid4().hex[:8]
    per_thread = 200
    payables = [user_code(h.pk, "payable", "USD") for h in hosts]
    artist_payable = user_code(artist.pk, "payable", "USD")
    stripe = platform_code("stripe_balance", "USD")
    with system_context():
        stripe_before = account_balance(code=stripe)

    def work(n: int) -> None:
        for i in range(per_thread):
            # Each posting touches the hot Stripe balance, a host (shared by threads), and
            # the artist, listed in thread-dependent order to tempt a deadlock.
            host_code = payables[(n + i) % len(payables)]
            lines = [
                debit(stripe, 1000, "USD"),
                credit(host_code, 700, "USD"),
                credit(artist_payable, 300, "USD"),
            ]
            if n % 2:
                lines.reverse()
            post_transaction(
                idempotency_key=f"storm:{tag}:{n}:{i}", event_source="test", entries=lines
            )

    errors = run_in_threads(work)
    assert errors == []
    total = THREADS * per_thread
    with system_context():
        assert account_balance(code=stripe) - stripe_before == total * 1000
        assert account_balance(code=artist_payable) == total * 300
        assert sum(account_balance(code=code) for code in payables) == total * 700
        assert (
            LedgerTransaction.objects.filter(idempotency_key__startswith=f"storm:{tag}:").count()
            == total
        )
        assert list(ledger_differences()) == []


@pytest.mark.usefixtures("committed_db")
def test_eight_threads_posting_one_key_create_exactly_one_transaction():
    host = HostFactory()
    key = f"charge:same:{uuid.uuid4()}"
    payable = user_code(host.pk, "payable", "USD")
    results: list[int] = []

    def work(n: int) -> None:
        txn = post_transaction(
            idempotency_key=key,
            event_source="test",
            entries=[
                debit(platform_code("stripe_balance", "USD"), 500, "USD"),
                credit(payable, 500, "USD"),
            ],
        )
        results.append(txn.pk)

    assert run_in_threads(work) == []
    assert len(set(results)) == 1
    with system_context():
        assert LedgerTransaction.objects.filter(idempotency_key=key).count() == 1
        assert account_balance(code=payable) == 500


@pytest.mark.usefixtures("committed_db")
def test_concurrent_guarded_withdrawals_never_overdraw():
    host = HostFactory()
    payable = user_code(host.pk, "payable", "USD")
    clearing = platform_code("payout_clearing", "USD")
    post_transaction(
        idempotency_key=f"fund:{host.pk}",
        event_source="test",
        entries=[
            debit(platform_code("stripe_balance", "USD"), 1000, "USD"),
            credit(payable, 1000, "USD"),
        ],
    )
    succeeded: list[int] = []

    def work(n: int) -> None:
        try:
            post_transaction(
                idempotency_key=f"withdraw:{host.pk}:{n}",
                event_source="test",
                entries=[
                    debit(payable, 300, "USD", must_not_go_below=0),
                    credit(clearing, 300, "USD"),
                ],
            )
            succeeded.append(n)
        except Exception as exc:
            if type(exc).__name__ != "InsufficientFunds":
                raise

    assert run_in_threads(work) == []
    assert len(succeeded) == 3
    with system_context():
        assert account_balance(code=payable) == 100


@pytest.mark.usefixtures("committed_db")
def test_eight_threads_posting_batches_to_shared_accounts_end_exact_and_deadlock_free():
    """A batch locks the accounts of all its postings at once, in id order: two batches
    sharing accounts queue, never wait on each other in a cycle. New hosts' accounts are
    opened by whichever batch comes first."""
    hosts = [HostFactory() for _ in range(4)]
    tag = uuid.uuid4().hex[:8]
    batches, per_batch = 5, 20
    payables = [user_code(h.pk, "payable", "USD") for h in hosts]
    stripe = platform_code("stripe_balance", "USD")
    with system_context():
        stripe_before = account_balance(code=stripe)

    def work(n: int) -> None:
        order = payables if n % 2 else list(reversed(payables))
        for b in range(batches):
            postings = [
                Posting(
                    idempotency_key=f"batch-storm:{tag}:{n}:{b}:{i}",
                    event_source="test",
                    entries=[
                        debit(stripe, 100, "USD"),
                        credit(order[i % len(order)], 60, "USD"),
                        credit(order[(i + 1) % len(order)], 40, "USD"),
                    ],
                )
                for i in range(per_batch)
            ]
            outcomes = post_transactions(postings=postings)
            assert {o.status for o in outcomes} == {PostingStatus.POSTED}

    errors = run_in_threads(work)
    assert errors == []
    total = THREADS * batches * per_batch
    with system_context():
        assert account_balance(code=stripe) - stripe_before == total * 100
        assert sum(account_balance(code=code) for code in payables) == total * 100
        assert (
            LedgerTransaction.objects.filter(
                idempotency_key__startswith=f"batch-storm:{tag}:"
            ).count()
            == total
        )
        assert list(ledger_differences()) == []
