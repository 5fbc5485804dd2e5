"""POST /api/admin/override: every action goes through its owning service and leaves exactly
one audit row (actor, before, after, the reason); bad requests change nothing."""

from __future__ import annotations

from typing import Any

import pytest

from disputes.models import DisputeNote, Refund
from ledger.chart import platform_code
from ledger.models import LedgerTransaction
from ledger.selectors import account_balance
from tests.factories import HostFactory
from treasury.rls import system_context

from .conftest import (
    DB,
    Market,
    assign_host,
    audit_count,
    audit_row,
    processing,
    reload,
)

pytestmark = DB


def adjustment(amount_cents: int = 125) -> dict[str, Any]:
    return {
        "entries": [
            {
                "account": platform_code("adjustments", "USD"),
                "side": "debit",
                "amount_cents": amount_cents,
                "currency": "USD",
            },
            {
                "account": platform_code("stripe_balance", "USD"),
                "side": "credit",
                "amount_cents": amount_cents,
                "currency": "USD",
            },
        ]
    }


def body_for(action: str, market: Market) -> dict[str, Any]:
    target: dict[str, Any] = {}
    params: dict[str, Any] = {}
    if action == "ledger.adjust":
        params = adjustment()
    elif action == "payout.hold":
        target = {"payout_id": market.payout.pk}
    elif action == "split_rule.archive":
        target = {"split_rule_id": market.rule.pk}
    elif action == "dispute.note":
        target = {"dispute_id": market.dispute.stripe_dispute_id}
        params = {"body": "Evidence sent to the bank."}
    elif action == "refund.create":
        target = {"charge_id": market.charge_id}
        params = {"amount_cents": 1_000, "refund_reason": "duplicate"}
    elif action == "anomaly.resolve":
        target = {"anomaly_id": market.anomaly.pk}
    elif action == "webhook.retry":
        target = {"event_id": market.failed_event_id}
    return {
        "action": action,
        "reason": f"ticket OPS-1 ({action})",
        "target": target,
        "params": params,
    }


def assert_error(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.content
    body = response.json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    return body["error"]


ACTIONS = [
    "ledger.adjust",
    "payout.hold",
    "split_rule.archive",
    "dispute.note",
    "refund.create",
    "anomaly.resolve",
    "webhook.retry",
]


@pytest.mark.parametrize("action", ACTIONS)
def test_each_override_writes_exactly_one_audit_row_with_before_and_after(
    action, market, ops_user, override
):
    rows_before = audit_count()
    response = override(ops_user, body_for(action, market))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["action"], body["replayed"]) == (action, False)
    assert audit_count() == rows_before + 1
    row = audit_row(body["audit_id"])
    assert row.user_id == ops_user.pk
    assert row.before is not None and row.after is not None
    assert row.details["override"] == {"action": action, "reason": f"ticket OPS-1 ({action})"}


def test_the_overrides_change_what_they_say(market, ops_user, override):
    override(ops_user, body_for("payout.hold", market))
    assert reload(market.payout).status == "held"
    release = {
        "action": "payout.release",
        "reason": "KYC ok",
        "target": {"payout_id": market.payout.pk},
    }
    rows_before = audit_count()
    response = override(ops_user, release)
    assert response.status_code == 200, response.content
    assert response.json()["result"]["status"] == "pending"
    assert audit_count() == rows_before + 1
    row = audit_row(response.json()["audit_id"])
    assert (row.action, row.before["status"], row.after["status"]) == (
        "payout.approve",
        "held",
        "pending",
    )

    override(ops_user, body_for("split_rule.archive", market))
    assert reload(market.rule).archived_at is not None
    override(ops_user, body_for("anomaly.resolve", market))
    assert reload(market.anomaly).resolution_note == "ticket OPS-1 (anomaly.resolve)"
    refund = override(ops_user, body_for("refund.create", market)).json()["result"]
    with system_context():
        assert Refund.objects.get(pk=refund["refund_id"]).amount_cents == 1_000
    retried = override(ops_user, body_for("webhook.retry", market)).json()["result"]
    assert (retried["status"], retried["attempts"]) == ("failed", 2)
    assert processing(market.failed_event_id).attempts == 2


