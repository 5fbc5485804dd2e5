"""Who gives back what, in cents, when a charge is refunded or disputed. No database here.

Everything is cumulative: the parties' shares of the first `T` refunded cents of a charge are
a function of `T` alone (`refunded_shares`), and a refund of `R` after `T` books the
difference `refunded_shares(T + R) - refunded_shares(T)`. The engine underneath is the
splits app's `cumulative_reversal` (Webster's method): it only grows with `T`, so every step
is >= 0 for every party, and at `T` = the charge it is exactly the charge's split. Hence any
sequence of partial refunds that adds up to the charge gives every party back exactly what
it got, to the cent, in whatever order and sizes they came.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from ledger.money import largest_remainder
from splits.allocation import Allocation, RecipientShare, allocate_cost, cumulative_reversal
from splits.terms import Bearer


@dataclass(frozen=True)
class ChargeSplit:
    """A booked charge's split, read back from `stripe_charges.allocation`."""

    amount_cents: int
    currency: str
    platform_fee_cents: int
    recipient_ids: tuple[str, ...]
    recipient_cents: tuple[int, ...]
    # Each recipient's part of Stripe's fee (0 when the platform bore it).
    recipient_stripe_fee_cents: tuple[int, ...]

    @classmethod
    def from_allocation_json(cls, data: Mapping[str, Any]) -> ChargeSplit:
        recipients = list(data.get("recipients") or [])
        return cls(
            amount_cents=int(data["amount_cents"]),
            currency=str(data["currency"]),
            platform_fee_cents=int(data["platform_fee_cents"]),
            recipient_ids=tuple(str(r["recipient_id"]) for r in recipients),
            recipient_cents=tuple(int(r["amount_cents"]) for r in recipients),
            recipient_stripe_fee_cents=tuple(
                int(r.get("stripe_fee_cents") or 0) for r in recipients
            ),
        )

    @property
    def parts_cents(self) -> tuple[int, ...]:
        """The platform's part first, then the recipients' (the order reversals keep)."""
        return (self.platform_fee_cents, *self.recipient_cents)

    def as_allocation(self) -> Allocation:
        return Allocation(
            amount_cents=self.amount_cents,
            currency=self.currency,
            platform_fee_cents=self.platform_fee_cents,
            recipients=tuple(
                RecipientShare(recipient_id=UUID(rid), amount_cents=cents)
                for rid, cents in zip(self.recipient_ids, self.recipient_cents, strict=True)
            ),
        )


@dataclass(frozen=True)
class RefundShares:
    """What a refund (or the first `T` refunded cents) takes back from each party.

    `platform_fee_cents` comes out of the platform's fee revenue, `recipients[id]` out of
    each recipient's payable; together they are the refunded amount. `stripe_fee_returned`
    is what the platform gives recipients back of the Stripe fee they bore (only when it
    absorbs Stripe's fee on refunds)."""

    platform_fee_cents: int
    recipients: dict[str, int]
    stripe_fee_returned: dict[str, int] = field(default_factory=dict)

    @property
    def total_cents(self) -> int:
        return self.platform_fee_cents + sum(self.recipients.values())

    def minus(self, other: RefundShares) -> RefundShares:
        return RefundShares(
            platform_fee_cents=self.platform_fee_cents - other.platform_fee_cents,
            recipients={k: v - other.recipients.get(k, 0) for k, v in self.recipients.items()},
            stripe_fee_returned={
                k: v - other.stripe_fee_returned.get(k, 0)
                for k, v in self.stripe_fee_returned.items()
            },
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "platform_fee_cents": self.platform_fee_cents,
            "recipients": dict(self.recipients),
            "stripe_fee_returned": dict(self.stripe_fee_returned),
        }


def refunded_shares(
    *,
    charge: ChargeSplit,
    refunded_cents: int,
    platform_refunds_fee: bool,
    platform_absorbs_stripe_fee: bool,
) -> RefundShares:
    """The parties' cumulative shares of the first `refunded_cents` refunded of `charge`.

    - The refund is split pro rata to the charge's split (`cumulative_reversal`).
    - Platform keeps its fee (`platform_refunds_fee` False): the platform's part of each
      refunded cent is passed on to the recipients in proportion to their shares (the fee
      itself split by largest remainder, then reversed cumulatively, so it too is exact and
      monotone). If the recipients received nothing, the platform refunds it: there is no one
      else to take it from.
    - Stripe keeps its fee on a refund. When the platform absorbs it, recipients who bore a
      part of it on the charge get back floor(T x their fee parts / G), cumulatively.
    """
    parts = charge.parts_cents
    taken = cumulative_reversal(refunded_cents, parts)
    platform_cents, recipient_cents = taken[0], list(taken[1:])
    if not platform_refunds_fee and platform_cents and sum(charge.recipient_cents) > 0:
        fee_by_share = largest_remainder(charge.platform_fee_cents, list(charge.recipient_cents))
        passed_on = cumulative_reversal(platform_cents, fee_by_share)
        recipient_cents = [a + b for a, b in zip(recipient_cents, passed_on, strict=True)]
        platform_cents = 0
    returned: dict[str, int] = {}
    fees = charge.recipient_stripe_fee_cents
    if platform_absorbs_stripe_fee and sum(fees) > 0:
        fee_cents = refunded_cents * sum(fees) // charge.amount_cents
        returned = dict(
            zip(charge.recipient_ids, cumulative_reversal(fee_cents, fees), strict=True)
        )
    return RefundShares(
        platform_fee_cents=platform_cents,
        recipients=dict(zip(charge.recipient_ids, recipient_cents, strict=True)),
        stripe_fee_returned=returned,
    )


@dataclass(frozen=True)
class DisputeShares:
    """Each party's share of the disputed funds (held from recipients while it is open, and
    what they give up if it is lost and they bear losses), and of Stripe's dispute fee."""

    platform_cents: int
    recipients: dict[str, int]
    fee_recipients: dict[str, int]

    def as_json(self) -> dict[str, Any]:
        return {"platform_cents": self.platform_cents, "recipients": dict(self.recipients)}


def dispute_shares(
    *,
    charge: ChargeSplit,
    refunded_cents: int,
    disputed_cents: int,
    fee_cents: int,
    fee_bearer: Bearer | str,
) -> DisputeShares:
    """The disputed cents are the next ones after those already refunded, split like a
    refund (so a refund and a lost dispute together never take back more than the charge
    gave anyone). Cents disputed beyond what is left unrefunded are the platform's alone.
    The dispute fee is the platform's, or the recipients' pro rata (`allocate_cost`)."""
    parts = charge.parts_cents
    left = max(charge.amount_cents - refunded_cents, 0)
    covered = min(disputed_cents, left)
    before = cumulative_reversal(refunded_cents, parts)
    after = cumulative_reversal(refunded_cents + covered, parts)
    step = [a - b for a, b in zip(after, before, strict=True)]
    fee = allocate_cost(allocation=charge.as_allocation(), cost_cents=fee_cents, bearer=fee_bearer)
    return DisputeShares(
        platform_cents=step[0] + (disputed_cents - covered),
        recipients=dict(zip(charge.recipient_ids, step[1:], strict=True)),
        fee_recipients={
            rid: share.amount_cents
            for rid, share in zip(charge.recipient_ids, fee.recipients, strict=True)
        },
    )
