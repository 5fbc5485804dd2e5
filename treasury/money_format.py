"""Amounts as people type and read them: one parser and one formatter for every page.

Parsing is locale-aware: the reader's locale (from the request's Accept-Language) says
which mark is the decimal one, through Babel's CLDR data. What is typed in that locale's
own format is read by `babel.numbers.parse_decimal(strict=True)`; what is not (a phone
keypad in Europe types "0,50" whatever the browser's language) is read only if it can be
read one way: a mark followed by one, two or four digits can only be a decimal mark, marks
that repeat can only be thousands separators, and of a comma and a point the last is the
decimal mark. "1,000" or "1.500" (one mark, three digits) is a thousand or a one: it is
refused, unless the mark is the locale's thousands separator and not its decimal mark
("1,000" in en_US is a thousand, as Babel reads it). Decimal all the way, never a float:
an amount becomes integer minor units with the currency's exponent from Babel, and an
amount finer than the currency's minor unit is refused rather than rounded.

Formatting is one format for every page, text and chart: major units with the currency's
symbol and decimals ("$42.00", "¥500", "€1,234.50"), in en_US conventions so that an
amount reads the same wherever it is shown.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any

from babel import Locale, UnknownLocaleError
from babel.numbers import (
    NumberFormatError,
    format_currency,
    format_decimal,
    get_currency_precision,
    get_decimal_symbol,
    get_group_symbol,
    parse_decimal,
)

# The largest amount any one input may carry, in minor units (API, pages, admin): a trillion
# (USD 10 billion, JPY 1 trillion), far above any one charge, payout or adjustment, and far
# below BIGINT's 2**63 - 1, so that balances and daily totals summing nine million such
# amounts still fit. Checked before an amount can reach a BIGINT column or a sum.
MAX_AMOUNT_MINOR = 10**12
DEFAULT_LOCALE = "en_US"
# How amounts are shown: one convention everywhere.
DISPLAY_LOCALE = "en_US"
BPS_WHOLE = 10_000

# Thousands separators that are never a decimal mark: spaces of every width, apostrophes.
_GROUP_ONLY = frozenset(" \u00a0\u202f\u2009'\u2019")
_DECIMAL_OR_GROUP = frozenset(".,")
_MINUS = frozenset("-\u2212")
_DIGITS = frozenset("0123456789")


class BadAmount(ValueError):
    """The text is not an amount the form can take; the message says why, for a person."""


# --- the reader's locale ---


def locale_from_accept_language(header: str | None) -> str:
    """The first locale of an Accept-Language header that CLDR knows ('de-CH,de;q=0.9' ->
    'de_CH'); en_US when it names none."""
    from django.utils.translation.trans_real import parse_accept_lang_header

    for language, _quality in parse_accept_lang_header((header or "")[:500]):
        if language == "*":
            continue
        try:
            return str(Locale.parse(language, sep="-"))
        except (ValueError, TypeError, UnknownLocaleError):
            continue
    return DEFAULT_LOCALE


def request_locale(request: Any) -> str:
    return locale_from_accept_language(request.META.get("HTTP_ACCEPT_LANGUAGE"))


def example_amount(locale: str) -> str:
    """'12.50' in en_US, '12,50' in de_DE: what the form's hint shows."""
    return f"12{get_decimal_symbol(locale)}50"


# --- reading a typed number ---


def _valid_groups(text: str, marks: frozenset[str]) -> str | None:
    """The digits of `text` if it is a whole number grouped by thousands with `marks`
    ('1,234,567'), or plain digits; None otherwise."""
    if not text:
        return None
    groups = re.split("|".join(re.escape(m) for m in sorted(marks)), text) if marks else [text]
    if not all(g and set(g) <= _DIGITS for g in groups):
        return None
    if len(groups) > 1 and (len(groups[0]) > 3 or any(len(g) != 3 for g in groups[1:])):
        return None
    return "".join(groups)


def _readings(text: str) -> list[tuple[Decimal, str]]:
    """Every way `text` reads as a number: (value, the decimal mark used or '')."""
    marks = [c for c in text if c in _DECIMAL_OR_GROUP]
    if not marks:
        digits = _valid_groups(text, _GROUP_ONLY)
        return [(Decimal(digits), "")] if digits else []
    readings: list[tuple[Decimal, str]] = []
    last = marks[-1]
    if marks.count(last) == 1:  # the last mark as the decimal mark
        whole, fraction = text.rsplit(last, 1)
        other = set(marks) - {last}
        whole_digits = "0" if whole == "" else _valid_groups(whole, _GROUP_ONLY | other)
        if whole_digits is not None and fraction and set(fraction) <= _DIGITS:
            readings.append((Decimal(f"{whole_digits}.{fraction}"), last))
    if len(set(marks)) == 1:  # every mark a thousands separator
        digits = _valid_groups(text, _GROUP_ONLY | {last})
        if digits and not digits.startswith("0"):
            readings.append((Decimal(digits), ""))
    return readings


