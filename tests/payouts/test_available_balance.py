"""Available = payable - earnings still maturing (PAYOUTS_AVAILABILITY_DELAY), never below 0.

Worked example: a host earns 90.00 USD (a 100.00 charge, 10% platform fee). With the
default 48-hour delay nothing is available at first; 48 hours after the booking all 90.00
is. A 30.00 refund debit leaves 60.00; a debt (payable below 0) is 0 available.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from ledger.chart import platform_code, user_code
from ledger.services import credit, debit, post_transaction
from payouts.selectors import available_balance, maturing_cents, payout_balance
from tests.factories import HostFactory
from treasury.rls import system_context, user_context

from .conftest import DB, book_earning

pytestmark = DB


@pytest.fixture
def delay(settings):
    settings.PAYOUTS_AVAILABILITY_DELAY = timedelta(hours=48)
    return settings.PAYOUTS_AVAILABILITY_DELAY


def refund(user, amount_cents, currency="USD", key="refund:re_test"):
    post_transaction(
        idempotency_key=f"{key}:{user.pk}",
        entries=[
            debit(user_code(user.pk, "payable", currency), amount_cents, currency),
            credit(platform_code("stripe_balance", currency), amount_cents, currency),
        ],
        event_source="stripe_refund",
    )


def test_earnings_become_available_after_the_delay(delay):
    host = HostFactory()
    book_earning(host, 9000)
    now = timezone.now()
    with system_context():
        assert available_balance(user=host, currency="USD") == 0
        assert maturing_cents(user=host, currency="USD") == 9000
        later = now + delay + timedelta(seconds=1)
        assert available_balance(user=host, currency="USD", at=later) == 9000


def test_the_owner_reads_the_same_numbers_under_row_level_security(delay):
    host = HostFactory()
    book_earning(host, 9000)
    with user_context(host):
        balance = payout_balance(user=host, currency="usd")
    assert (balance.payable_cents, balance.maturing_cents, balance.available_cents) == (
        9000,
        9000,
        0,
    )


def test_money_taken_back_comes_off_the_available_balance(settings):
    settings.PAYOUTS_AVAILABILITY_DELAY = timedelta(0)
    host = HostFactory()
    book_earning(host, 9000)
    refund(host, 3000)
    with system_context():
        assert available_balance(user=host, currency="USD") == 6000


def test_a_debt_leaves_nothing_available(settings):
    settings.PAYOUTS_AVAILABILITY_DELAY = timedelta(0)
    host = HostFactory()
    book_earning(host, 1000)
    refund(host, 2500)
    with system_context():
        balance = payout_balance(user=host, currency="USD")
    assert (balance.payable_cents, balance.available_cents, balance.debt_cents) == (-1500, 0, 1500)


def test_maturing_earnings_count_net_of_a_refund_only_once_they_mature(delay):
    """A refund of a young charge lowers payable at once; the charge's credit stays maturing
    until the delay passes, so available errs on the safe side (0, not negative)."""
    host = HostFactory()
    book_earning(host, 9000)
    refund(host, 3000)
    with system_context():
        assert available_balance(user=host, currency="USD") == 0
        later = timezone.now() + timedelta(hours=49)
        assert available_balance(user=host, currency="USD", at=later) == 6000


def test_currencies_are_separate(settings):
    settings.PAYOUTS_AVAILABILITY_DELAY = timedelta(0)
    host = HostFactory()
    book_earning(host, 9000, "USD")
    book_earning(host, 5000, "JPY")
    with system_context():
        assert available_balance(user=host, currency="USD") == 9000
        assert available_balance(user=host, currency="JPY") == 5000
        assert available_balance(user=host, currency="EUR") == 0
