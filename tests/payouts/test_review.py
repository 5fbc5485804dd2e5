"""Risk: a payout's score comes from signals a reviewer can read; at the threshold it is
held, and a held payout is not transferred until an admin approves it. Rejection releases
the reservation. Every review step is audited."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.utils import timezone
from django_q.models import OrmQ

from payouts import risk
from payouts.services import (
    approve_payout,
    execute_payout,
    initiate_payout,
    request_nightly_run,
    resume_payouts,
)
from tests.factories import DEFAULT_PASSWORD, HostFactory, SplitRuleFactory
from treasury.errors import Forbidden
from treasury.models import AuditLog
from treasury.rls import system_context

from .conftest import DB, earn, onboard, payable, reload, transfers_to

pytestmark = DB


@pytest.fixture
def host(stripe_settings):
    host = HostFactory()
    host.account = onboard(stripe_settings, host)
    earn(stripe_settings, host, 10000)
    return host


@pytest.fixture
def strict(payout_settings):
    """A new account alone (0.3) reaches the threshold."""
    payout_settings.PAYOUTS_RISK_HOLD_THRESHOLD_BPS = 3000
    return payout_settings


def pay_out(host, amount_cents=6000, key="k"):
    return initiate_payout(
        user=host, amount_cents=amount_cents, currency="USD", method="standard", idempotency_key=key
    )


def admin_action(admin_user, action, payout):
    client = Client()
    assert client.login(email=admin_user.email, password=DEFAULT_PASSWORD)
    response = client.post(
        "/admin/payouts/payout/", {"action": action, "_selected_action": [payout.pk]}
    )
    assert response.status_code == 302, response.content
    return client


def audit_actions(payout):
    with system_context():
        return list(
            AuditLog.objects.filter(target_type="payouts.payout", target_id=str(payout.pk))
            .order_by("id")
            .values_list("action", "user_id")
        )


def test_a_held_payout_is_not_transferred_until_approved(
    host, strict, admin_user, stripe_api, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        payout = pay_out(host)
    assert callbacks == []  # nothing is sent after commit
    payout = reload(payout)
    assert payout.status == "held"
    assert payout.risk_score == 3000
    assert payout.risk_signals == [
        {"name": "account_age", "weight": 3000, "reason": "account is 0 days old (new)"}
    ]
    assert payable(host) == 3000  # reserved all the same: nobody else can spend it
    assert execute_payout(payout_id=payout.pk).status == "held"
    assert resume_payouts(user_ids=[host.pk]) == 0
    assert transfers_to(stripe_api, host.account.stripe_account_id) == []

    with django_capture_on_commit_callbacks(execute=True):
        admin_action(admin_user, "approve", payout)

    payout = reload(payout)
    assert (payout.status, payout.reviewed_by_id) == ("paid", admin_user.pk)
    [transfer] = transfers_to(stripe_api, host.account.stripe_account_id)
    assert transfer["amount"] == 6000
    assert audit_actions(payout) == [
        ("payout.held", host.pk),
        ("payout.approve", admin_user.pk),
        ("payout.paid", None),
    ]


def test_rejecting_a_held_payout_releases_the_funds(
    host, strict, admin_user, stripe_api, django_capture_on_commit_callbacks
):
    payout = pay_out(host)
    with django_capture_on_commit_callbacks(execute=True):
        admin_action(admin_user, "reject", payout)
    payout = reload(payout)
    assert (payout.status, payout.failure_code) == ("cancelled", "rejected")
    assert payable(host) == 9000
    assert transfers_to(stripe_api, host.account.stripe_account_id) == []
    assert audit_actions(payout)[-1] == ("payout.reject", admin_user.pk)


def test_an_admin_holds_a_pending_payout_before_it_is_sent(
    host, admin_user, stripe_api, django_capture_on_commit_callbacks
):
    payout = pay_out(host)  # not committed: its transfer has not run
    assert reload(payout).status == "pending"
    admin_action(admin_user, "hold", payout)
    assert reload(payout).status == "held"
    assert execute_payout(payout_id=payout.pk).status == "held"
    assert transfers_to(stripe_api, host.account.stripe_account_id) == []
    assert audit_actions(payout)[-1] == ("payout.hold", admin_user.pk)


def test_a_paid_payout_cannot_be_held_or_approved(host, admin_user, stripe_api):
    payout = pay_out(host)
    execute_payout(payout_id=payout.pk)
    client = admin_action(admin_user, "hold", payout)
    assert reload(payout).status == "paid"
    page = client.get("/admin/payouts/payout/")
    assert "only pending ones are held" in page.content.decode()


def test_only_admins_review(host, strict):
    payout = pay_out(host)
    with pytest.raises(Forbidden):
        approve_payout(payout_id=payout.pk, actor=host)
    assert reload(payout).status == "held"


def test_the_admin_shows_the_clearing_balance_beside_unsettled_payouts(host, strict, admin_user):
    pay_out(host)
    client = Client()
    assert client.login(email=admin_user.email, password=DEFAULT_PASSWORD)
    page = client.get("/admin/payouts/payout/?status__exact=held").content.decode()
    assert "Payout clearing" in page
    assert "60.00 USD" in page
    assert "DIFFERS" not in page


def test_retrying_a_failed_payout_starts_a_new_one(
    stripe_settings, admin_user, django_capture_on_commit_callbacks
):
    from .conftest import book_earning

    host = HostFactory()
    onboard(stripe_settings, host)
    book_earning(host, 5000)  # no Stripe money: the first transfer is refused
    with django_capture_on_commit_callbacks(execute=True):
        failed = pay_out(host, 5000)
    assert reload(failed).status == "failed"
    earn(stripe_settings, HostFactory(), 10000)  # now the platform's Stripe balance covers it
    with django_capture_on_commit_callbacks(execute=True):
        admin_action(admin_user, "retry", failed)
    with system_context():
        [retried] = failed.retries.all()
    assert (retried.status, retried.source, retried.amount_cents) == ("paid", "retry", 5000)
    assert payable(host) == 0


# --- the signals ---


def assess(user, amount_cents=6000):
    with system_context():
        return risk.assess(
            request=risk.PayoutRequest(user, amount_cents, "USD", "standard", timezone.now())
        )


def names(assessment):
    return {signal.name for signal in assessment.signals}


def test_a_split_rule_change_just_before_raises_the_score(host):
    assert names(assess(host)) == {"account_age"}
    SplitRuleFactory(
        owner=HostFactory(), recipients=[{"recipient_id": host.pk, "share_bps": 10000}]
    )
    assessment = assess(host)
    assert names(assessment) == {"account_age", "split_rule_change"}
    assert assessment.score == 6000


def test_an_old_account_paying_out_far_above_its_history(host, django_capture_on_commit_callbacks):
    with system_context():
        type(host).objects.filter(pk=host.pk).update(
            created_at=timezone.now() - timedelta(days=400)
        )
        host.refresh_from_db()
    for n in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            pay_out(host, 1000, key=f"small-{n}")
    assessment = assess(host, amount_cents=3001)  # over 3x the 10.00 average
    assert names(assessment) == {"payout_velocity", "payout_burst"}
    assert assessment.score == 5000
    assert names(assess(host, amount_cents=3000)) == {"payout_burst"}


def test_refunds_and_disputes_against_earnings_raise_the_score(host):
    from tests.payouts.test_available_balance import refund

    refund(host, 2700)  # 27.00 of 90.00 earned: 30%
    assessment = assess(host)
    [signal] = [s for s in assessment.signals if s.name == "refunds_and_disputes"]
    assert signal.weight == 4000
    assert "2700 of 9000" in signal.reason


def test_other_modules_add_checks_through_the_hook(host):
    def flagged(request):
        return risk.RiskSignal("open_anomalies", 5000, "1 open anomaly")

    risk.register_risk_check(flagged)
    try:
        assessment = assess(host)
    finally:
        risk.unregister_risk_check(flagged)
    assert assessment.score == 8000 and assessment.should_hold


def queued_nightly_runs() -> list[str]:
    return [
        task.task_id()
        for task in OrmQ.objects.all()
        if task.func() == "payouts.tasks.run_scheduled_payouts"
    ]


def test_an_admin_starts_the_nightly_run_from_the_payouts_page(
    admin_user, django_capture_on_commit_callbacks
):
    client = Client()
    assert client.login(email=admin_user.email, password=DEFAULT_PASSWORD)
    assert "Run the nightly payouts now" in client.get("/admin/payouts/payout/").content.decode()
    queued_before = queued_nightly_runs()

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post("/admin/payouts/payout/run-nightly/")

    assert (answer.status_code, answer["Location"]) == (302, "/admin/payouts/payout/")
    assert len(queued_nightly_runs()) == len(queued_before) + 1
    with system_context():
        [audit] = AuditLog.objects.filter(action="payout.nightly_run_requested", user=admin_user)
    assert audit.details == {"run_date": timezone.now().date().isoformat()}


def test_only_admins_start_the_nightly_run(host, django_capture_on_commit_callbacks):
    queued_before = queued_nightly_runs()
    with pytest.raises(Forbidden), django_capture_on_commit_callbacks(execute=True):
        request_nightly_run(actor=host)
    client = Client()
    assert client.login(email=host.email, password=DEFAULT_PASSWORD)
    assert client.post("/admin/payouts/payout/run-nightly/").status_code == 302  # to login
    assert queued_nightly_runs() == queued_before
    with system_context():
        assert not AuditLog.objects.filter(action="payout.nightly_run_requested").exists()
