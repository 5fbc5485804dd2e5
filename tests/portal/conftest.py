"""Fixtures for the hosts' and artists' pages: a signed-in browser session (Django's test
client), earnings booked straight into the ledger, and a connected account."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.test import Client

from ledger.chart import platform_code, user_code
from ledger.models import LedgerTransaction
from ledger.services import credit, debit, post_transaction
from payouts.models import Payout
from reporting.models import Report
from splits.models import SplitRule
from tests.factories import DEFAULT_PASSWORD
from treasury.models import AuditLog, User
from treasury.rls import system_context
from treasury.stripe.models import OnboardingStatus, StripeAccount


@pytest.fixture(autouse=True)
def fast_password_hashing(settings: Any) -> None:
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def earnings_available_at_once(settings: Any) -> None:
    """No maturing delay (it has its own tests in tests/payouts)."""
    settings.PAYOUTS_AVAILABILITY_DELAY = timedelta(0)
    settings.PAYOUTS_RISK_HOLD_THRESHOLD_BPS = 10_001  # never held: risk has its own tests


@pytest.fixture
def signed_in() -> Callable[..., Client]:
    """A browser session of `user`, signed in through the pages' own login form."""

    def make(user: User, *, enforce_csrf_checks: bool = False) -> Client:
        client = Client()
        response = client.post("/me/login/", {"username": user.email, "password": DEFAULT_PASSWORD})
        assert response.status_code == 302, response.content
        # Signed in, from now on every POST must carry the form's CSRF token, as a browser's.
        client.handler.enforce_csrf_checks = enforce_csrf_checks
        return client

    return make


def book_sale(
    user: User,
    amount_cents: int,
    currency: str = "USD",
    *,
    fee_cents: int = 0,
    platform_fee_cents: int = 0,
    at: datetime | None = None,
) -> LedgerTransaction:
    """A sale's posting as treasury.stripe books it (ledger only): `amount_cents` to the
    user's payable (less a Stripe fee the user bears, `fee_cents`), `platform_fee_cents`
    to the platform's fee revenue, the buyer's money into Stripe's balance."""
    charge_id = f"ch_portal_{uuid.uuid4().hex[:16]}"
    gross = amount_cents + platform_fee_cents
    lines = [
        debit(platform_code("stripe_balance", currency), gross, currency),
        credit(user_code(user.pk, "payable", currency), amount_cents, currency),
    ]
    if platform_fee_cents:
        lines.append(credit(platform_code("fee_revenue", currency), platform_fee_cents, currency))
    if fee_cents:
        lines += [
            debit(user_code(user.pk, "payable", currency), fee_cents, currency),
            credit(platform_code("stripe_balance", currency), fee_cents, currency),
        ]
    with system_context():
        return post_transaction(
            idempotency_key=f"charge:{charge_id}",
            entries=lines,
            event_source="stripe_charge",
            reference_id=charge_id,
            effective_at=at,
            metadata={"host_id": str(user.pk)},
        )


def completed_account(user: User) -> StripeAccount:
    """A connected account whose onboarding is over (as `account.updated` would record it)."""
    with system_context():
        return StripeAccount.objects.create(
            user=user,
            stripe_account_id=f"acct_portal{uuid.uuid4().hex[:12]}",
            onboarding_status=OnboardingStatus.COMPLETED,
            charges_enabled=True,
            payouts_enabled=True,
            details_submitted=True,
        )


def footprint() -> tuple[int, ...]:
    """Rows a refused form must not add: payouts, ledger transactions, split rules,
    reports, audit rows."""
    with system_context():
        return (
            Payout.objects.count(),
            LedgerTransaction.objects.count(),
            SplitRule.objects.count(),
            Report.objects.count(),
            AuditLog.objects.count(),
        )
