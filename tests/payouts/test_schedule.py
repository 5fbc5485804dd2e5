"""The nightly run: one standard payout per recipient and currency whose available balance
reaches the minimum; one run at a time; a second run the same night pays nobody twice."""

from __future__ import annotations

from datetime import UTC, date, datetime

from django.core.management import call_command
from django_q.models import Schedule

from payouts.models import Payout
from payouts.schedules import NIGHTLY, RESUME, next_nightly_run
from payouts.services import NIGHTLY_RUN_LOCK, run_scheduled_payouts
from tests.factories import ArtistFactory, HostFactory
from treasury.rls import system_context

from .conftest import DB, earn, onboard, payable

pytestmark = DB


def payouts_of(*users):
    with system_context():
        return list(Payout.objects.filter(user__in=users).order_by("id"))


def test_the_nightly_run_pays_everyone_above_their_minimum_once(
    stripe_settings, django_capture_on_commit_callbacks
):
    """Minimum 10.00 USD / 1,000 JPY. The host has 90.00 USD and 900 JPY; the artist 9.00
    USD; a host without a completed connected account has 90.00 USD."""
    host, artist, not_onboarded = HostFactory(), ArtistFactory(), HostFactory()
    onboard(stripe_settings, host)
    onboard(stripe_settings, artist)
    earn(stripe_settings, host, 10000)
    earn(stripe_settings, host, 1000, "jpy")
    earn(stripe_settings, artist, 1000)
    earn(stripe_settings, not_onboarded, 10000)
    users = [str(u.pk) for u in (host, artist, not_onboarded)]

    with django_capture_on_commit_callbacks(execute=True):
        result = run_scheduled_payouts(run_date=date(2026, 3, 1), user_ids=users)

    assert result == {
        "skipped": 0,
        "resumed": 0,
        "initiated": 1,
        "held": 0,
        "below_minimum": 2,
    }
    [payout] = payouts_of(host, artist, not_onboarded)
    assert (payout.user_id, payout.amount_cents, payout.currency) == (host.pk, 9000, "USD")
    assert (payout.source, payout.method, payout.status) == ("schedule", "standard", "paid")
    assert payout.idempotency_key == "scheduled:2026-03-01:USD"
    assert (payable(host), payable(host, "JPY"), payable(artist)) == (0, 900, 900)

    earn(stripe_settings, host, 5000)  # more money the same night: still one payout
    with django_capture_on_commit_callbacks(execute=True):
        again = run_scheduled_payouts(run_date=date(2026, 3, 1), user_ids=users)
    assert again["initiated"] == 0
    assert len(payouts_of(host, artist, not_onboarded)) == 1
    with django_capture_on_commit_callbacks(execute=True):
        next_night = run_scheduled_payouts(run_date=date(2026, 3, 2), user_ids=users)
    assert next_night["initiated"] == 1
    assert [p.amount_cents for p in payouts_of(host)] == [9000, 4500]


def test_only_one_run_at_a_time(stripe_settings, owner_connection):
    host = HostFactory()
    onboard(stripe_settings, host)
    earn(stripe_settings, host, 10000)
    owner_connection.execute("SELECT pg_advisory_lock(hashtextextended(%s, 0))", [NIGHTLY_RUN_LOCK])
    try:
        result = run_scheduled_payouts(user_ids=[str(host.pk)])
    finally:
        owner_connection.execute(
            "SELECT pg_advisory_unlock(hashtextextended(%s, 0))", [NIGHTLY_RUN_LOCK]
        )
    assert result["skipped"] == 1 and result["initiated"] == 0
    assert payouts_of(host) == []
    assert payable(host) == 9000


def test_the_schedules_exist_and_setting_them_up_again_changes_nothing(settings):
    settings.PAYOUTS_NIGHTLY_AT = "03:30"
    call_command("setup_payout_schedules", stdout=open("/dev/null", "w"))  # noqa: SIM115
    call_command("setup_payout_schedules", stdout=open("/dev/null", "w"))  # noqa: SIM115
    nightly = Schedule.objects.get(name=NIGHTLY)
    resume = Schedule.objects.get(name=RESUME)
    assert (nightly.func, nightly.schedule_type) == ("payouts.tasks.run_scheduled_payouts", "D")
    assert (nightly.next_run.hour, nightly.next_run.minute) == (3, 30)
    assert (resume.func, resume.schedule_type, resume.minutes) == (
        "payouts.tasks.resume_payouts",
        "I",
        10,
    )
    assert Schedule.objects.filter(name__in=[NIGHTLY, RESUME]).count() == 2


def test_the_next_nightly_run_is_today_or_tomorrow(settings):
    settings.PAYOUTS_NIGHTLY_AT = "02:00"
    before = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    after = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    assert next_nightly_run(before) == datetime(2026, 3, 1, 2, 0, tzinfo=UTC)
    assert next_nightly_run(after) == datetime(2026, 3, 2, 2, 0, tzinfo=UTC)
