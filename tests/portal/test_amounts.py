"""One way to read a typed amount (treasury.money_format), whatever page it is typed on:
a decimal comma is a decimal mark, an amount that reads two ways is refused, amounts are
exact integer minor units with the currency's exponent, and bounded."""

from __future__ import annotations

from decimal import Decimal

import pytest

from treasury.money_format import (
    MAX_AMOUNT_MINOR,
    BadAmount,
    format_input,
    format_money,
    locale_from_accept_language,
    parse_amount,
    parse_number,
    parse_share_bps,
)


@pytest.mark.parametrize(
    ("text", "locale", "value"),
    [
        ("0,50", "en_US", "0.50"),
        ("0,50", "de_DE", "0.50"),
        ("99,5", "en_US", "99.5"),
        ("12.50", "de_DE", "12.50"),
        (",5", "en_US", "0.5"),
        ("0,500", "en_US", "0.500"),  # a thousands group never starts with 0
        ("1,000", "en_US", "1000"),  # the locale's own thousands separator
        ("1.000", "de_DE", "1000"),
        ("1,234,567", "de_DE", "1234567"),  # repeated: only a thousands separator repeats
        ("1.234,56", "en_US", "1234.56"),  # of a comma and a point, the last is decimal
        ("1,234.56", "de_DE", "1234.56"),
        ("1 234,56", "fr_FR", "1234.56"),
        ("1\u202f234,56", "fr_FR", "1234.56"),
        ("1'234.50", "de_CH", "1234.50"),
        ("1,00,000.50", "en_IN", "100000.50"),  # Babel knows the locale's own grouping
        ("+12", "en_US", "12"),
    ],
)
def test_a_number_reads_the_one_way_it_can(text, locale, value):
    assert parse_number(text, locale=locale) == Decimal(value)


@pytest.mark.parametrize(
    ("text", "locale"),
    [("1,000", "de_DE"), ("1.000", "en_US"), ("1,500", "fr_FR"), ("1.000", "fr_FR")],
)
def test_one_mark_before_three_digits_is_refused_unless_the_locale_groups_with_it(text, locale):
    with pytest.raises(BadAmount, match="is ambiguous") as refused:
        parse_number(text, locale=locale)
    assert "without a thousands separator" in str(refused.value)


@pytest.mark.parametrize("text", ["", "ten", "1e3", "NaN", "Infinity", "1,2,3", "1 5", "."])
def test_what_is_not_a_number_is_refused_with_an_example(text):
    with pytest.raises(BadAmount, match="enter a number, such as 12,50"):
        parse_number(text, locale="de_DE")


def test_amounts_become_exact_minor_units_with_the_currencys_exponent():
    assert parse_amount("0,50", "EUR", locale="de_DE") == 50
    assert parse_amount("1.500", "JPY", locale="de_DE") == 1500
    assert parse_amount("1,5", "KWD", locale="en_US") == 1500
    assert parse_amount("0.1", "USD") + parse_amount("0.2", "USD") == parse_amount("0.3", "USD")
    with pytest.raises(BadAmount, match="USD amounts have 2 decimal places"):
        parse_amount("12.3456", "USD")
    with pytest.raises(BadAmount, match="JPY amounts have no decimals"):
        parse_amount("100,5", "JPY", locale="de_DE")
    for zero_or_less in ["0", "0,00", "-5", "\u22125"]:
        with pytest.raises(BadAmount, match="must be more than zero"):
            parse_amount(zero_or_less, "USD")


def test_amounts_are_bounded():
    assert parse_amount("10000000000", "USD") == MAX_AMOUNT_MINOR
    with pytest.raises(BadAmount, match=r"must be at most \$10,000,000,000\.00"):
        parse_amount("10000000000.01", "USD")
    with pytest.raises(BadAmount, match="must be at most"):
        parse_amount("1" + "0" * 18, "USD")
    assert parse_amount("5", "USD", max_cents=500) == 500


def test_shares_read_like_amounts():
    assert parse_share_bps("99,5", locale="en_US") == 9950
    assert parse_share_bps("33.33 %") == 3333
    with pytest.raises(BadAmount, match="at most two decimals"):
        parse_share_bps("33.3333")
    with pytest.raises(BadAmount, match="at most 100%"):
        parse_share_bps("1,000", locale="en_US")


def test_the_locale_comes_from_accept_language():
    assert locale_from_accept_language("de-CH,de;q=0.9,en;q=0.8") == "de_CH"
    assert locale_from_accept_language("xx-YY, fr;q=0.5") == "fr"
    assert locale_from_accept_language("") == "en_US"
    assert locale_from_accept_language(None) == "en_US"


def test_amounts_show_in_major_units_with_the_currency_symbol():
    assert format_money(4200, "USD") == "$42.00"
    assert format_money(-4200, "USD") == "-$42.00"
    assert format_money(123450, "EUR") == "€1,234.50"
    assert format_money(500, "JPY") == "¥500"
    # What a form is refilled with reads back the same way in the reader's locale.
    for locale in ["en_US", "de_DE", "fr_FR", "de_CH"]:
        typed = format_input(123456789, "USD", locale=locale)
        assert parse_amount(typed, "USD", locale=locale) == 123456789
