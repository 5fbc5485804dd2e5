"""Currencies and exact integer arithmetic for money.

Amounts are integers in the currency's minor unit; the currency travels beside them. The
ISO 4217 codes and their minor units come from babel's CLDR data, not a hand-kept table.
Nothing here converts between currencies.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from fractions import Fraction
from functools import cache

from babel.core import get_global
from babel.numbers import get_currency_precision, get_territory_currencies, list_currencies

from treasury.errors import InvalidInput
from treasury.money_format import MAX_AMOUNT_MINOR as MAX_AMOUNT_MINOR  # the one bound, re-exported

# Codes CLDR knows that are not money one can be paid in (testing, precious metals, funds).
NON_MONEY_CODES = frozenset({"XXX", "XTS", "XAU", "XAG", "XPT", "XPD", "XDR", "XSU", "XUA"})

# The largest amount any one input may carry: one bound for the API, the pages and the admin
# (defined with the pages' parser in treasury/money_format.py).


@cache
def _current_currencies(today: date) -> frozenset[str]:
    # Legal tender in some territory today (CLDR's territory data), so the historical codes
    # CLDR also lists (DEM, FRF, HRK, ...) are not among them.
    current: set[str] = set()
    for territory in get_global("territory_currencies"):
        current.update(get_territory_currencies(territory, today, tender=True))
    return frozenset(current - NON_MONEY_CODES)


def known_currencies() -> frozenset[str]:
    """The ISO 4217 codes money may be in: those in current use (per CLDR, as of today)."""
    return _current_currencies(date.today())


def normalize_currency(code: str) -> str:
    """'usd' or 'USD' -> 'USD'; an unknown or historical code is an InvalidInput (HTTP 400)."""
    normalized = (code or "").strip().upper() if isinstance(code, str) else ""
    if normalized not in known_currencies():
        message = f"unknown currency {code!r}"
        if normalized in list_currencies():
            message = f"{normalized} is not a currency in use today"
        raise InvalidInput(
            f"{message}: use a current ISO 4217 code such as USD, EUR or JPY",
            fields={"currency": [message]},
        )
    return normalized


def minor_units(currency: str) -> int:
    """Digits after the decimal point: USD 2, JPY 0, KWD 3. Any code CLDR knows, historical
    ones too: amounts already stored in a currency since withdrawn must still display."""
    code = (currency or "").strip().upper()
    if code not in list_currencies():
        normalize_currency(currency)  # raises, saying what is wrong
    return get_currency_precision(code)


def format_minor(amount_cents: int, currency: str) -> str:
    """12345 USD -> '123.45 USD', for people; never parsed back."""
    digits = minor_units(currency)
    sign = "-" if amount_cents < 0 else ""
    whole, part = divmod(abs(amount_cents), 10**digits)
    return f"{sign}{whole}.{part:0{digits}d} {currency}" if digits else f"{sign}{whole} {currency}"


def largest_remainder(total_cents: int, weights: Sequence[int | Fraction]) -> list[int]:
    """Split `total_cents` in proportion to `weights`, exactly, deterministically.

    Each share gets the floor of its exact quota; the cents left over go one each to the
    largest fractional remainders, ties to the earlier weight. The shares sum to the total,
    which is what makes splits, refunds and dispute losses never create or lose a cent.
    """
    if total_cents < 0:
        raise ValueError("total_cents must not be negative")
    if not weights or any(w < 0 for w in weights):
        raise ValueError("weights must be a non-empty list of non-negative numbers")
    weight_sum = sum(weights, Fraction(0))
    if weight_sum == 0:
        raise ValueError("weights must not all be zero")
    quotas = [Fraction(total_cents) * w / weight_sum for w in weights]
    shares = [q.numerator // q.denominator for q in quotas]
    leftover = total_cents - sum(shares)
    by_remainder = sorted(range(len(quotas)), key=lambda i: (-(quotas[i] - shares[i]), i))
    for index in by_remainder[:leftover]:
        shares[index] += 1
    return shares
