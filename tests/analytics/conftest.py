"""A small marketplace in SEK (a currency no other test books, so the platform's totals
are this test's alone), booked through the Stripe stand-in like production.

Worked example: the host's rule keeps 10% for the platform and splits the rest 70/30 with
the artist. Two sales, 100.00 and 50.00 SEK: gross 150.00, platform fees 10.00 + 5.00; the
host gets 63.00 + 31.50, the artist 27.00 + 13.50. The buyer is refunded 33.33 of the first:
3.33 of the platform's fee goes back (fees 15.00 - 3.33 = 11.67). The artist is paid out
20.00. So the day's platform row: gross 15000, fees 1167, refunds 3333, disputes 0,
payouts 2000, 2 charges; the host's row: the same sales figures and no payouts; the
artist's row: payouts 2000 only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date
from typing import Any

import pytest
from django.utils import timezone

from analytics.services import refresh_analytics
from disputes.services import request_refund
from events.services import deliver_events
from payouts.services import initiate_payout
from tests.disputes.conftest import (  # noqa: F401  (fixtures)
    onboard,
    rule,
    sell,
    stripe_api,
    stripe_settings,
    stripe_standin,
)
from tests.factories import ArtistFactory, HostFactory, UserFactory
from treasury.models import User

CURRENCY = "SEK"


@dataclass
class Market:
    host: User
    artist: User
    buyer: User
    split: Any
    standin: Any
    day: date


def refresh() -> None:
    """What the two jobs do: deliver the outbox, then recompute the days it marked."""
    deliver_events()
    refresh_analytics()


@pytest.fixture
def market(stripe_settings, django_capture_on_commit_callbacks) -> Market:  # noqa: F811
    host, artist, buyer = HostFactory(), ArtistFactory(), UserFactory()
    onboard(stripe_settings, artist)
    split = rule(owner=host, recipients=[(host, 7000), (artist, 3000)])
    first = sell(stripe_settings, amount_cents=10000, split_rule=split, buyer=buyer, currency="sek")
    sell(stripe_settings, amount_cents=5000, split_rule=split, buyer=buyer, currency="sek")
    with django_capture_on_commit_callbacks(execute=True):
        request_refund(actor=buyer, charge_id=first, amount_cents=3333, idempotency_key="r1")
    with django_capture_on_commit_callbacks(execute=True):
        initiate_payout(
            user=artist,
            amount_cents=2000,
            currency=CURRENCY,
            method="standard",
            idempotency_key="p1",
        )
    return Market(
        host, artist, buyer, split, stripe_settings, timezone.now().astimezone(UTC).date()
    )
