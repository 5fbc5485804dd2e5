"""The one way the treasury reaches Stripe.

`settings.STRIPE_API_BASE` decides where Stripe is: the real API in production, the local
stand-in in the demo and the tests. Nothing else in the code knows the difference.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import stripe
from django.conf import settings
from django.core.signals import setting_changed
from django.dispatch import receiver

STRIPE_SETTINGS = frozenset({"STRIPE_API_BASE", "STRIPE_SECRET_KEY"})


@lru_cache(maxsize=8)
def _client(api_key: str, api_base: str, max_network_retries: int) -> stripe.StripeClient:
    # Cached: the client keeps one HTTP session per thread, so reusing it keeps connections
    # to Stripe alive across webhook deliveries.
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base, "connect": api_base},
        max_network_retries=max_network_retries,
    )


def stripe_client() -> stripe.StripeClient:
    """A `stripe.StripeClient` for the configured key and API base."""
    return _client(
        settings.STRIPE_SECRET_KEY, settings.STRIPE_API_BASE, settings.STRIPE_MAX_NETWORK_RETRIES
    )


def configure_stripe_library() -> None:
    """Point the `stripe` module's globals at the configured Stripe as well: dj-stripe calls
    the library through them (`stripe.Account.retrieve(...)`), not through a client."""
    stripe.api_key = settings.STRIPE_SECRET_KEY
    stripe.api_base = settings.STRIPE_API_BASE
    stripe.connect_api_base = settings.STRIPE_API_BASE
    logging.getLogger("stripe").setLevel(settings.STRIPE_LOG_LEVEL.upper())


@receiver(setting_changed)
def _follow_settings(*, setting: str, **kwargs: Any) -> None:
    """Tests point STRIPE_API_BASE at a stand-in on a random port with override_settings."""
    if setting in STRIPE_SETTINGS:
        configure_stripe_library()


def as_dict(stripe_object: Any) -> dict[str, Any]:
    """A plain dict of a StripeObject (or a dict), nested objects included."""
    if hasattr(stripe_object, "to_dict"):
        return stripe_object.to_dict()
    return dict(stripe_object)
