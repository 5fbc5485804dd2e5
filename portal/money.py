"""Amounts as people read and type them, converted exactly to and from minor units.

Decimal, never float: "12.30" USD is 1230 cents, "500" JPY is 500 yen, and an amount with
more decimals than the currency has is refused rather than rounded.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

from babel.numbers import format_currency

from ledger.money import MAX_AMOUNT_MINOR, minor_units
from splits.terms import BPS_WHOLE


class BadAmount(ValueError):
    """The text is not an amount the form can take; the message says why."""


def minor_to_decimal(amount_cents: int, currency: str) -> Decimal:
    return Decimal(amount_cents).scaleb(-minor_units(currency))


def format_money(amount_cents: int, currency: str) -> str:
    """1234567 USD -> '$12,345.67'; 500 JPY -> '¥500'."""
    return format_currency(
        minor_to_decimal(amount_cents, currency), currency, locale="en_US", currency_digits=True
    )


def _decimal(text: str) -> Decimal:
    cleaned = (text or "").strip().replace(",", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise BadAmount("enter a number, such as 12.50") from None
    if not value.is_finite() or "e" in cleaned.lower():
        raise BadAmount("enter a number, such as 12.50")
    return value


def parse_amount(text: str, currency: str) -> int:
    """'12.50' in USD -> 1250. Positive, and no finer than the currency's minor unit."""
    value = _decimal(text)
    digits = minor_units(currency)
    cents = value.scaleb(digits)
    if cents != cents.to_integral_value():
        unit = f"{digits} decimal places" if digits else "no decimals"
        raise BadAmount(f"{currency} amounts have {unit}")
    if cents <= 0:
        raise BadAmount("must be more than zero")
    if cents > MAX_AMOUNT_MINOR:
        raise BadAmount(f"is too large: at most {minor_to_decimal(MAX_AMOUNT_MINOR, currency)}")
    return int(cents)


def parse_share_bps(text: str) -> int:
    """A share typed in percent ('33.33') -> basis points (3333): above 0, at most 100,
    at most two decimals (a basis point is 0.01%)."""
    # A decimal comma is a decimal point here (a share has no thousands); "70 %" is 70.
    value = _decimal((text or "").strip().removesuffix("%").replace(",", "."))
    bps = value * 100
    if bps != bps.to_integral_value():
        raise BadAmount("at most two decimals (0.01% steps)")
    if not 0 < bps <= BPS_WHOLE:
        raise BadAmount("must be more than 0% and at most 100%")
    return int(bps)


def format_bps(bps: int) -> str:
    """3333 -> '33.33', 7000 -> '70'."""
    whole, part = divmod(bps, 100)
    return f"{whole}.{part:02d}" if part else str(whole)
