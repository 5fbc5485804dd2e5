"""One user's erasure touches that user's own fields only: by primary key and known columns,
never by substring. Other users' audit rows, anomalies and stored Stripe events are left
byte for byte; the erased user's own stored events lose their personal fields but stay
replayable; and the audit redaction function refuses callers and targets it is not for."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import DatabaseError, transaction
from django.test import Client
from django.utils import timezone
from djstripe.models import Event, WebhookEventTrigger

from anomalies.models import Anomaly
from tests.disputes.conftest import control, events_about, onboard
from tests.factories import HostFactory, UserFactory
from tests.stripe.conftest import WEBHOOK_SECRET
from tests.stripe.conftest import deliver as post_webhook
from treasury.models import AuditLog, User
from treasury.rls import system_context, user_context
from treasury.services import record_audit, snapshot
from treasury.stripe import handlers
from treasury.stripe.models import StripeCharge, StripeEventProcessing
from treasury.stripe.services import retry_event

pytestmark = pytest.mark.django_db(databases=["default", "owner"])

LEAVER_EMAIL = "leaver@example.test"
LEAVER_NAME = "succeeded"  # a word every charge.succeeded event contains


def failing_charge_succeeded(stripe_settings: Any, stripe_api: Any, *, host: User, buyer: User):
    """A buyer's charge whose charge.succeeded reached the webhook and failed (a handler
    error), so that it is stored, with its webhook body, waiting for a retry."""
    paid = control(
        stripe_settings,
        "/_standin/charges",
        {
            "amount": 4_200,
            "currency": "usd",
            "receipt_email": buyer.email,
            "description": "Ticket: the show that succeeded",
            "metadata": {"host_id": str(host.pk), "buyer_id": str(buyer.pk)},
        },
    )
    charge_id = paid["latest_charge"]["id"]
    (event,) = [e for e in events_about(stripe_api, charge_id) if e["type"] == "charge.succeeded"]
    return charge_id, event


def stored(event_id: str) -> dict[str, Any]:
    with system_context():
        event = Event.objects.get(id=event_id)
        trigger = WebhookEventTrigger.objects.get(event_id=event_id)
        return {
            "type": event.type,
            "data": event.data,
            "stripe_data": event.stripe_data,
            "body": trigger.body,
        }


def audit_rows_not_about(user: User) -> dict[int, tuple[Any, ...]]:
    with system_context():
        return {
            row.pk: (row.user_id, row.action, row.target_id, row.before, row.after, row.details)
            for row in AuditLog.objects.exclude(user_id=user.pk).exclude(target_id=str(user.pk))
        }


def test_an_erasure_leaves_other_users_history_and_keeps_stored_events_replayable(
    stripe_settings, stripe_api, settings, client_for, monkeypatch
):
    settings.STRIPE_WEBHOOK_SECRET = WEBHOOK_SECRET
    host = HostFactory(display_name="Host of the succeeded show")
    onboard(stripe_settings, host)
    leaver = UserFactory(email=LEAVER_EMAIL, display_name=LEAVER_NAME)
    other = UserFactory(email="other.buyer@example.test", display_name="Other Buyer")
    with system_context():
        # The other user's history, mentioning the word everywhere.
        record_audit(
            actor=None,
            action="test.payment",
            target=other,
            after=snapshot(other),
            details={"status": "succeeded", "note": "charge succeeded"},
        )
        record_audit(actor=host, action="test.note", details={"name": "succeeded"})
        anomaly = Anomaly.objects.create(
            detector="test",
            fingerprint=f"t:{host.pk}",
            severity="low",
            subject_type="user",
            subject_id=str(host.pk),
            user=host,
            description="a charge succeeded twice",
            features={"outcome": "succeeded"},
            observed_at=timezone.now(),
        )
        # The leaver's own: their snapshot, and a row of theirs about nobody in particular.
        record_audit(actor=None, action="test.profile", target=leaver, after=snapshot(leaver))
        record_audit(actor=leaver, action="test.own", details={"status": "succeeded"})

    others_charge, others_event = failing_charge_succeeded(
        stripe_settings, stripe_api, host=host, buyer=other
    )
    leavers_charge, leavers_event = failing_charge_succeeded(
        stripe_settings, stripe_api, host=host, buyer=leaver
    )

    def handler_down(event: Any) -> str:
        raise RuntimeError("the ledger was down")

    with monkeypatch.context() as patch:
        patch.setitem(handlers._HANDLERS, "charge.succeeded", handler_down)
        for event in (others_event, leavers_event):
            response = post_webhook(Client(), event)
            assert response.status_code == 200, response.content
            assert response.json()["status"] == "failed"

    untouched = audit_rows_not_about(leaver)
    others_stored = stored(others_event["id"])

    response = client_for(leaver).delete("/api/auth/me")
    assert response.status_code == 204, response.content

    # Nobody else's history changed: audit rows, anomalies, stored events and bodies.
    after = audit_rows_not_about(leaver)
    assert {pk: after[pk] for pk in untouched} == untouched
    with system_context():
        anomaly = Anomaly.objects.get(pk=anomaly.pk)
    assert (anomaly.description, anomaly.features) == (
        "a charge succeeded twice",
        {"outcome": "succeeded"},
    )
    assert stored(others_event["id"]) == others_stored

    # The leaver's own: personal fields gone, who/what/when and the type and ids kept.
    with system_context():
        profile = AuditLog.objects.get(action="test.profile", target_id=str(leaver.pk))
        own = AuditLog.objects.get(action="test.own", user_id=leaver.pk)
    assert profile.after["email"] == profile.after["display_name"] == "[redacted]"
    assert profile.after["role"] == "buyer" and profile.after["id"] == str(leaver.pk)
    assert own.details == {"status": "succeeded"}
    leavers_stored = stored(leavers_event["id"])
    assert leavers_stored["type"] == "charge.succeeded"
    assert LEAVER_EMAIL not in json.dumps(leavers_stored)
    charge = leavers_stored["stripe_data"]["data"]["object"]
    assert (charge["id"], charge["amount"], charge["metadata"]) == (
        leavers_charge,
        4_200,
        {"host_id": str(host.pk), "buyer_id": str(leaver.pk)},
    )
    assert json.loads(leavers_stored["body"])["type"] == "charge.succeeded"

    # Both failed events, retried from the stored copies, still book their sale.
    for event, charge_id, buyer in (
        (others_event, others_charge, other),
        (leavers_event, leavers_charge, leaver),
    ):
        with system_context():
            processing = StripeEventProcessing.objects.get(stripe_event_id=event["id"])
        result = retry_event(processing=processing, actor=None)
        assert (result.status, result.event_type) == ("processed", "charge.succeeded")
        with system_context():
            booked = StripeCharge.objects.get(stripe_charge_id=charge_id)
        assert (booked.amount_cents, booked.buyer_id) == (4_200, buyer.pk)


def test_free_text_is_redacted_only_in_the_users_own_rows(client_for):
    leaver = UserFactory(email=LEAVER_EMAIL, display_name="Jane Leaver")
    other = HostFactory()
    with system_context():
        own, others = (
            Anomaly.objects.create(
                detector="test",
                fingerprint=f"t:{user.pk}",
                severity="low",
                subject_type="user",
                subject_id=str(user.pk),
                user=user,
                description=f"payouts to {LEAVER_EMAIL} by Jane Leaver",
                features={},
                observed_at=timezone.now(),
            )
            for user in (leaver, other)
        )
    assert client_for(leaver).delete("/api/auth/me").status_code == 204
    with system_context():
        assert Anomaly.objects.get(pk=own.pk).description == "payouts to [redacted] by [redacted]"
        assert (
            Anomaly.objects.get(pk=others.pk).description
            == f"payouts to {LEAVER_EMAIL} by Jane Leaver"
        )


# --- who may call the redaction function ---


def redact(raw_sql: Any, user: User) -> int:
    with transaction.atomic():
        return raw_sql("SELECT privacy_redact_audit(%s)", [str(user.pk)])[0][0]


def profile_row(user: User) -> AuditLog:
    with system_context():
        return record_audit(actor=None, action="test.profile", target=user, after=snapshot(user))


def test_the_runtime_role_cannot_redact_an_active_users_audit_rows(raw_sql):
    user = UserFactory(email=LEAVER_EMAIL)
    row = profile_row(user)
    with pytest.raises(DatabaseError, match="deactivated"), system_context():
        redact(raw_sql, user)  # even as the system: the user is active
    with pytest.raises(DatabaseError, match="system"):
        redact(raw_sql, user)  # no context at all
    with pytest.raises(DatabaseError, match="system"), user_context(user):
        redact(raw_sql, user)  # the user themself
    with system_context():
        assert AuditLog.objects.get(pk=row.pk).after["email"] == LEAVER_EMAIL
        assert not AuditLog.objects.filter(action="privacy.audit_redact").exists()


def test_only_the_system_redacts_and_only_a_deactivated_user(raw_sql):
    user = UserFactory(email=LEAVER_EMAIL)
    row = profile_row(user)
    with system_context():
        User.objects.filter(pk=user.pk).update(is_active=False)
    with pytest.raises(DatabaseError, match="system"), user_context(user):
        redact(raw_sql, user)
    with pytest.raises(DatabaseError, match="system"), transaction.atomic():
        raw_sql("SELECT set_config('app.role', 'system', true)")  # claimed, not proven
        redact(raw_sql, user)
    with pytest.raises(DatabaseError, match="no user"), system_context():
        redact(raw_sql, User(pk="00000000-0000-0000-0000-000000000000"))
    with system_context():
        assert redact(raw_sql, user) == 1
        assert AuditLog.objects.get(pk=row.pk).after["email"] == "[redacted]"


def test_the_redaction_flag_does_not_open_audit_rows_to_the_runtime_role(raw_sql):
    """`treasury.audit_redaction` is a setting any connection may set: it must not be what
    lets an UPDATE through (only the owner, inside the function, may rewrite a row)."""
    user = UserFactory(email=LEAVER_EMAIL)
    row = profile_row(user)
    with system_context():
        User.objects.filter(pk=user.pk).update(is_active=False)
        for statement in (
            "UPDATE audit_logs SET after = '{}'::jsonb WHERE id = %s",
            "UPDATE audit_logs SET details = '{\"x\": 1}'::jsonb WHERE id = %s",
        ):
            with pytest.raises(DatabaseError), transaction.atomic():
                raw_sql("SELECT set_config('treasury.audit_redaction', 'on', true)")
                raw_sql(statement, [row.pk])
        assert AuditLog.objects.get(pk=row.pk).after["email"] == LEAVER_EMAIL
    # The trigger refuses it above; the policy does too, on its own (defence in depth).
    ((check,),) = raw_sql(
        "SELECT with_check FROM pg_policies"
        " WHERE tablename = 'audit_logs' AND policyname = 'audit_logs_redact'"
    )
    assert "CURRENT_USER" in check.upper() and "relowner" in check


# --- which parts of a stored Stripe payload are the user's ---


def test_a_payload_loses_only_the_users_own_personal_fields():
    from privacy.services import Footprint, pseudonymise_stripe_payload

    uid = "11111111-1111-1111-1111-111111111111"
    fp = Footprint(
        user_id=uid,
        email=LEAVER_EMAIL,
        display_name=LEAVER_NAME,
        account_ids=frozenset({"acct_theirs"}),
        object_ids=frozenset(),
    )
    someone = {"name": "succeeded", "email": "someone@example.test", "phone": "+1 555"}

    def event(obj: dict[str, Any]) -> dict[str, Any]:
        return {"id": "evt_1", "type": "charge.succeeded", "data": {"object": obj}}

    theirs = {
        "id": "ch_1",
        "amount": 500,
        "metadata": {"buyer_id": uid, "host_id": "someone-else"},
        "billing_details": {"name": "Jane", "email": LEAVER_EMAIL},
        "receipt_email": LEAVER_EMAIL.upper(),
        "description": "succeeded",
    }
    assert pseudonymise_stripe_payload(event(theirs), fp) == event(
        {**theirs, "billing_details": None, "receipt_email": None}
    )
    sold = {"id": "ch_2", "metadata": {"host_id": uid}, "description": "Sale by Jane", **someone}
    assert pseudonymise_stripe_payload(event(sold), fp) == event({**sold, "description": None})
    account = {
        "id": "acct_theirs",
        "object": "account",
        "email": "old.address@example.test",
        "individual": {"first_name": "Jane"},
        "external_accounts": {
            "data": [
                {"object": "bank_account", "account": "acct_theirs", "account_holder_name": "J"}
            ]
        },
    }
    assert pseudonymise_stripe_payload(event(account), fp) == event(
        {
            **account,
            "email": None,
            "individual": None,
            "external_accounts": {
                "data": [
                    {
                        "object": "bank_account",
                        "account": "acct_theirs",
                        "account_holder_name": None,
                    }
                ]
            },
        }
    )
    # Someone else's object: untouched, even where it says "succeeded" or names the account.
    others = {"id": "cus_2", "metadata": {"buyer_id": "x"}, "account": "acct_theirs", **someone}
    assert pseudonymise_stripe_payload(event(others), fp) == event(others)
    # Their email anywhere else becomes the pseudonym; no other text changes.
    note = {"id": "ch_3", "metadata": {"contact": LEAVER_EMAIL, "note": f"by {LEAVER_EMAIL}"}}
    assert pseudonymise_stripe_payload(event(note), fp) == event(
        {
            "id": "ch_3",
            "metadata": {"contact": f"deleted-{uid}@users.invalid", "note": f"by {LEAVER_EMAIL}"},
        }
    )
