"""GET /api/ai/anomalies and POST /api/ai/anomalies/resolve: admins only, filters checked,
resolution audited."""

from __future__ import annotations

import pytest
from django.test import Client

from anomalies.models import Anomaly, Severity
from tests.anomalies.conftest import DB
from tests.factories import DEFAULT_PASSWORD
from treasury.models import AuditLog
from treasury.rls import ContextRole, rls_context, system_context

pytestmark = DB

LIST = "/api/ai/anomalies"
RESOLVE = "/api/ai/anomalies/resolve"


def test_the_queue_lists_most_severe_and_highest_scored_first(client_for, admin_user, make_anomaly):
    low = make_anomaly(severity=Severity.LOW, score=0.99)
    high_weak = make_anomaly(severity=Severity.HIGH, score=0.2)
    high_strong = make_anomaly(severity=Severity.HIGH, score=0.9, detector="payout_velocity")

    body = client_for(admin_user).get(LIST, {"resolved": "false"}).json()

    ids = [row["id"] for row in body["results"]]
    mine = [i for i in ids if i in {low.pk, high_weak.pk, high_strong.pk}]
    assert mine == [high_strong.pk, high_weak.pk, low.pk]
    row = next(r for r in body["results"] if r["id"] == high_strong.pk)
    assert row["features"] == {"amount_cents": 1234, "minutes_apart": 2.0}
    assert row["resolved"] is False


def test_filters_by_severity_detector_and_date(client_for, admin_user, make_anomaly):
    wanted = make_anomaly(severity=Severity.HIGH, detector="payout_velocity")
    make_anomaly(severity=Severity.LOW, detector="payout_velocity")
    client = client_for(admin_user)

    body = client.get(LIST, {"severity": "high", "detector": "payout_velocity"}).json()
    assert wanted.pk in [r["id"] for r in body["results"]]
    assert {r["severity"] for r in body["results"]} == {"high"}
    today = wanted.flagged_at.date().isoformat()
    assert wanted.pk in [r["id"] for r in client.get(LIST, {"date": today}).json()["results"]]
    assert client.get(LIST, {"date": "2001-01-01"}).json()["results"] == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"severity": "critical"}, "severity"),
        ({"detector": "astrology"}, "detector"),
        ({"resolved": "maybe"}, "resolved"),
        ({"date": "yesterday"}, "date"),
    ],
)
def test_unknown_filter_values_are_a_400_naming_the_field(client_for, admin_user, params, field):
    response = client_for(admin_user).get(LIST, params)
    assert response.status_code == 400
    assert field in response.json()["error"]["fields"]


def test_non_admins_may_not_see_or_resolve_anomalies(client_for, host, api_client, make_anomaly):
    anomaly = make_anomaly(user=host)
    assert client_for(host).get(LIST).status_code == 403
    response = client_for(host).post(RESOLVE, {"id": anomaly.pk, "note": "mine"}, format="json")
    assert response.status_code == 403
    assert api_client.get(LIST).status_code == 401


def test_resolving_closes_the_anomaly_and_is_audited(client_for, admin_user, make_anomaly):
    anomaly = make_anomaly()

    response = client_for(admin_user).post(
        RESOLVE, {"id": anomaly.pk, "note": "  buyer confirmed two tickets  "}, format="json"
    )

    assert response.status_code == 200
    assert response.json()["resolved"] is True
    assert response.json()["resolution_note"] == "buyer confirmed two tickets"
    with system_context():
        stored = Anomaly.objects.get(pk=anomaly.pk)
        audit = AuditLog.objects.get(action="anomaly.resolve", target_id=str(anomaly.pk))
    assert stored.resolved_by_id == admin_user.pk and stored.resolved_at is not None
    assert audit.user_id == admin_user.pk
    assert audit.before["resolved_at"] is None and audit.details["note"] == stored.resolution_note


def test_resolve_refuses_unknown_resolved_and_unexplained(client_for, admin_user, make_anomaly):
    client = client_for(admin_user)
    anomaly = make_anomaly()

    unknown = client.post(RESOLVE, {"id": 987654321, "note": "x"}, format="json")
    assert unknown.status_code == 404
    empty = client.post(RESOLVE, {"id": anomaly.pk, "note": "   "}, format="json")
    assert empty.status_code == 400 and "note" in empty.json()["error"]["fields"]
    assert client.post(RESOLVE, {"id": anomaly.pk, "note": "ok"}, format="json").status_code == 200
    again = client.post(RESOLVE, {"id": anomaly.pk, "note": "ok"}, format="json")
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "conflict"


def test_users_cannot_read_the_table_even_with_raw_sql(host, make_anomaly, raw_sql):
    make_anomaly(user=host)

    with rls_context(user_id=host.pk, role=ContextRole.USER):
        assert raw_sql("SELECT count(*) FROM anomalies") == [(0,)]
    with system_context():
        assert raw_sql("SELECT count(*) FROM anomalies")[0][0] >= 1


def test_the_admin_queue_shows_features_and_resolves_with_a_note(admin_user, make_anomaly):
    anomaly = make_anomaly(severity=Severity.HIGH)
    client = Client()
    assert client.login(email=admin_user.email, password=DEFAULT_PASSWORD)

    page = client.get("/admin/anomalies/anomaly/")
    assert page.status_code == 200
    assert b"minutes_apart=2.0" in page.content

    form = {"action": "resolve", "_selected_action": [anomaly.pk]}
    asks = client.post("/admin/anomalies/anomaly/", form)
    assert asks.status_code == 200 and b"Resolve anomalies" in asks.content
    done = client.post("/admin/anomalies/anomaly/", {**form, "note": "checked with the host"})
    assert done.status_code == 302
    with system_context():
        assert Anomaly.objects.get(pk=anomaly.pk).resolution_note == "checked with the host"
        assert AuditLog.objects.filter(action="anomaly.resolve", target_id=str(anomaly.pk)).exists()
