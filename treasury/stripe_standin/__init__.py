"""A local Stripe (Connect subset) stand-in for tests and the demo; see ``server``."""

from .server import RunningStandin, StripeStandin, start_standin
from .state import stripe_fee_cents
from .webhooks import signature_header

__all__ = [
    "RunningStandin",
    "StripeStandin",
    "signature_header",
    "start_standin",
    "stripe_fee_cents",
]
