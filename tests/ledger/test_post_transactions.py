"""Batch posting: many independent transactions in one statement, one outcome each."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from events.models import Event
from ledger.chart import platform_code, user_code
from ledger.selectors import account_balance
from ledger.services import (
    Posting,
    PostingStatus,
    credit,
    debit,
    post_transaction,
    post_transactions,
)
from tests.factories import HostFactory
from tests.ledger.conftest import book_counts
from treasury.errors import Conflict, IdempotencyConflict, InsufficientFunds, InvalidInput
from treasury.rls import system_context

pytestmark = pytest.mark.django_db

CLEARING = platform_code("payout_clearing", "USD")
STRIPE = platform_code("stripe_balance", "USD")


def sale(host, key: str, cents: int = 1000) -> Posting:
    return Posting(
        idempotency_key=key,
        event_source="stripe_charge",
        entries=[
            debit(STRIPE, cents, "USD"),
            credit(user_code(host.pk, "payable", "USD"), cents, "USD"),
        ],
    )


def payout(host, key: str, cents: int) -> Posting:
    return Posting(
        idempotency_key=key,
        event_source="payout",
        entries=[
            debit(user_code(host.pk, "payable", "USD"), cents, "USD", must_not_go_below=0),
            credit(CLEARING, cents, "USD"),
        ],
    )


def balance(host) -> int:
    with system_context():
        return account_balance(code=user_code(host.pk, "payable", "USD"))


def test_a_batch_posts_each_transaction_with_its_event_in_one_statement(host):
    hosts = [host, HostFactory(), HostFactory()]
    postings = [sale(h, f"batch:sale:{n}", 1000 + n) for n, h in enumerate(hosts)]

    with CaptureQueriesContext(connection) as queries:
        outcomes = post_transactions(postings=postings)

    assert [o.status for o in outcomes] == [PostingStatus.POSTED] * 3
    assert [o.posting for o in outcomes] == postings
    assert [balance(h) for h in hosts] == [1000, 1001, 1002]
    assert sum("ledger_post_batch" in q["sql"] for q in queries.captured_queries) == 1
    assert not [q for q in queries.captured_queries if "INSERT" in q["sql"]]
    with system_context():
        for outcome in outcomes:
            txn = outcome.transaction
            assert txn.entries.count() == 2
            assert Event.objects.filter(subject=f"ledger_transaction:{txn.pk}").count() == 1


def test_one_refused_posting_does_not_sink_the_others(host):
    post_transaction(**sale(host, "batch:funded", 500).__dict__)
    other = HostFactory()
    before = book_counts()

    outcomes = post_transactions(
        postings=[
            sale(host, "batch:funded", 500),  # the same key and body: a replay
            payout(host, "batch:too-much", 501),  # the guard says no
            sale(other, "batch:new", 300),
            sale(host, "batch:funded", 999),  # the same key, another body
            Posting(  # Python's validation: unbalanced
                idempotency_key="batch:unbalanced",
                event_source="test",
                entries=[debit(STRIPE, 2, "USD"), credit(CLEARING, 1, "USD")],
            ),
            Posting(  # the database's: this owner does not exist
                idempotency_key="batch:nobody",
                event_source="test",
                entries=[
                    debit(STRIPE, 1, "USD"),
                    credit("user:00000000-0000-0000-0000-000000000000:payable:usd", 1, "USD"),
                ],
            ),
            payout(host, "batch:exact", 500),
        ]
    )

    statuses = [o.status for o in outcomes]
    assert statuses == [
        PostingStatus.REPLAYED,
        PostingStatus.REFUSED,
        PostingStatus.POSTED,
        PostingStatus.REFUSED,
        PostingStatus.REFUSED,
        PostingStatus.REFUSED,
        PostingStatus.POSTED,
    ]
    errors = [o.error for o in outcomes]
    assert isinstance(errors[1], InsufficientFunds)
    assert errors[1].fields == {"amount_cents": ["exceeds the available balance"]}
    assert isinstance(errors[3], IdempotencyConflict)
    assert errors[3].fields == {"idempotency_key": ["reused with a different body"]}
    assert isinstance(errors[4], InvalidInput) and "unbalanced in USD" in errors[4].message
    assert isinstance(errors[5], InvalidInput) and "unknown account owner" in errors[5].message
    assert outcomes[0].transaction.was_replayed is True
    assert balance(host) == 0 and balance(other) == 300
    assert book_counts() == (before[0] + 2, before[1] + 4)


def test_guards_see_the_postings_before_them_in_the_batch(host):
    post_transaction(**sale(host, "batch:fund", 1000).__dict__)

    outcomes = post_transactions(
        postings=[payout(host, "batch:first", 600), payout(host, "batch:second", 600)]
    )

    assert [o.status for o in outcomes] == [PostingStatus.POSTED, PostingStatus.REFUSED]
    assert balance(host) == 400


def test_a_key_twice_in_one_batch_posts_once(host):
    outcomes = post_transactions(postings=[sale(host, "batch:twice"), sale(host, "batch:twice")])

    assert [o.status for o in outcomes] == [PostingStatus.POSTED, PostingStatus.REPLAYED]
    assert outcomes[0].transaction.pk == outcomes[1].transaction.pk
    assert balance(host) == 1000


def test_all_or_nothing_writes_nothing_when_one_is_refused(host):
    post_transaction(**sale(host, "batch:aon:fund", 100).__dict__)
    before = book_counts()

    outcomes = post_transactions(
        postings=[
            sale(host, "batch:aon:1", 1000),
            payout(host, "batch:aon:2", 5000),
            sale(HostFactory(), "batch:aon:3", 1000),
        ],
        all_or_nothing=True,
    )

    assert [o.status for o in outcomes] == [PostingStatus.REFUSED] * 3
    assert isinstance(outcomes[1].error, InsufficientFunds)
    for outcome in (outcomes[0], outcomes[2]):
        assert type(outcome.error) is Conflict
        assert "posting 1 was refused" in outcome.error.message
    assert book_counts() == before
    assert balance(host) == 100


def test_all_or_nothing_posts_everything_when_nothing_is_refused(host):
    outcomes = post_transactions(
        postings=[sale(host, "batch:aon:ok:1"), payout(host, "batch:aon:ok:2", 1000)],
        all_or_nothing=True,
    )

    assert [o.status for o in outcomes] == [PostingStatus.POSTED, PostingStatus.POSTED]
    assert balance(host) == 0


def test_all_or_nothing_sends_nothing_when_python_refuses_one(host):
    before = book_counts()

    outcomes = post_transactions(
        postings=[
            sale(host, "batch:aon:py:1"),
            Posting(idempotency_key="", event_source="test", entries=[]),
        ],
        all_or_nothing=True,
    )

    assert [type(o.error) for o in outcomes] == [Conflict, InvalidInput]
    assert "idempotency_key is required" in outcomes[1].error.message
    assert book_counts() == before


def test_an_empty_batch_is_an_empty_answer():
    assert post_transactions(postings=[]) == []
