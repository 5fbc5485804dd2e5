"""Payouts' risk score reads the recipient's open anomalies (payouts/risk.py's hook)."""

from __future__ import annotations

from django.utils import timezone

from anomalies.selectors import open_anomaly_count
from anomalies.services import resolve_anomaly
from payouts.risk import PayoutRequest, open_anomalies, open_anomalies_hook
from tests.anomalies.conftest import DB

pytestmark = DB


def test_open_anomalies_of_the_recipient_raise_the_payout_risk(
    host, artist, admin_user, make_anomaly
):
    first = make_anomaly(user=host)
    make_anomaly(user=host)
    make_anomaly(user=artist)
    request = PayoutRequest(
        user=host, amount_cents=1000, currency="USD", method="standard", at=timezone.now()
    )

    assert open_anomaly_count(user=host) == 2
    assert open_anomalies_hook(host) == 2
    signal = open_anomalies(request)
    assert signal is not None and signal.name == "open_anomalies"

    resolve_anomaly(anomaly_id=first.pk, actor=admin_user, note="explained")
    assert open_anomalies_hook(host) == 1


def test_a_recipient_without_open_anomalies_adds_no_risk(host):
    request = PayoutRequest(
        user=host, amount_cents=1000, currency="USD", method="standard", at=timezone.now()
    )
    assert open_anomalies(request) is None
