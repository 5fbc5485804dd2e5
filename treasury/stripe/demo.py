"""Demo payments for `make demo`: run by `run_demo` once the Stripe stand-in and the web
server are up, since everything here goes through Stripe and comes back as webhooks.

Idempotent: if charges are booked already, it only reports them. The stand-in keeps its
state in memory, so accounts onboarded in an earlier run are unknown to a restarted one;
those hosts keep their (stale) row and are reported, not onboarded again.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from django.conf import settings

from ledger.models import LedgerTransaction
from splits.selectors import default_rule_for
from splits.services import create_split_rule, platform_default_values
from treasury.errors import TreasuryError
from treasury.models import User
from treasury.rls import system_context, user_context
from treasury.stripe.models import OnboardingStatus, StripeAccount, StripeCharge
from treasury.stripe.services import create_demo_charge, start_onboarding

# (host, artist, host's share in basis points): the hosts' default split rules.
DEMO_PARTNERS = [
    ("host.aurora@treasury.local", "artist.nova@treasury.local", 7000),
    ("host.basement@treasury.local", "artist.kite@treasury.local", 6000),
]
DEMO_BUYERS = ["buyer.sam@treasury.local", "buyer.lee@treasury.local", "buyer.ana@treasury.local"]
# Ticket prices in cents (USD), one sale each.
DEMO_SALES_CENTS = [2500, 4000, 1800, 12000, 3500, 6000, 2200, 9900, 4500, 1500]

Write = Callable[[str], Any]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the return URL needs a login; the redirect itself is the answer


def seed_demo_payments(*, web_url: str, write: Write, timeout: float = 30.0) -> None:
    """Onboard the demo hosts and artists, give hosts a default split rule, and sell ten
    tickets through Stripe; then report what the webhooks booked."""
    if not _wait_for(f"{web_url}/api/admin/health", timeout) or not _wait_for(
        f"{settings.STRIPE_API_BASE}/v1/account", timeout
    ):
        write("Stripe demo skipped: the web server or the Stripe stand-in did not answer.")
        return
    with system_context():
        users = {u.email: u for u in User.objects.filter(email__endswith="@treasury.local")}
        booked = StripeCharge.objects.count()
    if booked:
        write(f"Stripe demo: {booked} charges already booked, nothing to add.")
        return
    if not all(email in users for pair in DEMO_PARTNERS for email in pair[:2]):
        write("Stripe demo skipped: run `manage.py seed_demo` first.")
        return
    for host_email, artist_email, host_bps in DEMO_PARTNERS:
        host, artist = users[host_email], users[artist_email]
        for seller in (host, artist):
            _onboard(seller, write)
        _ensure_default_rule(host=host, artist=artist, host_bps=host_bps)
    buyers = [users[email] for email in DEMO_BUYERS if email in users]
    hosts = [users[host_email] for host_email, _, _ in DEMO_PARTNERS]
    for n, amount_cents in enumerate(DEMO_SALES_CENTS):
        create_demo_charge(
            buyer=buyers[n % len(buyers)],
            host=hosts[n % len(hosts)],
            amount_cents=amount_cents,
            currency="USD",
        )
    deadline = time.monotonic() + timeout
    while _booked_charges() < len(DEMO_SALES_CENTS) and time.monotonic() < deadline:
        time.sleep(0.2)
    with system_context():
        completed = StripeAccount.objects.filter(
            onboarding_status=OnboardingStatus.COMPLETED
        ).count()
        postings = LedgerTransaction.objects.filter(idempotency_key__startswith="charge:").count()
    write(
        f"Stripe demo: {len(DEMO_SALES_CENTS)} ticket sales paid through the stand-in;"
        f" {postings} charge postings arrived in the ledger by webhook;"
        f" {completed} connected accounts onboarded."
    )


def _onboard(user: User, write: Write) -> None:
    """Start Express onboarding and follow the link, as the host would in a browser."""
    try:
        with user_context(user):
            link = start_onboarding(user=user)
    except TreasuryError as exc:
        write(f"  {user.email}: onboarding not started ({exc.message})")
        return
    if link.url is None:
        return
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        opener.open(link.url, timeout=10)
    except urllib.error.HTTPError as exc:
        if exc.code != 302:
            write(f"  {user.email}: onboarding page answered {exc.code}")


def _ensure_default_rule(*, host: User, artist: User, host_bps: int) -> None:
    with system_context():
        if default_rule_for(owner=host).split_rule_id is not None:
            return
        create_split_rule(
            owner=host,
            name=f"{host.display_name} and {artist.display_name}",
            recipients=[
                {"recipient_id": str(host.pk), "share_bps": host_bps},
                {"recipient_id": str(artist.pk), "share_bps": 10_000 - host_bps},
            ],
            is_default=True,
            **platform_default_values(),
        )


def _booked_charges() -> int:
    with system_context():
        return StripeCharge.objects.count()


def _wait_for(url: str, timeout: float) -> bool:
    """True once `url` answers at all (any HTTP status counts as up)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(url, timeout=2).close()  # noqa: S310 - local URLs
            return True
        except urllib.error.HTTPError:
            return True
        except OSError:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.3)
