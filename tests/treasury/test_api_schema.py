"""The OpenAPI schema says what the server accepts (issue 14, defect 10), for the cases that
were reported; tests/faults/test_api_schema_fuzz.py checks the rest, every operation, with
schemathesis's stricter checks."""

from __future__ import annotations

from typing import Any

import pytest

from overrides.services import ACTIONS
from tests.treasury.conftest import resolve

pytestmark = pytest.mark.django_db


def test_an_adjustment_lines_amount_is_an_integer_in_the_schema(openapi):
    line = openapi["components"]["schemas"]["AdjustmentLineRequest"]["properties"]
    assert resolve(openapi, line["amount_cents"]) == [
        {"type": "integer", "format": "int64", "minimum": 1, "maximum": 10**12}
    ]


def test_the_override_discriminator_maps_every_action_to_its_shape(openapi):
    override = openapi["components"]["schemas"]["OverrideRequest"]
    mapping = override["discriminator"]["mapping"]
    assert set(mapping) == set(ACTIONS)
    for action, ref in mapping.items():
        shape = openapi["components"]["schemas"][ref.rsplit("/", 1)[-1]]
        [action_schema] = resolve(openapi, shape["properties"]["action"])
        assert action_schema["enum"] == [action]


def test_every_operation_documents_its_errors(openapi):
    for path, operations in openapi["paths"].items():
        for method, operation in operations.items():
            error = operation["responses"]["4XX"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}, (method, path)


# (who, path, body, the field) with a value of the wrong JSON type
WRONG_TYPES = [
    pytest.param("admin_user", "/api/ledger/entries", {"reason": 5}, "reason", id="text: 5"),
    pytest.param("admin_user", "/api/ledger/entries", {"reason": True}, "reason", id="text: true"),
    pytest.param("host", "/api/split-rules", {"name": 12.5}, "name", id="text: 12.5"),
    pytest.param("admin_user", "/api/disputes/comment", {"note": 7}, "note", id="note: 7"),
    pytest.param("admin_user", "/api/ai/anomalies/resolve", {"note": 7}, "note", id="resolve: 7"),
    pytest.param("host", "/api/refunds", {"charge_id": 42}, "charge_id", id="charge id: 42"),
    pytest.param("host", "/api/reports/generate", {"type": 1099}, "type", id="choice: 1099"),
    pytest.param(
        "host", "/api/reports/generate", {"tax_year": "2024"}, "tax_year", id="int: '2024'"
    ),
    pytest.param(
        "host",
        "/api/split-rules",
        {"recipients": [{"recipient_id": "HOST", "share_bps": "10000"}]},
        "recipients.0.share_bps",
        id="int: '10000'",
    ),
    pytest.param(
        "host", "/api/split-rules", {"is_default": "true"}, "is_default", id="bool: 'true'"
    ),
    pytest.param(
        "admin_user",
        "/api/admin/override",
        {"action": "payout.hold", "reason": "x", "target": {"payout_id": "1"}},
        "target.payout_id",
        id="override int: '1'",
    ),
    pytest.param(
        "host", "/api/payouts/initiate", {"amount_cents": "100"}, "amount_cents", id="amount: '100'"
    ),
    pytest.param(
        "host", "/api/payouts/initiate", {"currency": 840}, "currency", id="currency: 840"
    ),
]


@pytest.mark.parametrize(("who", "path", "body", "field"), WRONG_TYPES)
def test_a_value_of_the_wrong_json_type_is_a_400_naming_the_field(
    request, client_for, host, who, path, body, field
):
    """DRF would have taken 5 for "5", "10000" for 10000 and "true" for true."""
    base: dict[str, Any] = {
        "/api/ledger/entries": {"idempotency_key": "k", "reason": "r", "entries": []},
        "/api/split-rules": {
            "name": "n",
            "recipients": [{"recipient_id": str(host.pk), "share_bps": 10000}],
        },
        "/api/disputes/comment": {"dispute_id": "dp_x", "note": "n"},
        "/api/ai/anomalies/resolve": {"id": 1, "note": "n"},
        "/api/refunds": {"charge_id": "ch_x"},
        "/api/reports/generate": {"type": "1099", "tax_year": 2024},
        "/api/admin/override": {},
        "/api/payouts/initiate": {"amount_cents": 100, "currency": "USD"},
    }[path]
    payload = {**base, **body}
    for recipient in payload.get("recipients", []):
        if recipient["recipient_id"] == "HOST":
            recipient["recipient_id"] = str(host.pk)
    client = client_for(request.getfixturevalue(who))
    response = client.post(path, payload, format="json")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"], response.content


def test_the_api_takes_json_only(client_for, host):
    """A form's values are all text: the schema's types could not hold."""
    response = client_for(host).post(
        "/api/payouts/initiate", {"amount_cents": "100", "currency": "USD"}, format="multipart"
    )
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_media_type"


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=abc", "limit"), ("offset=-1", "offset"), ("limit=5000", "limit"),
     ("currency=USD&currency=EUR", "currency"), ("limit=1&limit=2", "limit")],
)  # fmt: skip
def test_a_bad_or_repeated_query_parameter_is_a_400_naming_it(client_for, host, query, field):
    response = client_for(host).get(f"/api/ledger/entries?{query}")
    assert response.status_code == 400, response.content
    assert field in response.json()["error"]["fields"]
