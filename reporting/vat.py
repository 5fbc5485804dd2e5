"""VAT on the platform's fee, in integer minor units: no floats, one documented rounding.

Rates are basis points (1900 = 19%). VAT is computed per invoice line (one charge's fee) and
rounded half up to the minor unit (0.5 of a cent becomes 1 cent, as EU invoicing practice
and most tax authorities expect); an invoice's totals are the sums of its lines, so a line
and its invoice always agree to the cent.
"""

from __future__ import annotations

from dataclasses import dataclass

BPS_WHOLE = 10_000


def divide_half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded to the nearest integer, halves up (both >= 0)."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("divide_half_up takes a non-negative numerator and a positive denominator")
    return (2 * numerator + denominator) // (2 * denominator)


@dataclass(frozen=True)
class VatAmounts:
    net_cents: int
    vat_cents: int
    gross_cents: int


def vat_for_fee(*, fee_cents: int, rate_bps: int, fee_includes_vat: bool) -> VatAmounts:
    """Net, VAT and gross of one fee.

    VAT included (the fee is the gross): VAT = gross x rate / (1 + rate), net = gross - VAT,
    so the line's gross is exactly the fee the ledger took. VAT on top (the fee is the net):
    VAT = net x rate, gross = net + VAT.
    """
    if isinstance(fee_cents, bool) or not isinstance(fee_cents, int) or fee_cents < 0:
        raise ValueError(f"fee_cents must be a non-negative integer, got {fee_cents!r}")
    if not 0 <= rate_bps <= BPS_WHOLE:
        raise ValueError(f"rate_bps must be between 0 and {BPS_WHOLE}, got {rate_bps!r}")
    if fee_includes_vat:
        vat_cents = divide_half_up(fee_cents * rate_bps, BPS_WHOLE + rate_bps)
        return VatAmounts(fee_cents - vat_cents, vat_cents, fee_cents)
    vat_cents = divide_half_up(fee_cents * rate_bps, BPS_WHOLE)
    return VatAmounts(fee_cents, vat_cents, fee_cents + vat_cents)


def format_rate(rate_bps: int) -> str:
    """1900 -> '19.00%', 2550 -> '25.50%'."""
    whole, part = divmod(rate_bps, 100)
    return f"{whole}.{part:02d}%"
