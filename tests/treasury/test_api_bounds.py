"""Bounds (issue 14, defects 8 and 9): every amount the API takes has one upper bound, far
below BIGINT's, and every currency it takes is an ISO 4217 code in use today.

Each endpoint that takes an amount or a currency is tried with the values that broke it (an
amount at 2**63, DEM), and the served OpenAPI schema is walked so that an amount or a
currency added later without the shared field fails here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest

from ledger.money import MAX_AMOUNT_MINOR, known_currencies, minor_units, normalize_currency
from tests.factories import SplitRuleFactory
from tests.ledger.conftest import book_counts
from tests.stripe import conftest as stripe_fixtures
from tests.treasury.conftest import request_inputs, resolve
from treasury.errors import InvalidInput

pytestmark = pytest.mark.django_db

# Stripe calls (a demo charge that passes validation) go to the local stand-in.
stripe_standin = stripe_fixtures.stripe_standin
stripe_settings = stripe_fixtures.stripe_settings


def adjustment_lines(amount: Any, currency: Any = "USD", side: str = "type") -> list[dict]:
    return [
        {"account": "platform:adjustments:usd", side: "debit", "amount_cents": amount,
         "currency": currency},
        {"account": "platform:stripe_balance:usd", side: "credit", "amount_cents": amount,
         "currency": currency},
    ]  # fmt: skip


def case(
    name: str, who: str, method: str, path: str, build: Callable[..., dict], field: str
) -> Any:
    """Who asks, how, with which body for a value, and the field the error must name."""
    return pytest.param(who, method, path, build, field, id=name)


FIELDS = ("who", "method", "path", "build", "field")

AMOUNTS = [
    case(
        "ledger adjustment",
        "admin",
        "post",
        "/api/ledger/entries",
        lambda a, ctx: {
            "idempotency_key": "bounds",
            "reason": "bounds",
            "entries": adjustment_lines(a),
        },
        "entries.0.amount_cents",
    ),
    case(
        "demo charge",
        "admin",
        "post",
        "/api/stripe/demo-charges",
        lambda a, ctx: {
            "buyer_id": str(ctx["buyer"].pk),
            "host_id": str(ctx["host"].pk),
            "amount_cents": a,
            "currency": "USD",
        },
        "amount_cents",
    ),
    case(
        "split rule's fixed fee",
        "admin",
        "post",
        "/api/split-rules",
        lambda a, ctx: {
            "name": "bounds",
            "recipients": [{"recipient_id": str(ctx["host"].pk), "share_bps": 10000}],
            "platform_fee_fixed_cents": a,
            "fixed_fee_currency": "USD",
        },
        "platform_fee_fixed_cents",
    ),
    case(
        "split rule's fixed fee, changed",
        "admin",
        "put",
        "/api/split-rules/{rule}",
        lambda a, ctx: {"platform_fee_fixed_cents": a, "fixed_fee_currency": "USD"},
        "platform_fee_fixed_cents",
    ),
    case(
        "payout",
        "host",
        "post",
        "/api/payouts/initiate",
        lambda a, ctx: {"amount_cents": a, "currency": "USD"},
        "amount_cents",
    ),
    case(
        "refund",
        "host",
        "post",
        "/api/refunds",
        lambda a, ctx: {"charge_id": "ch_bounds", "amount_cents": a},
        "amount_cents",
    ),
    case(
        "override: ledger.adjust",
        "admin",
        "post",
        "/api/admin/override",
        lambda a, ctx: {
            "action": "ledger.adjust",
            "reason": "bounds",
            "params": {"entries": adjustment_lines(a, side="side")},
        },
        "params.entries.0.amount_cents",
    ),
    case(
        "override: refund.create",
        "admin",
        "post",
        "/api/admin/override",
        lambda a, ctx: {
            "action": "refund.create",
            "reason": "bounds",
            "target": {"charge_id": "ch_bounds"},
            "params": {"amount_cents": a},
        },
        "params.amount_cents",
    ),
]


@pytest.fixture
def ask(client_for, admin_user, host, buyer, stripe_settings) -> Callable[..., Any]:
    rule = SplitRuleFactory(owner=host)
    context = {"admin": admin_user, "host": host, "buyer": buyer}

    def send(who: str, method: str, path: str, build: Callable[..., dict], value: Any) -> Any:
        client = client_for(context[who])
        return getattr(client, method)(
            path.format(rule=rule.pk), build(value, context), format="json"
        )

    return send


@pytest.mark.parametrize(
    "amount",
    [2**63, 2**63 - 1, 2**62, MAX_AMOUNT_MINOR + 1],
    ids=["2^63", "2^63-1", "2^62", "max+1"],
)
@pytest.mark.parametrize(FIELDS, AMOUNTS)
def test_an_amount_past_the_bound_is_a_400_naming_the_field_and_writes_nothing(
    ask, who, method, path, build, field, amount
):
    books = book_counts()
    response = ask(who, method, path, build, amount)
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "invalid"
    assert error["fields"][field] == [f"must be at most {MAX_AMOUNT_MINOR} minor units"]
    assert book_counts() == books


@pytest.mark.parametrize(FIELDS, AMOUNTS)
def test_the_bound_itself_passes_the_field(ask, who, method, path, build, field):
    """MAX_AMOUNT_MINOR is a valid amount: whatever the answer (a business rule may still
    say no), it is not about the amount's size."""
    response = ask(who, method, path, build, MAX_AMOUNT_MINOR)
    assert response.status_code < 500, response.content
    if response.status_code >= 400:
        assert field not in response.json()["error"]["fields"], response.content


