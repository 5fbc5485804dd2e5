"""Schemathesis against /api/schema/: every operation, with an admin's and with a host's
token, answers no 5xx, and every 4xx carries the one error shape of treasury/errors.py.

Requests go through the WSGI application in the test's transaction (rolled back after each
test), generated from the OpenAPI schema the app itself serves; Stripe is the local stand-in.
Examples per operation are few and derandomised: the same run in CI every time, and short.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, Phase, settings

from tests.stripe import conftest as stripe_fixtures
from treasury.api import token_pair


def served_schema() -> Any:
    """The schema /api/schema/ serves, built by drf-spectacular as the view builds it (no
    request, so no database at collection time), and the app to send the cases to."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.renderers import OpenApiJsonRenderer

    from treasury.wsgi import application

    raw = json.loads(OpenApiJsonRenderer().render(SchemaGenerator().get_schema(public=True)))
    loaded = schemathesis.openapi.from_dict(raw)
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


def check(case: Any, headers: dict[str, str]) -> None:
    response = case.call(headers=headers)
    where = f"{case.method} {case.formatted_path}"
    status = response.status_code
    if not (status == 503 and case.path.rstrip("/") == HEALTH):
        assert status < 500, f"{where}: {status} {response.text[:500]}"
    if status >= 400:
        body = response.json()
        assert_error_shape(body)
        if not case.path.startswith(HEALTH):
            assert set(body) == {"error"}, body


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
def test_as_an_admin_no_5xx_and_every_4xx_in_the_error_shape(
    case: Any, admin_user: Any, stripe_settings: Any
) -> None:
    check(case, bearer(admin_user))


@schema.parametrize()
@FEW_EXAMPLES
def test_as_a_host_no_5xx_and_every_4xx_in_the_error_shape(
    case: Any, host: Any, stripe_settings: Any
) -> None:
    check(case, bearer(host))
