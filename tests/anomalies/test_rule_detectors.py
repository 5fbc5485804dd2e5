"""Each rule flags the planted case and leaves the ordinary one alone."""

from __future__ import annotations

from datetime import timedelta

from django.core import mail
from django.utils import timezone

from anomalies.detectors import (
    detect_duplicate_charges,
    detect_ledger_differences,
    detect_negative_balance_growing,
    detect_payout_velocity,
    detect_refund_ratio_spike,
    detect_split_change_before_payout,
    detect_webhook_failures,
)
from anomalies.models import Anomaly, Severity
from anomalies.services import record_findings, resolve_anomaly, run_detectors
from monitoring.models import Alert
from monitoring.services import verify_ledger
from tests.anomalies.conftest import DB, SINCE, UNTIL, flagged
from tests.factories import AdminFactory
from treasury.rls import system_context

pytestmark = DB


def judge(detector, since=SINCE, until=UNTIL):
    with system_context():
        return detector(since=since, until=until)


def test_the_same_buyer_charged_twice_within_minutes_is_a_duplicate(books, make_host, make_buyer):
    host, buyer = make_host(), make_buyer()
    at = SINCE + timedelta(hours=2)
    books.charge(buyer=buyer, host=host, amount_cents=4200, at=at)
    twin = books.charge(buyer=buyer, host=host, amount_cents=4200, at=at + timedelta(minutes=3))
    # ordinary: another amount at once, the same amount an hour later
    books.charge(buyer=buyer, host=host, amount_cents=4300, at=at + timedelta(minutes=4))
    later = books.charge(buyer=buyer, host=host, amount_cents=4300, at=at + timedelta(hours=1))

    findings = judge(detect_duplicate_charges)

    assert flagged(findings) == {f"transaction:{twin.pk}"}
    assert findings[0].features["minutes_apart"] == 3.0
    assert f"transaction:{later.pk}" not in flagged(findings)


def test_a_host_whose_sales_are_mostly_refunded_today_is_flagged(books, make_host, make_buyer):
    spiking, ordinary, buyer = make_host(), make_host(), make_buyer()
    for index in range(10):  # a quiet history: one refund in ten
        at = SINCE - timedelta(days=10 - index)
        for host in (spiking, ordinary):
            charge = books.charge(buyer=buyer, host=host, amount_cents=3000, at=at)
            if index == 0:
                books.refund(charge=charge, at=at + timedelta(hours=1))
    for index in range(5):
        at = SINCE + timedelta(hours=1 + index)
        for host in (spiking, ordinary):
            charge = books.charge(buyer=buyer, host=host, amount_cents=3000, at=at)
            if (host is spiking and index < 4) or (host is ordinary and index == 0):
                books.refund(charge=charge, at=at + timedelta(minutes=20))

    findings = judge(detect_refund_ratio_spike)

    assert flagged(findings) == {f"user:{spiking.pk}"}
    assert findings[0].features["window_refunds"] == 4
    assert findings[0].severity == Severity.HIGH


def test_a_lost_dispute_counts_once_towards_the_refund_ratio(books, make_host, make_buyer):
    """Three refunds and a dispute opened and lost in the window: four takebacks, not five."""
    host, buyer = make_host(), make_buyer()
    for index in range(6):
        at = SINCE + timedelta(hours=1 + index)
        charge = books.charge(buyer=buyer, host=host, amount_cents=3000, at=at)
        if index < 3:
            books.refund(charge=charge, at=at + timedelta(minutes=20))
        elif index == 3:
            books.lost_dispute(
                charge=charge,
                amount_cents=3000,
                opened=at + timedelta(minutes=30),
                lost=at + timedelta(hours=2),
            )

    [finding] = judge(detect_refund_ratio_spike)

    assert finding.features["window_refunds"] == 4
    assert finding.features["window_charges"] == 6


def test_a_days_payouts_far_above_the_recipients_history_are_flagged(books, make_host):
    fast, steady = make_host(), make_host()
    for day in range(1, 5):
        for host in (fast, steady):
            books.payout(user=host, amount_cents=10_000, at=SINCE - timedelta(days=day * 7))
    burst = books.payout(user=fast, amount_cents=30_000, at=SINCE + timedelta(hours=3))
    burst_2 = books.payout(user=fast, amount_cents=30_000, at=SINCE + timedelta(hours=4))
    books.payout(user=steady, amount_cents=12_000, at=SINCE + timedelta(hours=3))

    findings = judge(detect_payout_velocity)

    # 30k alone is 3x the usual 10k; the second payout makes the day 6x (factor 5).
    assert flagged(findings) == {f"payout:{burst_2}"}
    assert f"payout:{burst}" not in flagged(findings)
    assert findings[0].features["day_cents"] == 60_000