def _ambiguous(text: str, readings: list[tuple[Decimal, str]], locale: str) -> BadAmount:
    grouped = next(value for value, mark in readings if not mark)
    decimal = next(value for value, mark in readings if mark)
    # At least two decimals, and never exactly three (which would be ambiguous again).
    written_out = format_decimal(decimal, format="0.00##", locale=locale)
    if len(written_out.rsplit(get_decimal_symbol(locale), 1)[-1]) == 3:
        written_out = format_decimal(decimal, format="0.0000", locale=locale)
    return BadAmount(
        f"“{text}” is ambiguous: is it {grouped} or {written_out}? Type it without a"
        f" thousands separator ({grouped}) or with its decimals ({written_out})"
    )


def parse_number(text: str, *, locale: str = DEFAULT_LOCALE) -> Decimal:
    """A number as a person typed it, read in `locale` (see the module's docstring)."""
    raw = (text or "").strip()
    hint = f"enter a number, such as {example_amount(locale)}"
    if raw[:1] in _MINUS:
        raise BadAmount("must be more than zero")
    raw = raw.removeprefix("+").strip()
    if not raw or not set(raw) <= _DIGITS | _DECIMAL_OR_GROUP | _GROUP_ONLY:
        raise BadAmount(hint)
    readings = _readings(raw)
    try:
        native = parse_decimal(raw, locale=locale, strict=True)
    except (NumberFormatError, InvalidOperation, ValueError):
        native = None
    if native is not None and not native.is_finite():
        native = None
    if len(readings) == 2:
        # One mark, three digits after it: only the locale's own thousands separator (which
        # is not also its decimal mark) settles it, as Babel read it.
        mark = next(c for c in raw if c in _DECIMAL_OR_GROUP)
        grouped = next(value for value, m in readings if not m)
        if (
            native == grouped
            and mark == get_group_symbol(locale)
            and mark != get_decimal_symbol(locale)
        ):
            return grouped
        raise _ambiguous(raw, readings, locale)
    if len(readings) == 1:
        value = readings[0][0]
        if native is not None and native != value:
            raise BadAmount(f"“{raw}” can be read more than one way: type it as {value}")
        return value
    if native is not None:  # a format of the locale's own the simple reading does not know
        return native
    raise BadAmount(hint)


def minor_units(currency: str) -> int:
    """Digits after the decimal point: USD 2, JPY 0, KWD 3 (CLDR's data, via Babel)."""
    return get_currency_precision(currency.upper())


def parse_amount(
    text: str,
    currency: str,
    *,
    locale: str = DEFAULT_LOCALE,
    max_cents: int = MAX_AMOUNT_MINOR,
) -> int:
    """'12.50' USD -> 1250, '0,50' EUR -> 50: positive, no finer than the currency's minor
    unit, at most `max_cents`."""
    value = parse_number(text, locale=locale)
    digits = minor_units(currency)
    cents = value.scaleb(digits)
    if cents != cents.to_integral_value():
        unit = f"{digits} decimal places" if digits else "no decimals"
        raise BadAmount(f"{currency} amounts have {unit}")
    if cents <= 0:
        raise BadAmount("must be more than zero")
    if cents > max_cents:
        raise BadAmount(f"must be at most {format_money(max_cents, currency)}")
    return int(cents)


def parse_share_bps(text: str, *, locale: str = DEFAULT_LOCALE) -> int:
    """A share typed in percent ('33.33', '99,5', '70 %') -> basis points: above 0, at
    most 100, at most two decimals (a basis point is 0.01%)."""
    value = parse_number((text or "").strip().removesuffix("%").strip(), locale=locale)
    bps = value * 100
    if bps != bps.to_integral_value():
        raise BadAmount("at most two decimals (0.01% steps)")
    if not 0 < bps <= BPS_WHOLE:
        raise BadAmount("must be more than 0% and at most 100%")
    return int(bps)


# --- showing an amount ---


def minor_to_decimal(amount_cents: int, currency: str) -> Decimal:
    return Decimal(amount_cents).scaleb(-minor_units(currency))


def format_money(amount_cents: int, currency: str) -> str:
    """1234567 USD -> '$12,345.67'; 500 JPY -> '¥500'; -4200 USD -> '-$42.00'."""
    return format_currency(
        minor_to_decimal(amount_cents, currency),
        currency.upper(),
        locale=DISPLAY_LOCALE,
        currency_digits=True,
    )


def format_input(amount_cents: int, currency: str, *, locale: str = DEFAULT_LOCALE) -> str:
    """An amount as the reader would type it back into a form ('1234.50', '1234,50'): no
    thousands separators, so it reads one way in any locale."""
    digits = minor_units(currency)
    pattern = "0." + "0" * digits if digits else "0"
    return format_decimal(
        minor_to_decimal(amount_cents, currency),
        format=pattern,
        locale=locale,
        group_separator=False,
    )


def format_bps(bps: int) -> str:
    """3333 -> '33.33', 7000 -> '70'."""
    whole, part = divmod(bps, 100)
    return f"{whole}.{part:02d}" if part else str(whole)
