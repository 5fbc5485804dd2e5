"""Properties of the books for any sequence of postings and reversals."""

from __future__ import annotations

import uuid
from collections import defaultdict
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ledger.chart import platform_code, user_code
from ledger.models import LedgerEntry
from ledger.money import largest_remainder
from ledger.selectors import account_balance, ledger_differences
from ledger.services import credit, debit, post_transaction, reverse_transaction
from tests.factories import ArtistFactory, HostFactory
from treasury.errors import Conflict
from treasury.rls import system_context

pytestmark = pytest.mark.django_db

CURRENCIES = ["USD", "JPY", "KWD"]

posting = st.fixed_dictionaries(
    {
        "currency": st.sampled_from(CURRENCIES),
        "gross": st.integers(min_value=1, max_value=10**9),
        "weights": st.lists(
            st.integers(min_value=0, max_value=10_000), min_size=3, max_size=3
        ).filter(any),
        # None: keep; a fraction: reverse that part afterwards; "twice": reverse the reversal
        "reversal": st.one_of(
            st.none(),
            st.just("twice"),
            st.lists(st.fractions(min_value=Fraction(1, 1000), max_value=1), max_size=3),
        ),
    }
)


@settings(
    max_examples=25,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(postings=st.lists(posting, min_size=1, max_size=6))
def test_any_postings_and_reversals_keep_the_books_exact(postings):
    # Fresh people per example: examples share one database transaction.
    host, artist = HostFactory(), ArtistFactory()
    run = uuid.uuid4().hex[:8]
    expected: dict[str, int] = defaultdict(int)
    for n, p in enumerate(postings):
        ccy = p["currency"]
        parts = largest_remainder(p["gross"], p["weights"])
        codes = [
            user_code(host.pk, "payable", ccy),
            user_code(artist.pk, "payable", ccy),
            platform_code("fee_revenue", ccy),
        ]
        lines = [debit(platform_code("stripe_balance", ccy), p["gross"], ccy)]
        lines += [
            credit(code, cents, ccy) for code, cents in zip(codes, parts, strict=True) if cents
        ]
        for code in codes:
            if code not in expected:  # platform accounts carry earlier examples' money
                with system_context():
                    expected[code] = account_balance(code=code)
        txn = post_transaction(
            idempotency_key=f"prop:{run}:{n}", event_source="test", entries=lines
        )
        for code, cents in zip(codes, parts, strict=True):
            expected[code] += cents

        reversal = p["reversal"]
        if reversal == "twice":
            undo = reverse_transaction(transaction=txn, idempotency_key=f"prop:{run}:{n}:r")
            reverse_transaction(transaction=undo, idempotency_key=f"prop:{run}:{n}:rr")
        elif reversal:
            # Partial steps (as far as they fit under the whole), then whatever is left.
            done = Fraction(0)
            for k, step in enumerate(reversal):
                if done + step >= 1:
                    break
                try:
                    reverse_transaction(
                        transaction=txn, ratio=step, idempotency_key=f"prop:{run}:{n}:{k}"
                    )
                except Conflict as exc:  # a step smaller than a cent posts nothing
                    assert "rounds to zero" in str(exc)
                    continue
                done += step
            reverse_transaction(transaction=txn, idempotency_key=f"prop:{run}:{n}:rest")
            for code, cents in zip(codes, parts, strict=True):
                expected[code] -= cents

    with system_context():
        for code, cents in expected.items():
            assert account_balance(code=code) == cents, code
        assert list(ledger_differences()) == []
        sums: dict[str, int] = defaultdict(int)
        for e in LedgerEntry.objects.filter(
            transaction__idempotency_key__startswith=f"prop:{run}:"
        ):
            sums[e.currency] += e.signed_cents
        assert all(total == 0 for total in sums.values())


@given(
    total=st.integers(min_value=0, max_value=10**12),
    weights=st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=8).filter(any),
)
def test_largest_remainder_is_exact_and_never_negative(total, weights):
    shares = largest_remainder(total, weights)
    assert sum(shares) == total
    assert all(s >= 0 for s in shares)
    assert shares == largest_remainder(total, weights)
    weight_sum = sum(weights)
    for share, weight in zip(shares, weights, strict=True):
        assert abs(Fraction(share) - Fraction(total * weight, weight_sum)) < 1
