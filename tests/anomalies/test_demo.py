"""`make demo`'s suspicious patterns: a duplicate charge and a refund spike, planted once
through Stripe, and found by the detectors for the admin's review queue."""

from __future__ import annotations

from anomalies.demo import (
    DUPLICATE_BUYER,
    DUPLICATE_CENTS,
    DUPLICATE_HOST,
    REFUNDING_HOST,
    SPIKE_KEY_PREFIX,
    seed_demo_anomalies,
)
from anomalies.models import Anomaly
from disputes.models import Refund, RefundStatus
from tests.disputes.conftest import (  # noqa: F401 - fixtures
    deliver,
    sell,
    stripe_api,
    stripe_settings,
    stripe_standin,
)
from tests.factories import AdminFactory, HostFactory, UserFactory
from treasury.rls import system_context

from .conftest import DB

pytestmark = DB


def open_anomalies_of(*users) -> set[tuple[str, str]]:
    with system_context():
        return set(
            Anomaly.objects.filter(
                user_id__in=[u.pk for u in users], resolved_at__isnull=True
            ).values_list("detector", "user_id")
        )


def test_the_demo_plants_a_duplicate_charge_and_a_refund_spike_once(
    stripe_settings,  # noqa: F811
    stripe_api,  # noqa: F811
    django_capture_on_commit_callbacks,
):
    AdminFactory()
    assert DUPLICATE_HOST == REFUNDING_HOST  # one suspicious host; the other's payouts go out
    basement = HostFactory(email=REFUNDING_HOST)
    buyer = UserFactory(email=DUPLICATE_BUYER)
    for cents in (1500, 2200, 3500):
        sell(stripe_settings, amount_cents=cents, host=basement, buyer=buyer)
    said: list[str] = []

    with django_capture_on_commit_callbacks(execute=True):
        seed_demo_anomalies(write=said.append, timeout_seconds=0)
    # The web server would get the duplicate sales' webhooks: deliver them.
    for event in stripe_api.v1.events.list(params={"limit": 100}).data:
        if event.type == "charge.succeeded":
            deliver(event.to_dict())
    with django_capture_on_commit_callbacks(execute=True):
        seed_demo_anomalies(write=said.append, timeout_seconds=0)

    with system_context():
        spike = list(Refund.objects.filter(idempotency_key__startswith=SPIKE_KEY_PREFIX))
        duplicates = basement.stripe_charges_sold.filter(amount_cents=DUPLICATE_CENTS).count()
    assert sorted((r.amount_cents, r.status) for r in spike) == [
        (1500, RefundStatus.SUCCEEDED),
        (2200, RefundStatus.SUCCEEDED),
        (3500, RefundStatus.SUCCEEDED),
    ]
    assert duplicates == 2
    assert open_anomalies_of(basement) == {
        ("duplicate_charge", basement.pk),
        ("refund_ratio_spike", basement.pk),
    }
    assert said[-1].startswith("Anomalies demo: ")

    # Once planted, a rerun plants nothing and records nothing twice.
    with system_context():
        anomalies_before = Anomaly.objects.count()
    seed_demo_anomalies(write=said.append, timeout_seconds=0)
    with system_context():
        assert Refund.objects.filter(idempotency_key__startswith=SPIKE_KEY_PREFIX).count() == 3
        assert basement.stripe_charges_sold.count() == 3 + 2
        assert Anomaly.objects.count() == anomalies_before
