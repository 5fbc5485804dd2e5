"""The allocation engine: how a charge, a refund, a dispute loss or a fee is split in cents.

Everything is integer arithmetic on minor units (exact `Fraction`s inside, never floats), the
same inputs always give the same outputs, and the parts always sum to the amount split:
no cent is created or lost, whatever the currency's minor unit (JPY 0, USD 2, KWD 3).

Charges: `allocate`. Refunds and dispute losses (pro rata, in any number of partial
steps): `allocate_reversal`. A cost (the Stripe fee, a dispute fee) borne by whoever the
rule names: `allocate_cost`.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import TYPE_CHECKING
from uuid import UUID

from ledger.money import largest_remainder, normalize_currency
from splits.terms import BPS_WHOLE, MAX_CENTS, Bearer, RuleTerms
from treasury.errors import InvalidInput

if TYPE_CHECKING:
    from splits.models import SplitRule


@dataclass(frozen=True, slots=True)
class RecipientShare:
    recipient_id: UUID
    amount_cents: int


@dataclass(frozen=True, slots=True)
class Allocation:
    """`amount_cents` of `currency`, split: the platform's part and each recipient's, in the
    rule's recipient order. A part may be 0 (posting code skips zero amounts); the parts
    always sum to `amount_cents`."""

    amount_cents: int
    currency: str
    platform_fee_cents: int
    recipients: tuple[RecipientShare, ...]
    split_rule_id: int | None = None

    @property
    def parts_cents(self) -> tuple[int, ...]:
        """The platform's part first, then the recipients': the order reversals keep."""
        return (self.platform_fee_cents, *(r.amount_cents for r in self.recipients))

    def with_parts(self, amount_cents: int, parts_cents: list[int]) -> Allocation:
        """Another allocation of the same parties (a reversal or a cost) in the same order."""
        platform_cents, *recipient_cents = parts_cents
        return Allocation(
            amount_cents=amount_cents,
            currency=self.currency,
            platform_fee_cents=platform_cents,
            recipients=tuple(
                RecipientShare(recipient_id=r.recipient_id, amount_cents=cents)
                for r, cents in zip(self.recipients, recipient_cents, strict=True)
            ),
            split_rule_id=self.split_rule_id,
        )


def allocate(*, amount_cents: int, currency: str, rule: SplitRule | RuleTerms) -> Allocation:
    """Split a charge of `amount_cents` (> 0) by `rule`.

    Platform fee = floor(amount x fee_bps / 10000) + the fixed fee when the charge is in the
    fixed fee's currency, the total capped at the amount. Flooring the basis-point part (not
    rounding it) means the platform never takes more than its stated percentage; the
    fraction of a cent it leaves goes to the recipients, who are the platform's customers,
    and a host can check any fee by hand.

    The rest is split among the recipients by their `share_bps` with `largest_remainder`
    (floors, then one cent each to the largest remainders, ties to the earlier recipient in
    the rule), so it sums exactly to what is left.
    """
    terms = rule if isinstance(rule, RuleTerms) else rule.terms
    currency = normalize_currency(currency)
    _require_cents("amount_cents", amount_cents, minimum=1)
    fee_cents = amount_cents * terms.platform_fee_bps // BPS_WHOLE
    if terms.fixed_fee_currency == currency:
        fee_cents += terms.platform_fee_fixed_cents
    fee_cents = min(fee_cents, amount_cents)
    recipient_cents = largest_remainder(
        amount_cents - fee_cents, [r.share_bps for r in terms.recipients]
    )
    return Allocation(
        amount_cents=amount_cents,
        currency=currency,
        platform_fee_cents=fee_cents,
        recipients=tuple(
            RecipientShare(recipient_id=r.recipient_id, amount_cents=cents)
            for r, cents in zip(terms.recipients, recipient_cents, strict=True)
        ),
        split_rule_id=terms.split_rule_id,
    )


def allocate_reversal(
    *, allocation: Allocation, already_reversed_cents: int, reverse_cents: int
) -> Allocation:
    """The parts of a refund or dispute loss of `reverse_cents`, pro rata to `allocation`,
    after `already_reversed_cents` of the same charge were reversed by earlier calls.

    Cumulative, not step by step: the parties' cumulative reversed amounts after `T` cents
    are a function `cumulative_reversal(T)` of `T` alone, and a step is the difference
    cumulative(already + reverse) - cumulative(already). So whatever the sequence of partial
    refunds, once they add up to the charge each party has given back exactly what it got,
    and two sequences that reach the same total have reversed the same amounts.

    Why not `largest_remainder(T, parts)` for the cumulative amounts: Hamilton's method has
    the Alabama paradox. Parts (1, 3, 3): 3 cents reversed -> (1, 1, 1), 4 cents -> (0, 2, 2):
    the fourth cent would give the platform a cent back, a negative ledger entry. See
    `cumulative_reversal` for the method used, which provably never does this: every step's
    parts are >= 0 and no party ever gives back more than it received.
    """
    parts = allocation.parts_cents
    _require_cents("already_reversed_cents", already_reversed_cents, minimum=0)
    _require_cents("reverse_cents", reverse_cents, minimum=1)
    if already_reversed_cents + reverse_cents > allocation.amount_cents:
        left = allocation.amount_cents - already_reversed_cents
        raise InvalidInput(
            f"cannot reverse {reverse_cents}: only {max(left, 0)} of"
            f" {allocation.amount_cents} {allocation.currency} is left to reverse",
            fields={"reverse_cents": [f"at most {max(left, 0)}"]},
        )
    before = cumulative_reversal(already_reversed_cents, parts)
    after = cumulative_reversal(already_reversed_cents + reverse_cents, parts)
    return allocation.with_parts(reverse_cents, [a - b for a, b in zip(after, before, strict=True)])


def cumulative_reversal(reversed_cents: int, parts_cents: tuple[int, ...] | list[int]) -> list[int]:
    """How much of each part the first `reversed_cents` of a reversal take back.

    Picture every cent of the charge as a unit owned by one part, and give the j-th cent of
    a part of w cents the time (j - 1/2) / w. Sort all cents by (time, part index); the first
    T cents in that order are what a reversal of T takes back. This is Webster's (Sainte-
    Laguë) divisor method, and the definition itself gives the properties that matter:

    - the result sums to T and no part gives back more than it has (it is a set of T cents);
    - it only grows with T (the first T cents are among the first T + 1), so a step never
      hands a cent back: no Alabama paradox;
    - at T = the whole amount it is exactly the original parts;
    - each part stays close to its exact pro-rata quota T x w / W: within
      1/2 + (n/2)(w/W) cents for n parts (the Webster bound), usually within one cent;
      the rounding evens out, and is gone entirely at a full reversal.

    Computed without walking the cents one by one: round every quota to the nearest cent
    (all cents whose time is <= T / W), then add the next or drop the last cents in the
    order until the count is T, at most n / 2 moves.
    """
    whole_cents = sum(parts_cents)
    if not 0 <= reversed_cents <= whole_cents:
        raise ValueError("reversed_cents must be between 0 and the sum of the parts")
    if reversed_cents == whole_cents:
        return list(parts_cents)
    # Cents of part i with time <= T/W: (j - 1/2) / w <= T / W  <=>  j <= (2Tw + W) / 2W.
    taken = [
        min(w, (2 * reversed_cents * w + whole_cents) // (2 * whole_cents)) for w in parts_cents
    ]

    def next_cent(i: int) -> tuple[Fraction, int]:
        return Fraction(2 * taken[i] + 1, 2 * parts_cents[i]), i

    def last_cent(i: int) -> tuple[Fraction, int]:
        return Fraction(2 * taken[i] - 1, 2 * parts_cents[i]), i

    while (count := sum(taken)) < reversed_cents:
        _, index = min(next_cent(i) for i, w in enumerate(parts_cents) if taken[i] < w)
        taken[index] += 1
    while count > reversed_cents:
        _, index = max(last_cent(i) for i in range(len(parts_cents)) if taken[i] > 0)
        taken[index] -= 1
        count -= 1
    return taken


def allocate_cost(*, allocation: Allocation, cost_cents: int, bearer: Bearer | str) -> Allocation:
    """Who pays a cost of the charge (its Stripe fee, a dispute fee), as the rule says.

    `Bearer.PLATFORM`: the platform's part is the whole cost. `Bearer.RECIPIENTS`: the
    recipients share it in proportion to what each received from the charge (largest
    remainder, so it sums to the cost); if they received nothing (the fee took it all), the
    platform bears it, since there is nothing to be pro rata to. Recipients may end up
    owing more than they received: that is a debt, recorded by the ledger, not refused here.
    """
    _require_cents("cost_cents", cost_cents, minimum=0)
    recipient_cents = [r.amount_cents for r in allocation.recipients]
    if Bearer(bearer) == Bearer.PLATFORM or cost_cents == 0 or sum(recipient_cents) == 0:
        return allocation.with_parts(cost_cents, [cost_cents] + [0] * len(recipient_cents))
    return allocation.with_parts(cost_cents, [0, *largest_remainder(cost_cents, recipient_cents)])


def _require_cents(field: str, value: object, *, minimum: int) -> None:
    if type(value) is not int or not minimum <= value <= MAX_CENTS:
        raise InvalidInput(
            f"{field} must be an integer of minor units from {minimum} to {MAX_CENTS}",
            fields={field: [f"an integer from {minimum}"]},
        )
