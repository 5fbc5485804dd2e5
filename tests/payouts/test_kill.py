"""A payout job killed halfway is safe to run again: exactly one transfer, nothing lost.

The nightly run (`manage.py run_payouts`) runs in a subprocess on the test database and the
test's Stripe stand-in. A fault point (PAYOUTS_FAULT_AFTER) stops it right after the
ledger reservation committed, or right after Stripe made the transfer but before the
treasury recorded it; the test SIGKILLs it there. Running the job again converges: the
payout is paid, Stripe holds exactly one transfer for it, the ledger verifies.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest
from django.conf import settings
from django.db import connections

from ledger.selectors import ledger_differences
from payouts.models import Payout
from tests.factories import HostFactory
from treasury.rls import system_context

from .conftest import earn, ledger_keys, onboard, payable, reload, transfers_to


def job(standin_url: str, user_id: str, fault: str = "") -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "TREASURY_DATABASE_NAME": connections["default"].settings_dict["NAME"],
        "STRIPE_API_BASE": standin_url,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "PAYOUTS_AVAILABILITY_DELAY_HOURS": "0",
        "PAYOUTS_FAULT_AFTER": fault,
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(  # noqa: S603 - our own manage.py
        [sys.executable, "manage.py", "run_payouts", "--user", user_id],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_line(process: subprocess.Popen[str], wanted: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    assert process.stdout is not None
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 0.5)
        if ready:
            line = process.stdout.readline()
            if line.strip() == wanted:
                return
            if not line and process.poll() is not None:
                break
    process.kill()
    raise AssertionError(f"the job never reached {wanted!r}: {process.communicate()[1][-3000:]}")


def run_to_the_end(standin_url: str, user_id: str) -> dict[str, int]:
    process = job(standin_url, user_id)
    out, err = process.communicate(timeout=180)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.parametrize("fault", ["reservation", "transfer"])
def test_a_killed_payout_job_converges_to_exactly_one_transfer(
    committed_db, test_database_only, stripe_settings, stripe_api, fault
):
    host = HostFactory()
    account = onboard(stripe_settings, host)
    earn(stripe_settings, host, 10000)
    assert payable(host) == 9000

    process = job(stripe_settings.base_url, str(host.pk), fault=fault)
    wait_for_line(process, f"PAYOUTS_FAULT_AFTER={fault}")
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    assert process.returncode == -signal.SIGKILL

    with system_context():
        [payout] = Payout.objects.filter(user=host)
    assert (payout.status, payout.amount_cents, payout.source) == ("pending", 9000, "schedule")
    assert payout.stripe_transfer_id is None
    assert ledger_keys(payout) == [f"payout:{payout.pk}:reserve"]  # reserved, and only that
    assert payable(host) == 0
    expected_transfers = 0 if fault == "reservation" else 1
    assert len(transfers_to(stripe_api, account.stripe_account_id)) == expected_transfers

    result = run_to_the_end(stripe_settings.base_url, str(host.pk))
    assert result["resumed"] == 1 and result["initiated"] == 0

    payout = reload(payout)
    assert payout.status == "paid"
    [transfer] = transfers_to(stripe_api, account.stripe_account_id)
    assert (transfer["id"], transfer["amount"]) == (payout.stripe_transfer_id, 9000)
    assert ledger_keys(payout) == [f"payout:{payout.pk}:reserve", f"payout:{payout.pk}:settle"]
    with system_context():
        assert list(ledger_differences()) == []

    # Once more, for good measure: nothing new.
    again = run_to_the_end(stripe_settings.base_url, str(host.pk))
    assert again["resumed"] == 0 and again["initiated"] == 0
    with system_context():
        assert Payout.objects.filter(user=host).count() == 1
    assert len(transfers_to(stripe_api, account.stripe_account_id)) == 1
    assert payable(host) == 0
