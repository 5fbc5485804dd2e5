"""The Stripe stand-in fixtures of tests/disputes, reused here."""

from __future__ import annotations

from tests.disputes.conftest import (  # noqa: F401  (fixtures)
    stripe_api,
    stripe_settings,
    stripe_standin,
)
