"""The refunds and disputes API: who may refund what, and every bad input a clear 4xx in the
error shape with nothing written."""

from __future__ import annotations

import pytest

from disputes.models import RefundStatus
from tests.factories import AdminFactory, ArtistFactory, HostFactory, UserFactory
from treasury.models import AuditLog
from treasury.rls import system_context

from .conftest import DB, control, counts, deliver, events_about, rule, sell

pytestmark = DB


@pytest.fixture
def sale(stripe_settings):
    host, artist, buyer = HostFactory(), ArtistFactory(), UserFactory()
    split = rule(owner=host, recipients=[(host, 7000), (artist, 3000)])
    charge_id = sell(stripe_settings, amount_cents=10000, split_rule=split, buyer=buyer)
    return host, buyer, charge_id


def post_refund(client, capture, key: str | None = None, **body):
    headers = {"Idempotency-Key": key} if key else {}
    with capture(execute=True):
        return client.post("/api/refunds", body, format="json", headers=headers)


def test_a_buyer_refunds_part_of_their_charge_and_lists_it(
    sale, client_for, django_capture_on_commit_callbacks
):
    host, buyer, charge_id = sale
    client = client_for(buyer)

    response = post_refund(
        client, django_capture_on_commit_callbacks, "k1", charge_id=charge_id, amount_cents=2500
    )

    assert response.status_code == 201, response.json()
    body = response.json()
    # Answered before Stripe was called (after commit): pending, then Stripe settles it.
    assert (body["status"], body["amount_cents"], body["currency"]) == ("pending", 2500, "USD")
    assert (body["original_charge_id"], body["reason"]) == (charge_id, "requested_by_customer")
    listed = client.get("/api/refunds").json()
    assert [r["id"] for r in listed["results"]] == [body["id"]]
    assert listed["results"][0]["status"] == RefundStatus.SUCCEEDED
    assert listed["results"][0]["stripe_refund_id"].startswith("re_")
    one = client.get(f"/api/refunds/{body['id']}")
    assert one.status_code == 200 and one.json()["split"]["platform_fee_cents"] == 250
    # The host sees the refund of their sale; another buyer sees nothing.
    assert client_for(host).get("/api/refunds").json()["count"] == 1
    assert client_for(UserFactory()).get("/api/refunds").json()["count"] == 0
    assert client_for(UserFactory()).get(f"/api/refunds/{body['id']}").status_code == 404


def test_the_same_idempotency_key_returns_the_same_refund_and_another_body_is_a_409(
    sale, client_for, django_capture_on_commit_callbacks
):
    _host, buyer, charge_id = sale
    client = client_for(buyer)
    capture = django_capture_on_commit_callbacks
    first = post_refund(client, capture, "same", charge_id=charge_id, amount_cents=1000)
    again = post_refund(client, capture, "same", charge_id=charge_id, amount_cents=1000)
    before = counts()

    other = post_refund(client, capture, "same", charge_id=charge_id, amount_cents=2000)

    assert (first.status_code, again.status_code) == (201, 200)
    assert first.json()["id"] == again.json()["id"]
    assert other.status_code == 409
    assert other.json()["error"]["code"] == "idempotency_conflict"
    assert counts() == before


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({"amount_cents": 10001}, 422, "exceeds_refundable", "amount_cents"),
        ({"amount_cents": 500, "currency": "EUR"}, 400, "invalid", "currency"),
        ({"amount_cents": 500, "currency": "XYZ"}, 400, "invalid", "currency"),
        ({"amount_cents": 5.5}, 400, "invalid", "amount_cents"),
        ({"amount_cents": "500"}, 400, "invalid", "amount_cents"),
        ({"amount_cents": 0}, 400, "invalid", "amount_cents"),
        ({"amount_cents": 500, "reason": "changed_my_mind"}, 400, "invalid", "reason"),
        ({"charge_id": "ch_nobody_knows"}, 404, "not_found", "charge_id"),
    ],
)
def test_bad_refund_requests_are_refused_and_write_nothing(
    sale, client_for, django_capture_on_commit_callbacks, body, status, code, field
):
    _host, buyer, charge_id = sale
    before = counts()

    response = post_refund(
        client_for(buyer), django_capture_on_commit_callbacks, **{"charge_id": charge_id, **body}
    )

    assert response.status_code == status, response.json()
    error = response.json()["error"]
    assert error["code"] == code and field in error["fields"] and error["message"]
    assert counts() == before


def test_a_refund_above_what_is_left_after_partial_refunds_is_refused(
    sale, client_for, django_capture_on_commit_callbacks
):
    _host, buyer, charge_id = sale
    client, capture = client_for(buyer), django_capture_on_commit_callbacks
    assert post_refund(client, capture, charge_id=charge_id, amount_cents=6000).status_code == 201
    before = counts()

    too_much = post_refund(client, capture, charge_id=charge_id, amount_cents=4001)

    assert too_much.status_code == 422
    assert too_much.json()["error"]["fields"] == {"amount_cents": ["at most 4000"]}
    assert counts() == before
    assert post_refund(client, capture, charge_id=charge_id).json()["amount_cents"] == 4000
    done = post_refund(client, capture, charge_id=charge_id, amount_cents=1)
    assert done.status_code == 422 and "already refunded in full" in done.json()["error"]["message"]


