"""One answer for "not yours" (issue 14, defect 10): another user's id in a filter is a 404
naming the field, on every endpoint that takes a user's id, as another user's object is
(README, API conventions). An id that names nobody is the same 404, for admins too.

`GET /api/ledger/balances?userId=<other>` used to answer 200 [] where the analytics answered
404 and the reports 403. The schema walk at the end makes a user id added later to some
endpoint fail here until it is in USER_FILTERS.
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from reporting.models import Report
from tests.treasury.conftest import request_inputs
from treasury.rls import system_context

pytestmark = pytest.mark.django_db

# (method, path, the field holding the user id, the rest of a valid request)
USER_FILTERS = [
    pytest.param("get", "/api/ledger/entries", "userId", {}, id="ledger entries"),
    pytest.param("get", "/api/ledger/balances", "userId", {}, id="ledger balances"),
    pytest.param("get", "/api/reports/analytics", "userId", {}, id="analytics"),
    pytest.param(
        "post", "/api/reports/generate", "user", {"type": "1099", "tax_year": 2024}, id="report"
    ),
    pytest.param(
        "get",
        "/api/reports/generate",
        "user",
        {"type": "1099", "tax_year": 2024},
        id="report (deprecated GET)",
    ),
]
# User ids a request may carry that are not filters over what the caller may see.
NOT_FILTERS = {
    "DemoChargeRequest.buyer_id",  # admins only: whom the demo charge is from
    "DemoChargeRequest.host_id",  # admins only: whom it pays
    "RecipientRequest.recipient_id",  # a split rule pays other hosts and artists by design
}

FILTER = ("method", "path", "field", "rest")


def ask(client: Any, method: str, path: str, field: str, rest: dict, user_id: Any) -> Any:
    return getattr(client, method)(path, {**rest, field: str(user_id)})


def report_count() -> int:
    with system_context():
        return Report.objects.count()


@pytest.mark.parametrize(FILTER, USER_FILTERS)
def test_another_users_id_is_a_404_naming_the_field(
    client_for, host, artist, method, path, field, rest
):
    reports = report_count()
    response = ask(client_for(host), method, path, field, rest, artist.pk)
    assert response.status_code == 404, response.content
    assert response.json() == {
        "error": {
            "code": "not_found",
            "message": f"no user {artist.pk}",
            "fields": {field: ["not found"]},
        }
    }
    assert report_count() == reports  # nothing was queued for it


@pytest.mark.parametrize(FILTER, USER_FILTERS)
@pytest.mark.parametrize("who", ["host", "admin_user"])
def test_an_id_that_names_nobody_is_the_same_404(
    request, client_for, who, method, path, field, rest
):
    nobody = uuid.uuid4()
    response = ask(client_for(request.getfixturevalue(who)), method, path, field, rest, nobody)
    assert response.status_code == 404, response.content
    assert response.json()["error"]["fields"] == {field: ["not found"]}


@pytest.mark.parametrize(FILTER, USER_FILTERS)
def test_ones_own_id_is_fine(client_for, host, method, path, field, rest):
    response = ask(client_for(host), method, path, field, rest, host.pk)
    assert response.status_code in (200, 202), response.content


@pytest.mark.parametrize(FILTER, USER_FILTERS)
def test_an_admin_may_name_any_user(client_for, admin_user, artist, method, path, field, rest):
    response = ask(client_for(admin_user), method, path, field, rest, artist.pk)
    assert response.status_code in (200, 202), response.content


def test_balances_of_another_user_are_a_404_not_an_empty_list(client_for, host, artist):
    """The defect as reported."""
    response = client_for(host).get("/api/ledger/balances", {"userId": str(artist.pk)})
    assert response.status_code == 404
    analytics = client_for(host).get("/api/reports/analytics", {"userId": str(artist.pk)})
    assert analytics.status_code == 404
    assert response.json()["error"]["fields"] == analytics.json()["error"]["fields"]


def test_every_user_id_a_request_may_carry_is_covered(openapi):
    """Every uuid input of the schema is a user filter tested above, or listed as not one."""
    covered = {(p.values[1], p.values[2]) for p in USER_FILTERS}
    uuid_inputs = {
        (where, name)
        for where, name, schema in request_inputs(openapi)
        if schema.get("format") == "uuid"
    }
    assert len(uuid_inputs) >= 8, uuid_inputs  # the walk finds them
    for where, name in uuid_inputs:
        if where in NOT_FILTERS:
            continue
        if where.startswith(("GET ", "POST ")):  # a query parameter
            path = where.split(" ")[1].rstrip("/")
        else:  # a body property: the report request is the one body that filters by user
            assert where == "GenerateReportRequest.user", f"{where}: add it to USER_FILTERS"
            path = "/api/reports/generate"
        assert (path, name) in covered, f"{where}: add it to USER_FILTERS"
