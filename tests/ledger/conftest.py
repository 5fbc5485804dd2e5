from __future__ import annotations

import pytest

from ledger.chart import platform_code, user_code
from ledger.models import LedgerEntry, LedgerTransaction
from treasury.rls import system_context


@pytest.fixture
def usd_accounts(host, artist):
    """Codes of the accounts a USD charge touches."""
    return {
        "stripe": platform_code("stripe_balance", "USD"),
        "fees": platform_code("fee_revenue", "USD"),
        "processing": platform_code("processing_fees", "USD"),
        "host": user_code(host.pk, "payable", "USD"),
        "artist": user_code(artist.pk, "payable", "USD"),
    }


def book_counts() -> tuple[int, int]:
    with system_context():
        return LedgerTransaction.objects.count(), LedgerEntry.objects.count()