def test_someone_elses_charge_is_not_found_even_for_the_seller(
    sale, client_for, django_capture_on_commit_callbacks
):
    host, _buyer, charge_id = sale
    before = counts()
    for stranger in (UserFactory(), host):
        response = post_refund(
            client_for(stranger), django_capture_on_commit_callbacks, charge_id=charge_id
        )
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "not_found"
    assert counts() == before


def test_after_the_window_only_an_admin_refunds(
    sale, client_for, settings, django_capture_on_commit_callbacks
):
    _host, buyer, charge_id = sale
    settings.REFUNDS_BUYER_WINDOW_DAYS = 0
    before = counts()

    late = post_refund(client_for(buyer), django_capture_on_commit_callbacks, charge_id=charge_id)

    assert late.status_code == 403
    assert late.json()["error"]["code"] == "refund_window_closed"
    assert counts() == before
    by_admin = post_refund(
        client_for(AdminFactory()), django_capture_on_commit_callbacks, charge_id=charge_id
    )
    assert by_admin.status_code == 201 and by_admin.json()["amount_cents"] == 10000


@pytest.mark.parametrize(("policy", "amount"), [("full", 5000), ("none", None)])
def test_the_buyer_policy_limits_what_buyers_refund(
    sale, client_for, settings, django_capture_on_commit_callbacks, policy, amount
):
    _host, buyer, charge_id = sale
    settings.REFUNDS_BUYER_POLICY = policy
    body = {"charge_id": charge_id} | ({"amount_cents": amount} if amount else {})

    response = post_refund(client_for(buyer), django_capture_on_commit_callbacks, **body)

    assert response.status_code == 403
    assert response.json()["error"]["code"] == "refund_not_allowed"


def test_an_admin_lists_every_refund_and_filters_by_charge(
    sale, client_for, django_capture_on_commit_callbacks
):
    _host, buyer, charge_id = sale
    post_refund(client_for(buyer), django_capture_on_commit_callbacks, charge_id=charge_id)
    admin = client_for(AdminFactory())

    listed = admin.get("/api/refunds", {"charge_id": charge_id}).json()

    assert listed["count"] == 1 and listed["results"][0]["original_charge_id"] == charge_id
    assert admin.get("/api/refunds", {"status": "sideways"}).status_code == 400


@pytest.fixture
def disputed(sale, stripe_settings, stripe_api):
    host, _buyer, charge_id = sale
    dispute = control(stripe_settings, f"/_standin/charges/{charge_id}/dispute", {})
    for event in events_about(stripe_api, charge_id):
        if event["type"].startswith("charge.dispute"):
            deliver(event)
    return host, dispute["id"]


def test_admins_list_open_disputes_and_others_may_not(disputed, client_for):
    host, dispute_id = disputed

    listed = client_for(AdminFactory()).get("/api/disputes/open")

    assert listed.status_code == 200
    assert dispute_id in [d["stripe_dispute_id"] for d in listed.json()["results"]]
    refused = client_for(host).get("/api/disputes/open")
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "permission_denied"
    own = client_for(host).get("/api/disputes").json()
    assert [d["stripe_dispute_id"] for d in own["results"]] == [dispute_id]
    assert client_for(HostFactory()).get("/api/disputes").json()["count"] == 0


def test_a_resolution_note_is_added_and_audited(disputed, client_for):
    host, dispute_id = disputed
    admin = AdminFactory()

    response = client_for(admin).post(
        "/api/disputes/comment",
        {"dispute_id": dispute_id, "note": "Sent the signed delivery receipt."},
        format="json",
    )

    assert response.status_code == 201, response.json()
    assert response.json()["author_id"] == str(admin.pk)
    with system_context():
        audit = AuditLog.objects.get(action="dispute.note", user=admin)
    assert audit.after["body"] == "Sent the signed delivery receipt."
    shown = client_for(host).get("/api/disputes").json()["results"][0]
    assert [n["body"] for n in shown["notes"]] == ["Sent the signed delivery receipt."]
    # The host of the sale may add one too; a stranger finds no such dispute.
    own = client_for(host).post(
        "/api/disputes/comment", {"dispute_id": dispute_id, "note": "Tickets were scanned."}
    )
    assert own.status_code == 201
    stranger = client_for(HostFactory()).post(
        "/api/disputes/comment", {"dispute_id": dispute_id, "note": "hi"}
    )
    assert stranger.status_code == 404
    blank = client_for(admin).post("/api/disputes/comment", {"dispute_id": dispute_id, "note": ""})
    assert blank.status_code == 400 and "note" in blank.json()["error"]["fields"]
