"""The allocation engine: worked examples in hand-computed cents, then the general case."""

from __future__ import annotations

from itertools import pairwise
from uuid import UUID

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from splits.allocation import (
    Allocation,
    RecipientShare,
    allocate,
    allocate_cost,
    allocate_reversal,
    cumulative_reversal,
)
from splits.terms import Bearer, RecipientTerm, RuleTerms
from treasury.errors import InvalidInput

HOST = UUID("00000000-0000-4000-8000-000000000001")
ARTIST = UUID("00000000-0000-4000-8000-000000000002")
THIRD = UUID("00000000-0000-4000-8000-000000000003")


def terms(*shares: tuple[UUID, int], fee_bps: int = 1000, **platform: object) -> RuleTerms:
    return RuleTerms.build(
        recipients=[{"recipient_id": r, "share_bps": bps} for r, bps in shares],
        platform_fee_bps=fee_bps,
        **platform,  # type: ignore[arg-type]
    )


def cents(allocation: Allocation) -> tuple[int, ...]:
    return allocation.parts_cents


# --- Worked examples ---


def test_a_hundred_dollars_at_ten_percent_split_seventy_thirty():
    rule = terms((HOST, 7000), (ARTIST, 3000), fee_bps=1000)
    allocation = allocate(amount_cents=10_000, currency="usd", rule=rule)
    assert allocation == Allocation(
        amount_cents=10_000,
        currency="USD",
        platform_fee_cents=1000,
        recipients=(RecipientShare(HOST, 6300), RecipientShare(ARTIST, 2700)),
    )


def test_1001_cents_three_ways_gives_the_leftover_cents_to_the_largest_remainders():
    # Quotas 333.7334, 333.6333, 333.6333: floors 999, two cents left; the first has the
    # largest remainder, the tie between the other two goes to the earlier recipient.
    rule = terms((HOST, 3334), (ARTIST, 3333), (THIRD, 3333), fee_bps=0)
    assert cents(allocate(amount_cents=1001, currency="USD", rule=rule)) == (0, 334, 334, 333)


def test_the_fee_is_floored_so_the_platform_never_takes_more_than_its_percentage():
    # 1001 x 10% = 100.1 -> 100; 901 left: 300.3934, 300.3033, 300.3033 -> 301, 300, 300.
    rule = terms((HOST, 3334), (ARTIST, 3333), (THIRD, 3333), fee_bps=1000)
    assert cents(allocate(amount_cents=1001, currency="USD", rule=rule)) == (100, 301, 300, 300)


def test_yen_have_no_minor_unit_and_still_split_exactly():
    # 999 JPY x 10% = 99.9 -> 99; 900 left: 630 / 270.
    rule = terms((HOST, 7000), (ARTIST, 3000))
    assert cents(allocate(amount_cents=999, currency="JPY", rule=rule)) == (99, 630, 270)


def test_kuwaiti_dinar_fils_split_exactly():
    # 1234.567 KWD = 1234567 fils; fee 123456.7 -> 123456; 1111111 left:
    # 777777.7 -> 777778 (larger remainder) and 333333.3 -> 333333.
    rule = terms((HOST, 7000), (ARTIST, 3000))
    allocation = allocate(amount_cents=1_234_567, currency="KWD", rule=rule)
    assert cents(allocation) == (123_456, 777_778, 333_333)
    assert sum(cents(allocation)) == 1_234_567


def test_a_fixed_fee_is_added_in_its_own_currency_only():
    rule = terms(
        (HOST, 7000),
        (ARTIST, 3000),
        fee_bps=290,
        platform_fee_fixed_cents=30,
        fixed_fee_currency="usd",
    )
    # USD: 290 + 30 = 320; 9680 left: 6776 / 2904.
    assert cents(allocate(amount_cents=10_000, currency="USD", rule=rule)) == (320, 6776, 2904)
    # EUR: the 30 cents are USD cents, so only the 2.9% applies: 290; 9710 left: 6797 / 2913.
    assert cents(allocate(amount_cents=10_000, currency="EUR", rule=rule)) == (290, 6797, 2913)


def test_the_fee_is_capped_at_the_amount():
    rule = terms(
        (HOST, 7000),
        (ARTIST, 3000),
        fee_bps=290,
        platform_fee_fixed_cents=30,
        fixed_fee_currency="USD",
    )
    # 20 cents x 2.9% = 0.58 -> 0, plus 30 fixed = 30, capped at 20: nothing left to split.
    assert cents(allocate(amount_cents=20, currency="USD", rule=rule)) == (20, 0, 0)


