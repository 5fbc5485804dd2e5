"""Schemathesis against /api/schema/: the OpenAPI schema says what the server does.

Every operation, with an admin's and with a host's token, and schemathesis's stricter checks
on: no 5xx; every status code and every body (successes and errors alike) is the one the
schema documents; data that breaks the schema (a number for a text, an amount past the
bound, an unknown currency, a filter given twice) is refused with a 4xx; data that fits it is
accepted, unless a business rule the schema cannot state says no (listed below, per
operation, by the fields the error names). Every 4xx carries the one error shape of
treasury/errors.py.

Requests go through the WSGI application in the test's transaction (rolled back after each
test), generated from the OpenAPI schema the app itself serves; Stripe is the local stand-in.
Examples per operation are few and derandomised: the same run in CI every time, and short.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from fnmatch import fnmatch
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from ledger.chart import platform_code, user_code
from ledger.services import credit, debit, post_transaction
from tests.factories import SplitRuleFactory
from tests.stripe import conftest as stripe_fixtures
from treasury.api import token_pair

# Valid-looking requests a business rule refuses with a 400, which no schema can say:
# operation -> the fields such a 400 may name. A 400 naming anything else, on data that fits
# the schema, means the schema and the server disagree.
FROM_BEFORE_TO = {"to"}  # `to` must be after `from`
BUSINESS_RULES: dict[str, set[str]] = {
    "GET /api/ledger/entries": FROM_BEFORE_TO,
    "GET /api/payouts/status": FROM_BEFORE_TO,
    "GET /api/ai/anomalies": FROM_BEFORE_TO,
    "GET /api/reports/analytics": FROM_BEFORE_TO,
    # Django's password validators (common, numeric, like the email); a taken email is a 409.
    "POST /api/auth/signup": {"password"},
    # Entries balance per currency, on accounts that exist; an idempotency key is needed in
    # the body or the header.
    "POST /api/ledger/entries": {"idempotency_key", "entries", "entries.*"},
    # ledger.adjust: as POST /api/ledger/entries (the ledger names the entry, not
    # `params.entries.N`).
    "POST /api/admin/override": {"entries.*"},
    # Which parameters each report type takes; tax years not in the future; configured VAT.
    "POST /api/reports/generate": {"tax_year", "period_start", "period_end", "country"},
    "GET /api/reports/generate": {"tax_year", "period_start", "period_end", "country"},
    # Shares sum to 10000, each recipient once and an active host or artist; a fixed fee
    # needs its currency.
    "POST /api/split-rules": {"recipients", "recipients.*", "fixed_fee_currency"},
    "PUT /api/split-rules/{rule_id}": {"recipients", "recipients.*", "fixed_fee_currency"},
}

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    negative_data_rejection,
    positive_data_acceptance,
]


def served_schema() -> Any:
    """The schema /api/schema/ serves, built by drf-spectacular as the view builds it (no
    request, so no database at collection time), and the app to send the cases to."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    from treasury.wsgi import application

    raw = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(public=True)))
    config = schemathesis.config.SchemathesisConfig.from_dict(
        {
            "checks": {
                # 422: an amount over the available balance; 5xx are not_a_server_error's.
                "positive_data_acceptance": {
                    "expected-statuses": ["2xx", "401", "403", "404", "409", "422"]
                }
            }
        }
    )
    loaded = schemathesis.openapi.from_dict(raw, config=config)
    loaded.app = application
    return loaded


schema = served_schema()
# Stripe calls go to the local stand-in, as in tests/stripe.
stripe_standin = stripe_fixtures.stripe_standin
stripe_settings = stripe_fixtures.stripe_settings


@pytest.fixture(autouse=True)
def requests_keep_the_test_transaction(db: None) -> Iterator[None]:
    """Like Django's test client: a request must not close the connection (and with it the
    test's transaction) when it finishes."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def some_rows(host: Any) -> None:
    """A sale and a split rule of the host's, so that lists answer rows and not only [] (the
    response schema is checked against something)."""
    post_transaction(
        idempotency_key="fuzz:sale",
        event_source="sale",
        reference_id="ch_fuzz",
        entries=[
            debit(platform_code("stripe_balance", "USD"), 1000, "USD"),
            credit(user_code(host.pk, "payable", "USD"), 900, "USD"),
            credit(platform_code("fee_revenue", "USD"), 100, "USD"),
        ],
    )
    SplitRuleFactory(owner=host)


def bearer(user: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token_pair(user)['access']}"}


# The health check answers 503 by design when a check fails (no job cluster runs here); its
# body adds the status and the checks beside the error.
HEALTH = "/api/admin/health"


def assert_error_shape(body: Any) -> None:
    assert isinstance(body, dict) and "error" in body, body
    error = body["error"]
    assert isinstance(error, dict) and {"code", "message", "fields"} <= set(error), body
    assert isinstance(error["code"], str) and error["code"], body
    assert isinstance(error["message"], str) and error["message"], body
    assert isinstance(error["fields"], dict), body


def is_business_rule(case: Any, response: Any) -> bool:
    if response.status_code != 400:
        return False
    fields = response.json()["error"]["fields"]
    allowed = BUSINESS_RULES.get(f"{case.method} {case.path.rstrip('/')}", set())
    return bool(fields) and all(any(fnmatch(field, rule) for rule in allowed) for field in fields)


def check(case: Any, headers: dict[str, str]) -> None:
    response = case.call(headers=headers)
    where = f"{case.method} {case.formatted_path}"
    status = response.status_code
    health = case.path.rstrip("/") == HEALTH
    if status >= 400:
        body = response.json()
        assert_error_shape(body)
        if not health:
            assert set(body) == {"error"}, body
    # Health's 503 is by design (see above), and documented.
    excluded = [not_a_server_error, positive_data_acceptance] if health else []
    if is_business_rule(case, response):
        excluded.append(positive_data_acceptance)
    checks = [c for c in CHECKS if c not in excluded]
    if not health:
        assert status < 500, f"{where}: {status} {response.text[:500]}"
    case.validate_response(response, headers=headers, checks=checks)


FEW_EXAMPLES = settings(
    max_examples=4,
    deadline=None,
    derandomize=True,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)


@schema.parametrize()
@FEW_EXAMPLES
def test_as_an_admin_the_server_does_what_the_schema_says(
    case: Any, admin_user: Any, some_rows: None, stripe_settings: Any
) -> None:
    check(case, bearer(admin_user))


@schema.parametrize()
@FEW_EXAMPLES
def test_as_a_host_the_server_does_what_the_schema_says(
    case: Any, host: Any, some_rows: None, stripe_settings: Any
) -> None:
    check(case, bearer(host))
