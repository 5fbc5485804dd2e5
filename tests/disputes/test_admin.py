"""The back office: refunds and disputes listed with filters; refunding a charge and adding a
dispute note go through the audited services."""

from __future__ import annotations

import pytest
from django.test import Client

from disputes.models import DisputeNote, RefundStatus
from tests.factories import DEFAULT_PASSWORD, HostFactory, UserFactory
from treasury.models import AuditLog
from treasury.rls import system_context

from .conftest import DB, control, deliver, dispute_of, events_about, refunds_of, sell

pytestmark = DB


@pytest.fixture
def admin_client(admin_user) -> Client:
    client = Client()
    assert client.login(email=admin_user.email, password=DEFAULT_PASSWORD)
    return client


@pytest.fixture
def charge_id(stripe_settings):
    return sell(stripe_settings, amount_cents=4000, host=HostFactory(), buyer=UserFactory())


def test_an_admin_refunds_part_of_a_charge_from_the_form(
    admin_client, admin_user, charge_id, django_capture_on_commit_callbacks
):
    form = admin_client.get(f"/admin/disputes/refund/new/?charge={charge_id}")
    assert form.status_code == 200 and charge_id in form.content.decode()

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/disputes/refund/new/",
            {
                "charge_id": charge_id,
                "amount_cents": 1500,
                "reason": "duplicate",
                "note": "charged twice",
                "idempotency_key": "admin-form-1",
            },
        )

    assert response.status_code == 302
    [refund] = refunds_of(charge_id)
    assert (refund.amount_cents, refund.status, refund.requested_by_id) == (
        1500,
        RefundStatus.SUCCEEDED,
        admin_user.pk,
    )
    with system_context():
        assert AuditLog.objects.filter(
            action="refund.request", user=admin_user, target_id=str(refund.pk)
        ).exists()
    listed = admin_client.get(
        "/admin/disputes/refund/?status__exact=succeeded&reason__exact=duplicate"
    )
    assert [r.pk for r in listed.context["cl"].result_list] == [refund.pk]
    assert admin_client.get(f"/admin/disputes/refund/{refund.pk}/change/").status_code == 200
    too_much = admin_client.post(
        "/admin/disputes/refund/new/",
        {
            "charge_id": charge_id,
            "amount_cents": 9999,
            "reason": "duplicate",
            "idempotency_key": "admin-form-2",
        },
    )
    assert too_much.status_code == 200 and "left to refund" in too_much.content.decode()


def test_the_refund_action_refunds_what_is_left_of_each_charge(
    admin_client, charge_id, django_capture_on_commit_callbacks
):
    page = admin_client.get("/admin/disputes/chargetorefund/")
    assert page.status_code == 200
    record = next(c for c in page.context["cl"].result_list if c.stripe_charge_id == charge_id)

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(
            "/admin/disputes/chargetorefund/",
            {"action": "refund_in_full", "_selected_action": [record.pk]},
        )

    assert response.status_code == 302
    [refund] = refunds_of(charge_id)
    assert (refund.amount_cents, refund.status) == (4000, RefundStatus.SUCCEEDED)
    page = admin_client.get(f"/admin/disputes/chargetorefund/?q={charge_id}")
    assert "40.00 USD" in page.content.decode()


def test_an_admin_adds_a_dispute_note(
    admin_client, admin_user, charge_id, stripe_settings, stripe_api
):
    control(stripe_settings, f"/_standin/charges/{charge_id}/dispute", {})
    for event in events_about(stripe_api, charge_id):
        deliver(event)
    dispute = dispute_of(charge_id)
    listed = admin_client.get("/admin/disputes/dispute/?status__exact=needs_response")
    assert dispute.pk in [d.pk for d in listed.context["cl"].result_list]

    response = admin_client.post(
        f"/admin/disputes/dispute/{dispute.pk}/note/", {"note": "Evidence uploaded."}
    )

    assert response.status_code == 302
    with system_context():
        note = DisputeNote.objects.get(dispute=dispute)
        assert AuditLog.objects.filter(action="dispute.note", user=admin_user).exists()
    assert (note.body, note.author_id) == ("Evidence uploaded.", admin_user.pk)
    page = admin_client.get(f"/admin/disputes/dispute/{dispute.pk}/change/")
    assert "Evidence uploaded." in page.content.decode()