def test_an_adjustment_at_the_bound_is_posted(client_for, admin_user):
    response = client_for(admin_user).post(
        "/api/ledger/entries",
        {"idempotency_key": "at-the-bound", "reason": "big", "entries": adjustment_lines(10**12)},
        format="json",
    )
    assert response.status_code == 201, response.content
    assert {e["amount_cents"] for e in response.json()["entries"]} == {MAX_AMOUNT_MINOR}


def test_the_bound_leaves_room_for_sums():
    """Nine million amounts at the bound still sum inside a BIGINT column."""
    assert MAX_AMOUNT_MINOR * 9_000_000 < 2**63 - 1


def test_every_amount_in_the_schema_is_a_bounded_integer(openapi):
    amounts = [
        (where, schema)
        for where, name, schema in request_inputs(openapi)
        if re.search(r"cents|amount", name)
    ]
    assert len(amounts) >= 8, amounts  # the walk finds them
    for where, schema in amounts:
        integers = [s for s in resolve(openapi, schema) if s.get("type") == "integer"]
        assert integers, f"{where} is not an integer: {schema}"
        for integer in integers:
            assert integer.get("minimum", -1) >= 0, where
            assert integer.get("maximum", 2**63) <= MAX_AMOUNT_MINOR, where


# --- currencies ---


CURRENCIES = [
    case(
        "ledger adjustment",
        "admin",
        "post",
        "/api/ledger/entries",
        lambda c, ctx: {
            "idempotency_key": "dem",
            "reason": "dem",
            "entries": adjustment_lines(100, c),
        },
        "entries.0.currency",
    ),
    case(
        "payout",
        "host",
        "post",
        "/api/payouts/initiate",
        lambda c, ctx: {"amount_cents": 100, "currency": c},
        "currency",
    ),
    case(
        "refund",
        "host",
        "post",
        "/api/refunds",
        lambda c, ctx: {"charge_id": "ch_dem", "currency": c},
        "currency",
    ),
    case(
        "demo charge",
        "admin",
        "post",
        "/api/stripe/demo-charges",
        lambda c, ctx: {
            "buyer_id": str(ctx["buyer"].pk),
            "host_id": str(ctx["host"].pk),
            "amount_cents": 100,
            "currency": c,
        },
        "currency",
    ),
    case(
        "split rule's fixed fee",
        "admin",
        "post",
        "/api/split-rules",
        lambda c, ctx: {
            "name": "dem",
            "recipients": [{"recipient_id": str(ctx["host"].pk), "share_bps": 10000}],
            "platform_fee_fixed_cents": 30,
            "fixed_fee_currency": c,
        },
        "fixed_fee_currency",
    ),
    case(
        "report",
        "host",
        "post",
        "/api/reports/generate",
        lambda c, ctx: {"type": "1099", "tax_year": 2024, "currency": c},
        "currency",
    ),
    case(
        "override: ledger.adjust",
        "admin",
        "post",
        "/api/admin/override",
        lambda c, ctx: {
            "action": "ledger.adjust",
            "reason": "dem",
            "params": {"entries": adjustment_lines(100, c, side="side")},
        },
        "params.entries.0.currency",
    ),
    case(
        "override: refund.create",
        "admin",
        "post",
        "/api/admin/override",
        lambda c, ctx: {
            "action": "refund.create",
            "reason": "dem",
            "target": {"charge_id": "ch_dem"},
            "params": {"currency": c},
        },
        "params.currency",
    ),
]
FILTERS = [
    "/api/ledger/entries",
    "/api/ledger/balances",
    "/api/payouts/status",
    "/api/payouts/available",
    "/api/reports/analytics",
]


@pytest.mark.parametrize("code", ["DEM", "dem", "FRF", "HRK"])
@pytest.mark.parametrize(FIELDS, CURRENCIES)
def test_a_historical_currency_is_a_400_naming_the_field(
    ask, who, method, path, build, field, code
):
    books = book_counts()
    response = ask(who, method, path, build, code)
    assert response.status_code == 400, response.content
    [message] = response.json()["error"]["fields"][field]
    assert message.startswith(f"{code.upper()} is not a currency in use today")
    assert book_counts() == books


@pytest.mark.parametrize("path", FILTERS)
def test_a_historical_currency_in_a_filter_is_a_400(client_for, admin_user, path):
    response = client_for(admin_user).get(path, {"currency": "DEM"})
    assert response.status_code == 400, response.content
    assert "currency" in response.json()["error"]["fields"]


@pytest.mark.parametrize("path", FILTERS)
def test_a_current_currency_in_a_filter_is_fine_in_any_case(client_for, admin_user, path):
    assert client_for(admin_user).get(path, {"currency": "eur"}).status_code == 200


def test_current_codes_only_and_stored_amounts_still_display():
    assert {"USD", "EUR", "JPY", "KWD", "XOF"} <= known_currencies()
    assert not {"DEM", "FRF", "ESP", "HRK", "XXX", "XAU"} & known_currencies()
    with pytest.raises(InvalidInput):
        normalize_currency("DEM")
    # A row booked before its currency was withdrawn must still print.
    assert minor_units("DEM") == 2


def test_every_currency_in_the_schema_is_the_one_currency_field(openapi):
    currencies = [
        (where, schema)
        for where, name, schema in request_inputs(openapi)
        if name == "currency" or name.endswith("_currency")
    ]
    assert len(currencies) >= 10, currencies
    for where, schema in currencies:
        components = {s.get("component") for s in resolve(openapi, schema)}
        assert components <= {"Currency", "CurrencyOrBlank"}, (where, schema)
    enum = openapi["components"]["schemas"]["Currency"]["enum"]
    assert "USD" in enum and "DEM" not in enum
