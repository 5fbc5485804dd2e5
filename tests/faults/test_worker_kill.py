"""The django-q2 worker SIGKILLed in the middle of a payout run: running it again converges.

A real `manage.py qcluster` (ORM broker on the test database, a queue of the test's own so
no other test's cluster takes the job) runs the nightly payout job for one recipient. A
fault point (PAYOUTS_FAULT_AFTER=transfer) stops the worker right after Stripe made the
transfer and before the treasury recorded it, the worst moment; the test SIGKILLs the whole
cluster there. A fresh cluster runs the job again (as the next nightly run or the resume
schedule would): the payout is paid once, Stripe holds one transfer, the ledger verifies.
tests/payouts/test_kill.py covers the same steps in a plain `manage.py run_payouts`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connections
from django_q.models import OrmQ, Task
from django_q.tasks import async_task

from ledger.selectors import ledger_differences
from payouts.models import Payout
from tests.factories import HostFactory
from tests.payouts import conftest as payout_fixtures
from tests.payouts.conftest import earn, ledger_keys, onboard, payable, reload, transfers_to
from tests.payouts.test_kill import wait_for_line
from treasury.rls import system_context

# The stand-in and the payout settings, as tests/payouts uses them.
stripe_standin = payout_fixtures.stripe_standin
payout_settings = payout_fixtures.payout_settings
stripe_settings = payout_fixtures.stripe_settings
stripe_api = payout_fixtures.stripe_api
test_database_only = payout_fixtures.test_database_only

JOB = "payouts.services.run_scheduled_payouts"


def cluster(queue: str, standin_url: str, cache: Path, fault: str = "") -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "TREASURY_DATABASE_NAME": connections["default"].settings_dict["NAME"],
        "TREASURY_CACHE_DIR": str(cache),
        "Q_CLUSTER_NAME": queue,
        "Q_WORKERS": "1",
        "STRIPE_API_BASE": standin_url,
        "STRIPE_MAX_NETWORK_RETRIES": "0",
        "PAYOUTS_AVAILABILITY_DELAY_HOURS": "0",
        "PAYOUTS_FAULT_AFTER": fault,
        "LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "qcluster"],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group: the sentinel and its workers
    )


def kill(process: subprocess.Popen[str]) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)


@pytest.mark.usefixtures("committed_db", "test_database_only")
def test_a_sigkilled_job_cluster_mid_payout_run_converges_when_the_job_runs_again(
    stripe_settings, stripe_api, tmp_path
):
    host = HostFactory()
    account = onboard(stripe_settings, host)
    earn(stripe_settings, host, 10000)
    assert payable(host) == 9000
    queue = f"faults-{uuid.uuid4().hex[:8]}"
    try:
        first = cluster(queue, stripe_settings.base_url, tmp_path / "cache", fault="transfer")
        try:
            async_task(JOB, user_ids=[str(host.pk)], cluster=queue)
            wait_for_line(first, "PAYOUTS_FAULT_AFTER=transfer")
        finally:
            kill(first)

        with system_context():
            [payout] = Payout.objects.filter(user=host)
        assert (payout.status, payout.stripe_transfer_id) == ("pending", None)
        assert ledger_keys(payout) == [f"payout:{payout.pk}:reserve"]
        assert len(transfers_to(stripe_api, account.stripe_account_id)) == 1  # made, unrecorded

        second = cluster(queue, stripe_settings.base_url, tmp_path / "cache")
        try:
            rerun = async_task(JOB, user_ids=[str(host.pk)], cluster=queue)
            deadline = time.monotonic() + 120
            while not Task.objects.filter(id=rerun).exists():
                assert second.poll() is None, second.communicate()[1][-3000:]
                assert time.monotonic() < deadline, "the job never ran again"
                time.sleep(0.25)
        finally:
            second.send_signal(signal.SIGTERM)
            try:
                second.wait(timeout=30)
            except subprocess.TimeoutExpired:
                kill(second)
        task = Task.objects.get(id=rerun)
        assert task.success, task.result
        assert task.result["resumed"] == 1 and task.result["initiated"] == 0
    finally:
        OrmQ.objects.filter(key=queue).delete()  # the killed delivery, never to be retried

    payout = reload(payout)
    assert payout.status == "paid"
    [transfer] = transfers_to(stripe_api, account.stripe_account_id)
    assert (transfer["id"], transfer["amount"]) == (payout.stripe_transfer_id, 9000)
    assert ledger_keys(payout) == [f"payout:{payout.pk}:reserve", f"payout:{payout.pk}:settle"]
    assert payable(host) == 0
    with system_context():
        assert Payout.objects.filter(user=host).count() == 1
        assert list(ledger_differences()) == []