def test_a_rule_with_no_fee_and_one_recipient_passes_everything_through():
    assert cents(
        allocate(amount_cents=12_345, currency="USD", rule=terms((HOST, 10_000), fee_bps=0))
    ) == (0, 12_345)


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, "100"])
def test_only_positive_integer_amounts_are_allocated(amount):
    with pytest.raises(InvalidInput) as error:
        allocate(amount_cents=amount, currency="USD", rule=terms((HOST, 10_000)))
    assert "amount_cents" in error.value.fields


def test_an_unknown_currency_is_refused():
    with pytest.raises(InvalidInput) as error:
        allocate(amount_cents=100, currency="ABC", rule=terms((HOST, 10_000)))
    assert "currency" in error.value.fields


def test_a_full_refund_in_three_partial_steps_gives_back_exactly_what_was_split():
    allocation = allocate(
        amount_cents=10_000, currency="USD", rule=terms((HOST, 7000), (ARTIST, 3000))
    )  # 1000, 6300, 2700
    first = allocate_reversal(allocation=allocation, already_reversed_cents=0, reverse_cents=2500)
    second = allocate_reversal(
        allocation=allocation, already_reversed_cents=2500, reverse_cents=3333
    )
    third = allocate_reversal(
        allocation=allocation, already_reversed_cents=5833, reverse_cents=4167
    )
    # A quarter is exact: 250, 1575, 675.
    assert cents(first) == (250, 1575, 675)
    # 5833 cumulative: quotas 583.3, 3674.79, 1574.91 -> 583, 3675, 1575, minus the first.
    assert cents(second) == (333, 2100, 900)
    assert tuple(map(sum, zip(cents(first), cents(second), cents(third), strict=True))) == (
        1000,
        6300,
        2700,
    )


def test_a_reversal_step_never_hands_a_cent_back_where_largest_remainder_would():
    # Parts (1, 3, 3): cumulative largest remainder gives (1,1,1) at 3 cents and (0,2,2) at
    # 4 cents, so the fourth cent would take a cent back from the platform's reversal.
    allocation = Allocation(
        amount_cents=7,
        currency="USD",
        platform_fee_cents=1,
        recipients=(RecipientShare(HOST, 3), RecipientShare(ARTIST, 3)),
    )
    steps = [
        cents(allocate_reversal(allocation=allocation, already_reversed_cents=t, reverse_cents=1))
        for t in range(7)
    ]
    assert all(part >= 0 for step in steps for part in step)
    assert tuple(map(sum, zip(*steps, strict=True))) == (1, 3, 3)


def test_reversing_more_than_is_left_is_refused():
    allocation = allocate(amount_cents=1000, currency="USD", rule=terms((HOST, 10_000)))
    with pytest.raises(InvalidInput, match="only 400 of 1000 USD is left"):
        allocate_reversal(allocation=allocation, already_reversed_cents=600, reverse_cents=401)


def test_a_stripe_fee_borne_by_recipients_is_shared_pro_rata_to_what_they_received():
    allocation = allocate(
        amount_cents=10_000, currency="USD", rule=terms((HOST, 7000), (ARTIST, 3000))
    )  # 1000, 6300, 2700
    # 320 x 6300/9000 = 224, 320 x 2700/9000 = 96.
    assert cents(
        allocate_cost(allocation=allocation, cost_cents=320, bearer=Bearer.RECIPIENTS)
    ) == (0, 224, 96)
    assert cents(allocate_cost(allocation=allocation, cost_cents=320, bearer="platform")) == (
        320,
        0,
        0,
    )


def test_a_cost_falls_on_the_platform_when_recipients_received_nothing():
    allocation = allocate(
        amount_cents=10, currency="USD", rule=terms((HOST, 10_000), fee_bps=10_000)
    )
    assert cents(allocate_cost(allocation=allocation, cost_cents=30, bearer=Bearer.RECIPIENTS)) == (
        30,
        0,
    )


# --- Properties ---

share_lists = st.integers(min_value=1, max_value=6).flatmap(
    lambda n: (
        st.lists(st.integers(min_value=1, max_value=10_000 - n + 1), min_size=n - 1, max_size=n - 1)
        .map(lambda cuts: _shares_from_cuts(sorted(set(cuts)), n))
        .filter(lambda shares: shares is not None)
    )
)


