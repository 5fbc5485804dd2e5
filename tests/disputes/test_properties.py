"""Properties of refunds for any charge and any sequence of partial refunds.

- Any partition of a charge into partial refunds, taken in any order, gives every party back
  exactly what the charge gave it once they add up to the charge, and never more before.
- Every step takes a non-negative amount from every party (no Alabama paradox).
- Through Stripe and the ledger: the books verify after every step, no recipient is taken
  below zero on the way, and all of them end at exactly zero.
"""

from __future__ import annotations

import itertools

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from disputes.services import request_refund
from disputes.shares import ChargeSplit, refunded_shares
from ledger.money import largest_remainder
from tests.factories import AdminFactory, ArtistFactory, HostFactory, UserFactory

from .conftest import DB, ledger_is_clean, payable, platform, rule, sell


@st.composite
def charges(draw: st.DrawFn) -> ChargeSplit:
    amount = draw(st.integers(min_value=1, max_value=10**9))
    fee = draw(st.integers(min_value=0, max_value=amount))
    weights = draw(st.lists(st.integers(min_value=0, max_value=10_000), min_size=1, max_size=5))
    if not any(weights):
        weights[0] = 1
    recipients = largest_remainder(amount - fee, weights)
    stripe_fees = [draw(st.integers(min_value=0, max_value=cents)) for cents in recipients]
    return ChargeSplit(
        amount_cents=amount,
        currency="USD",
        platform_fee_cents=fee,
        recipient_ids=tuple(f"r{i}" for i in range(len(recipients))),
        recipient_cents=tuple(recipients),
        recipient_stripe_fee_cents=tuple(stripe_fees),
    )


def partition(draw: st.DrawFn, total: int, max_parts: int = 8) -> list[int]:
    """`total` cut into 1..max_parts positive parts, in a random order."""
    cuts = draw(
        st.lists(
            st.integers(min_value=1, max_value=max(total - 1, 1)),
            max_size=min(max_parts - 1, max(total - 1, 0)),
            unique=True,
        )
    )
    points = [0, *sorted(c for c in cuts if 0 < c < total), total]
    parts = [b - a for a, b in itertools.pairwise(points)]
    return draw(st.permutations(parts))


@settings(max_examples=400, deadline=None)
@given(
    charge=charges(),
    refunds_fee=st.booleans(),
    absorbs=st.booleans(),
    data=st.data(),
)
def test_any_partial_refunds_give_back_exactly_the_split_and_never_more(
    charge, refunds_fee, absorbs, data
):
    policy = {"platform_refunds_fee": refunds_fee, "platform_absorbs_stripe_fee": absorbs}
    steps = partition(data.draw, charge.amount_cents)
    refunded = 0
    previous = refunded_shares(charge=charge, refunded_cents=0, **policy)
    for step in steps:
        refunded += step
        now = refunded_shares(charge=charge, refunded_cents=refunded, **policy)
        taken = now.minus(previous)
        assert taken.total_cents == step
        assert taken.platform_fee_cents >= 0
        assert all(cents >= 0 for cents in taken.recipients.values())
        assert all(cents >= 0 for cents in taken.stripe_fee_returned.values())
        if refunds_fee:  # nobody gives back more than they got
            assert now.platform_fee_cents <= charge.platform_fee_cents
            for rid, got in zip(charge.recipient_ids, charge.recipient_cents, strict=True):
                assert now.recipients[rid] <= got
        previous = now
    if refunds_fee or sum(charge.recipient_cents) == 0:
        assert previous.platform_fee_cents == charge.platform_fee_cents
        assert tuple(previous.recipients.values()) == charge.recipient_cents
    else:  # the platform kept its fee: the recipients gave back the whole charge
        assert previous.platform_fee_cents == 0
        assert sum(previous.recipients.values()) == charge.amount_cents
    if absorbs:
        returned = tuple(previous.stripe_fee_returned.get(r, 0) for r in charge.recipient_ids)
        assert returned == charge.recipient_stripe_fee_cents


@DB
@settings(
    max_examples=15,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    currency=st.sampled_from(["usd", "jpy"]),
    amount=st.integers(min_value=60, max_value=500_000),
    host_bps=st.integers(min_value=1, max_value=9_999),
    fee_bps=st.integers(min_value=0, max_value=3_000),
    data=st.data(),
)
def test_partial_refunds_through_stripe_net_recipients_to_zero_and_the_ledger_verifies(
    stripe_settings,
    django_capture_on_commit_callbacks,
    currency,
    amount,
    host_bps,
    fee_bps,
    data,
):
    # Fresh people per example: examples share one database transaction.
    host, artist, admin = HostFactory(), ArtistFactory(), AdminFactory()
    split = rule(
        owner=host,
        recipients=[(host, host_bps), (artist, 10_000 - host_bps)],
        platform_fee_bps=fee_bps,
    )
    charge_id = sell(
        stripe_settings,
        amount_cents=amount,
        split_rule=split,
        buyer=UserFactory(),
        currency=currency,
    )
    ccy = currency.upper()
    earned = (payable(host, ccy), payable(artist, ccy))
    revenue = platform(ccy)["fee_revenue"]
    steps = partition(data.draw, amount, max_parts=5)

    for n, step in enumerate(steps):
        with django_capture_on_commit_callbacks(execute=True):
            request_refund(
                actor=admin, charge_id=charge_id, amount_cents=step, idempotency_key=f"{n}"
            )
        now = (payable(host, ccy), payable(artist, ccy))
        assert all(0 <= left <= got for left, got in zip(now, earned, strict=True))
        assert ledger_is_clean()

    assert (payable(host, ccy), payable(artist, ccy)) == (0, 0)
    assert platform(ccy)["fee_revenue"] == revenue - (amount - sum(earned))