def test_a_ledger_adjustment_records_the_balances_and_is_idempotent(market, ops_user, override):
    code = platform_code("adjustments", "USD")
    with system_context():
        start = account_balance(code=code)
    first = override(ops_user, body_for("ledger.adjust", market), key="adj-1")
    assert first.status_code == 200, first.content
    row = audit_row(first.json()["audit_id"])
    assert row.before["balances"][code] == start
    assert row.after["balances"][code] == start + 125

    rows = audit_count()
    again = override(ops_user, body_for("ledger.adjust", market), key="adj-1")
    assert again.status_code == 200, again.content
    assert again.json()["replayed"] is True
    assert again.json()["audit_id"] == first.json()["audit_id"]
    assert audit_count() == rows
    with system_context():
        assert LedgerTransaction.objects.filter(idempotency_key="override:adj-1").count() == 1
        assert account_balance(code=code) == start + 125

    other = body_for("ledger.adjust", market)
    other["params"] = adjustment(999)
    assert_error(override(ops_user, other, key="adj-1"), 409, "idempotency_conflict")
    assert audit_count() == rows


def test_non_staff_are_refused_and_nothing_changes(market, override):
    rows = audit_count()
    for user in (market.host, HostFactory()):
        assert_error(override(user, body_for("payout.hold", market)), 403, "permission_denied")
    assert reload(market.payout).status == "pending"
    assert audit_count() == rows


def test_a_staff_group_without_the_action_is_refused(market, support_user, finance_user, override):
    rows = audit_count()
    assert_error(override(support_user, body_for("payout.hold", market)), 403, "permission_denied")
    assert_error(
        override(finance_user, body_for("ledger.adjust", market)), 403, "permission_denied"
    )
    assert audit_count() == rows
    response = override(finance_user, body_for("payout.hold", market))
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"action": "payout.teleport"}, "action"),
        ({"reason": ""}, "reason"),
        ({"reason": None}, "reason"),
        ({"target": {}}, "target.payout_id"),
        ({"target": {"payout_id": "forty-two"}}, "target.payout_id"),
    ],
)
def test_bad_overrides_are_a_400_and_change_nothing(market, ops_user, override, change, field):
    body = {**body_for("payout.hold", market), **change}
    if change.get("reason") is None and "reason" in change:
        del body["reason"]
    rows = audit_count()
    error = assert_error(override(ops_user, body), 400, "invalid")
    assert field in error["fields"]
    assert audit_count() == rows
    assert reload(market.payout).status == "pending"


def test_a_bad_ledger_adjustment_is_a_400(market, ops_user, override):
    body = body_for("ledger.adjust", market)
    body["params"]["entries"][0]["amount_cents"] = 100  # no longer balances
    rows = audit_count()
    assert override(ops_user, body).status_code == 400
    assert audit_count() == rows


def test_an_unknown_target_is_a_404(market, ops_user, override):
    rows = audit_count()
    body = body_for("payout.hold", market)
    body["target"] = {"payout_id": 987_654_321}
    assert_error(override(ops_user, body), 404, "not_found")
    body = body_for("dispute.note", market)
    body["target"] = {"dispute_id": "dp_nope"}
    assert_error(override(ops_user, body), 404, "not_found")
    assert audit_count() == rows


def test_a_support_agent_may_only_touch_assigned_hosts(market, support_user, override):
    rows = audit_count()
    note = body_for("dispute.note", market)
    assert_error(override(support_user, note), 404, "not_found")  # not assigned yet
    assert audit_count() == rows
    with system_context():
        assert not DisputeNote.objects.filter(dispute=market.dispute).exists()

    assign_host(support_user, HostFactory())  # another host: still not this one
    assert_error(override(support_user, note), 404, "not_found")

    assign_host(support_user, market.host)
    response = override(support_user, note)
    assert response.status_code == 200, response.content
    assert audit_count() == rows + 1


def test_a_state_that_forbids_the_action_is_a_409(market, ops_user, override):
    override(ops_user, body_for("anomaly.resolve", market))
    rows = audit_count()
    assert_error(override(ops_user, body_for("anomaly.resolve", market)), 409, "conflict")
    assert audit_count() == rows


def test_the_actions_are_documented_in_the_openapi_schema(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json").content.decode()
    assert "/api/admin/override" in schema
    for action in [*ACTIONS, "payout.release"]:
        assert action in schema