def _shares_from_cuts(cuts: list[int], n: int) -> list[int] | None:
    """n positive integers summing to 10000 from n - 1 distinct cut points in 1..9999."""
    points = [0, *(c for c in cuts if 0 < c < 10_000), 10_000]
    shares = [b - a for a, b in pairwise(points)]
    return shares if len(shares) == n and all(s > 0 for s in shares) else None


@st.composite
def rules(draw: st.DrawFn) -> RuleTerms:
    shares = draw(share_lists)
    fixed_cents = draw(st.sampled_from([0, 0, 1, 30, 99, 10**6]))
    return RuleTerms.build(
        recipients=[
            RecipientTerm(recipient_id=UUID(int=index + 1), share_bps=bps)
            for index, bps in enumerate(shares)
        ],
        platform_fee_bps=draw(st.integers(min_value=0, max_value=10_000)),
        platform_fee_fixed_cents=fixed_cents,
        fixed_fee_currency=draw(st.sampled_from(["USD", "JPY"])) if fixed_cents else None,
    )


amounts = st.integers(min_value=1, max_value=10**12)
currencies = st.sampled_from(["USD", "JPY", "KWD", "EUR"])


@settings(max_examples=400, deadline=None)
@given(amount=amounts, currency=currencies, rule=rules())
def test_any_allocation_sums_to_the_amount_with_no_negative_part_and_is_deterministic(
    amount, currency, rule
):
    allocation = allocate(amount_cents=amount, currency=currency, rule=rule)
    assert sum(allocation.parts_cents) == amount
    assert all(part >= 0 for part in allocation.parts_cents)
    assert [r.recipient_id for r in allocation.recipients] == [
        r.recipient_id for r in rule.recipients
    ]
    assert allocate(amount_cents=amount, currency=currency, rule=rule) == allocation
    # The bps part is a floor: never more than the stated percentage (plus the fixed fee).
    fixed = rule.platform_fee_fixed_cents if rule.fixed_fee_currency == currency else 0
    assert allocation.platform_fee_cents <= amount * rule.platform_fee_bps // 10_000 + fixed


@st.composite
def reversal_plans(draw: st.DrawFn) -> tuple[Allocation, list[int]]:
    """An allocation and a sequence of partial reversals that adds up to all of it."""
    amount = draw(st.one_of(st.integers(1, 2_000), st.integers(1, 10**12)))
    allocation = allocate(amount_cents=amount, currency="USD", rule=draw(rules()))
    cuts = draw(st.lists(st.integers(1, amount), max_size=8, unique=True))
    points = [0, *sorted(c for c in cuts if c < amount), amount]
    return allocation, [b - a for a, b in pairwise(points)]


@settings(max_examples=400, deadline=None)
@given(plan=reversal_plans())
def test_partial_reversals_that_add_up_to_the_charge_reverse_exactly_its_allocation(plan):
    allocation, steps = plan
    reversed_so_far = 0
    totals = [0] * len(allocation.parts_cents)
    for step in steps:
        reversal = allocate_reversal(
            allocation=allocation, already_reversed_cents=reversed_so_far, reverse_cents=step
        )
        assert sum(reversal.parts_cents) == step
        assert all(part >= 0 for part in reversal.parts_cents)
        reversed_so_far += step
        totals = [t + p for t, p in zip(totals, reversal.parts_cents, strict=True)]
        # Never more than a party received, and path-independent: the running totals are
        # the cumulative reversal of the amount reversed so far, whatever the steps were.
        assert all(t <= p for t, p in zip(totals, allocation.parts_cents, strict=True))
        assert totals == cumulative_reversal(reversed_so_far, allocation.parts_cents)
    assert tuple(totals) == allocation.parts_cents


@settings(max_examples=400, deadline=None)
@given(
    parts=st.lists(st.integers(0, 10**6), min_size=1, max_size=7).filter(lambda p: sum(p) > 0),
    data=st.data(),
)
def test_cumulative_reversal_stays_near_pro_rata_and_only_grows(parts, data):
    whole = sum(parts)
    reversed_cents = data.draw(st.integers(0, whole - 1))
    now = cumulative_reversal(reversed_cents, parts)
    later = cumulative_reversal(reversed_cents + 1, parts)
    assert sum(now) == reversed_cents and sum(later) == reversed_cents + 1
    assert all(0 <= a <= b <= w for a, b, w in zip(now, later, parts, strict=True))
    n = sum(1 for w in parts if w)
    for taken, w in zip(now, parts, strict=True):
        # Webster's bound: |taken - T w / W| <= 1/2 + (n/2)(w/W), in integers (x 2W).
        assert abs(2 * taken * whole - 2 * reversed_cents * w) <= whole + n * w
