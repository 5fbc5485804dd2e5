from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ledger.chart import platform_code, user_code
from ledger.models import LedgerTransaction
from ledger.services import EntryLine, credit, debit, post_transaction
from reporting.models import Report
from reporting.storage import open_stored
from treasury.rls import system_context


@pytest.fixture(autouse=True)
def report_files(settings: Any, tmp_path: Path) -> Path:
    """Report files of each test in its own folder (local storage)."""
    folder = tmp_path / "report-files"
    settings.STORAGES = {
        **settings.STORAGES,
        "reports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(folder)},
        },
    }
    return folder


def at(year: int, month: int, day: int = 15, hour: int = 12) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def tag() -> str:
    return uuid.uuid4().hex[:10]


def post_charge(
    *,
    charge_id: str,
    host: Any,
    currency: str,
    gross: int,
    shares: dict[Any, int],
    platform_fee: int,
    stripe_fee: int = 0,
    recipient_fees: dict[Any, int] | None = None,
    effective_at: datetime,
) -> LedgerTransaction:
    """A charge as treasury.stripe books it (DESIGN "Charge succeeded"): debit Stripe's
    balance the gross, credit each recipient's payable and the platform's fee revenue; the
    Stripe fee out of Stripe's balance into processing fees, or out of the recipients'
    payables when `recipient_fees` says they bear it."""
    recipient_fees = recipient_fees or {}
    assert sum(shares.values()) + platform_fee == gross
    lines: list[EntryLine] = [debit(platform_code("stripe_balance", currency), gross, currency)]
    for user, cents in shares.items():
        lines.append(credit(user_code(user.pk, "payable", currency), cents, currency))
    if platform_fee:
        lines.append(credit(platform_code("fee_revenue", currency), platform_fee, currency))
    if stripe_fee:
        platform_part = stripe_fee - sum(recipient_fees.values())
        if platform_part:
            lines.append(debit(platform_code("processing_fees", currency), platform_part, currency))
        for user, cents in recipient_fees.items():
            lines.append(debit(user_code(user.pk, "payable", currency), cents, currency))
        lines.append(credit(platform_code("stripe_balance", currency), stripe_fee, currency))
    return post_transaction(
        idempotency_key=f"charge:{charge_id}",
        event_source="stripe_charge",
        reference_id=charge_id,
        effective_at=effective_at,
        metadata={"host_id": str(host.pk)},
        entries=lines,
    )


def refreshed(report: Report) -> Report:
    with system_context():
        return Report.objects.get(pk=report.pk)


def stored_text(report: Report) -> str:
    with open_stored(report.location) as handle:
        return handle.read().decode("utf-8")


@pytest.fixture
def run_job() -> Iterator[Any]:
    """Run a report's django-q2 job function right here, as the cluster would."""
    from reporting.tasks import generate_report

    def run(report: Report) -> Report:
        generate_report(report.pk)
        return refreshed(report)

    yield run