def test_a_large_payout_right_after_a_split_rule_change_is_flagged(books, make_host):
    changed, unchanged = make_host(), make_host()
    books.split_rule_change(host=changed)
    now = timezone.now()
    suspicious = books.payout(user=changed, amount_cents=150_000, at=now + timedelta(minutes=1))
    small = books.payout(user=changed, amount_cents=5_000, at=now + timedelta(minutes=2))
    books.payout(user=unchanged, amount_cents=150_000, at=now + timedelta(minutes=1))

    findings = judge(
        detect_split_change_before_payout, now - timedelta(hours=1), now + timedelta(hours=1)
    )

    assert flagged(findings) == {f"payout:{suspicious}"}
    assert f"payout:{small}" not in flagged(findings)


def test_a_recipient_debt_that_keeps_growing_is_flagged(books, make_host, make_buyer):
    indebted, healthy, buyer = make_host(), make_host(), make_buyer()
    charges = {}
    for host in (indebted, healthy):
        charges[host.pk] = [
            books.charge(buyer=buyer, host=host, amount_cents=5000, at=SINCE - timedelta(days=d))
            for d in (5, 4, 3)
        ]
    books.payout(
        user=indebted, amount_cents=books.payable_cents(indebted), at=SINCE - timedelta(days=1)
    )
    books.payout(
        user=healthy, amount_cents=books.payable_cents(healthy) // 2, at=SINCE - timedelta(days=1)
    )
    for host in (indebted, healthy):
        books.refund(charge=charges[host.pk][0], at=SINCE + timedelta(hours=2))

    findings = judge(detect_negative_balance_growing)

    assert flagged(findings) == {f"user:{indebted.pk}"}
    assert findings[0].features["balance_after_cents"] == -4500
    assert findings[0].features["balance_before_cents"] == 0


def test_a_webhook_that_failed_repeatedly_is_flagged_once_failed_is_not(books):
    failing = books.failing_webhook(attempts=5)
    once = books.failing_webhook(attempts=1)

    found = flagged(judge(detect_webhook_failures, until=timezone.now() + timedelta(hours=1)))

    assert f"stripe_event:{failing}" in found
    assert f"stripe_event:{once}" not in found


def test_a_ledger_difference_is_high_severity_and_alerts(
    books, make_host, make_buyer, django_capture_on_commit_callbacks, sync_jobs
):
    host = make_host()
    books.charge(buyer=make_buyer(), host=host, amount_cents=5000, at=SINCE)
    code = books.tamper_balance(user=host, cents=7)

    findings = judge(detect_ledger_differences)
    mine = [f for f in findings if f.subject_id == f"balance:{code}#0"]
    assert len(mine) == 1
    assert mine[0].severity == Severity.HIGH
    assert mine[0].features == {
        "kind": "balance",
        "subject": f"{code}#0",
        "expected": 4500,
        "actual": 4507,
    }

    with django_capture_on_commit_callbacks(execute=True):
        record_findings(findings=mine)
    # One incident with monitoring's own verification (`ledger-verify`), sent once, by mail
    # without a Slack webhook.
    with system_context():
        [alert] = Alert.objects.filter(key="ledger-verify", resolved_at__isnull=True)
    assert alert.details["detector"] == "ledger_difference" and alert.notified_at is not None
    assert len(mail.outbox) == 1
    assert "the ledger does not verify" in mail.outbox[0].body
    # The nightly verification sees the same difference: the same incident, counted, not sent.
    with django_capture_on_commit_callbacks(execute=True):
        run, _ = verify_ledger(trigger="test")
    with system_context():
        [alert] = Alert.objects.filter(key="ledger-verify", resolved_at__isnull=True)
    assert run.difference_count >= 1 and alert.count == 2
    assert len(mail.outbox) == 1


def test_clean_books_give_no_ledger_difference_finding(books, make_host, make_buyer):
    host = make_host()
    books.charge(buyer=make_buyer(), host=host, amount_cents=5000, at=SINCE)
    assert not [f for f in judge(detect_ledger_differences) if str(host.pk) in f.subject_id]


def test_findings_are_recorded_once_and_not_again_after_review(books, make_host, make_buyer):
    host, buyer = make_host(), make_buyer()
    at = SINCE + timedelta(hours=2)
    books.charge(buyer=buyer, host=host, amount_cents=4200, at=at)
    books.charge(buyer=buyer, host=host, amount_cents=4200, at=at + timedelta(minutes=1))

    first = run_detectors(since=SINCE, until=UNTIL, names=["duplicate_charge"])
    again = run_detectors(since=SINCE, until=UNTIL, names=["duplicate_charge"])

    assert first.found == {"duplicate_charge": 1} and len(first.created) == 1
    assert again.created == []
    resolve_anomaly(anomaly_id=first.created[0].pk, actor=AdminFactory(), note="refunded the twin")
    assert run_detectors(since=SINCE, until=UNTIL, names=["duplicate_charge"]).created == []
    with system_context():
        assert Anomaly.objects.filter(fingerprint=first.created[0].fingerprint).count() == 1
