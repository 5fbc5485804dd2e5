"""Fixtures for the override console: staff users per group, and a small marketplace (an
onboarded host with a booked charge, a pending payout, a dispute, an anomaly, a failed
Stripe event) built through the real services against the Stripe stand-in."""

from __future__ import annotations

import copy
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.utils import timezone
from guardian.shortcuts import assign_perm

from anomalies.models import Anomaly
from disputes.models import Dispute
from payouts.models import Payout
from payouts.services import initiate_payout
from splits.models import SplitRule
from tests.disputes.conftest import (  # noqa: F401  (fixtures)
    control,
    deliver,
    dispute_of,
    events_about,
    onboard,
    rule,
    sell,
    stripe_api,
    stripe_settings,
    stripe_standin,
)
from tests.factories import HostFactory, UserFactory
from treasury.models import AuditLog, Role, User
from treasury.rls import system_context
from treasury.stripe.models import StripeEventProcessing

DB = pytest.mark.django_db(databases=["default", "owner"])


def staff(group: str, **fields: Any) -> User:
    """A staff user: role admin (the RLS context that sees every row), in one staff group."""
    user = UserFactory(role=Role.ADMIN, is_staff=True, **fields)
    with system_context():
        user.groups.add(Group.objects.get(name=group))
    return user


@pytest.fixture
def ops_user(db: None) -> User:
    return staff("ops")


@pytest.fixture
def support_user(db: None) -> User:
    return staff("support")


@pytest.fixture
def finance_user(db: None) -> User:
    return staff("finance")


def assign_host(agent: User, host: User) -> None:
    """Limit a support agent to `host` (django-guardian object permission)."""
    with system_context():
        assign_perm("treasury.view_user", agent, host)


def audit_count() -> int:
    with system_context():
        return AuditLog.objects.count()


def audit_row(pk: int) -> AuditLog:
    with system_context():
        return AuditLog.objects.get(pk=pk)


@dataclass
class Market:
    host: User
    charge_id: str
    disputed_charge_id: str
    dispute: Dispute
    payout: Payout
    rule: SplitRule
    anomaly: Anomaly
    failed_event_id: str


def make_market(standin: Any, api: Any) -> Market:
    host = HostFactory()
    onboard(standin, host)
    split = rule(owner=host, recipients=[(host, 10_000)])
    charge_id = sell(standin, amount_cents=10_000, host=host)
    disputed = sell(standin, amount_cents=5_000, host=host)
    control(standin, f"/_standin/charges/{disputed}/dispute", {})
    for event in events_about(api, disputed):
        deliver(event)
    with system_context():
        payout = initiate_payout(
            user=host,
            amount_cents=2_000,
            currency="USD",
            method="standard",
            idempotency_key=f"p-{uuid.uuid4().hex}",
        )
        anomaly = Anomaly.objects.create(
            detector="test",
            fingerprint=f"test:user:{host.pk}",
            severity="high",
            subject_type="user",
            subject_id=str(host.pk),
            user=host,
            description="looks odd",
            observed_at=timezone.now(),
        )
    # A charge.succeeded event about a charge Stripe does not know: its handler fails.
    template = next(e for e in events_about(api, charge_id) if e["type"] == "charge.succeeded")
    event = copy.deepcopy(template)
    event["id"] = f"evt_missing_{uuid.uuid4().hex[:12]}"
    event["data"]["object"]["id"] = f"ch_missing_{uuid.uuid4().hex[:12]}"
    failed = deliver(event)
    assert failed.status == "failed"
    return Market(
        host=host,
        charge_id=charge_id,
        disputed_charge_id=disputed,
        dispute=dispute_of(disputed),
        payout=payout,
        rule=split,
        anomaly=anomaly,
        failed_event_id=failed.stripe_event_id,
    )


@pytest.fixture
def market(stripe_settings: Any, stripe_api: Any, settings: Any) -> Market:  # noqa: F811
    settings.PAYOUTS_RISK_HOLD_THRESHOLD_BPS = 10_001  # the review queue has its own tests
    return make_market(stripe_settings, stripe_api)


@pytest.fixture
def override(client_for: Callable[[User], Any]) -> Callable[..., Any]:
    def post(user: User, body: dict[str, Any], key: str | None = None) -> Any:
        headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
        return client_for(user).post("/api/admin/override", body, format="json", **headers)

    return post


def reload(obj: Any) -> Any:
    with system_context():
        return type(obj).objects.get(pk=obj.pk)


def processing(event_id: str) -> StripeEventProcessing:
    with system_context():
        return StripeEventProcessing.objects.get(stripe_event_id=event_id)
